"""Convert an annotation tool's export into segnet's folder layout (data=folder).

python scripts/import_data.py format=coco|cvat|labelme|roboflow input=PATH output=DIR
    [overwrite=true]
"""

from segnet.tasks.cli import run
from segnet.tasks.import_data import import_command

if __name__ == "__main__":
    run(import_command, "import_data")
