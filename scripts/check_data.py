"""Scan a dataset in VOC's layout and list every problem; exit status 1 if any.

python scripts/check_data.py root=/path/holding/VOCdevkit [year=2012] [splits=[train,val]]
"""

from segnet.tasks.check_data import check_command
from segnet.tasks.cli import run

if __name__ == "__main__":
    run(check_command, "check_data")
