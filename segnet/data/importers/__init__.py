"""Importers: other tools' annotation exports -> segnet's folder layout (images/, masks/,
classes.txt; see :mod:`segnet.data.importers.writer`)."""

from segnet.data.importers.coco import import_coco
from segnet.data.importers.summary import ImportSummary, SkippedItem

__all__ = ["ImportSummary", "SkippedItem", "import_coco"]
