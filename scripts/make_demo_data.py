"""Write the synthetic demo dataset in Pascal VOC 2012's layout.

    python scripts/make_demo_data.py root=data/demo [num_train=600 num_val=150 seed=0]

The result, ``root/VOCdevkit/VOC2012``, trains with ``data.root=<root>`` like the real VOC.
"""

from segnet.tasks.cli import run
from segnet.tasks.make_demo_data import make_demo_command

if __name__ == "__main__":
    run(make_demo_command, "make_demo_data")
