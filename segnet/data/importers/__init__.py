"""Importers: other tools' annotation exports -> segnet's folder layout (images/, masks/,
classes.txt; see :mod:`segnet.data.importers.writer`)."""

from segnet.data.importers.coco import ImportSummary, SkippedItem, import_coco

__all__ = ["ImportSummary", "SkippedItem", "import_coco"]
