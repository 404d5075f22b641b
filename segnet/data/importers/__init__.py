"""Importers: other tools' annotation exports -> segnet's folder layout (images/, masks/,
classes.txt; see :mod:`segnet.data.importers.writer`)."""

from segnet.data.importers.coco import import_coco
from segnet.data.importers.labelme import import_labelme
from segnet.data.importers.summary import ImportSummary, SkippedItem

__all__ = ["ImportSummary", "SkippedItem", "import_coco", "import_labelme"]
