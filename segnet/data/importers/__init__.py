"""Importers: other tools' annotation exports -> segnet's folder layout (images/, masks/,
classes.txt; see :mod:`segnet.data.importers.writer`)."""

from segnet.data.importers.coco import import_coco
from segnet.data.importers.cvat import import_cvat
from segnet.data.importers.labelme import import_labelme
from segnet.data.importers.roboflow import import_roboflow
from segnet.data.importers.summary import ImportSummary, SkippedItem

__all__ = [
    "ImportSummary",
    "SkippedItem",
    "import_coco",
    "import_cvat",
    "import_labelme",
    "import_roboflow",
]
