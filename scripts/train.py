"""Train an FCN with PyTorch Lightning, configured by Hydra (configs/train.yaml).

python scripts/train.py experiment=demo                  # the CPU demo on generated data
python scripts/train.py data.root=/data model.backbone=resnet18 trainer.max_epochs=30
python scripts/train.py ckpt_path=outputs/train/.../checkpoints/last.ckpt   # resume
python scripts/train.py -m optim.lr=0.01,0.001           # a sweep, one folder per run
python scripts/train.py --cfg job                        # print the composed config

Exit status: 0 done, 2 nothing done (bad setting, data or checkpoint), 130 Ctrl-C, 143 SIGTERM
(last.ckpt saved, the resume command printed); the table is in segnet/tasks/cli.py.
"""

from segnet.tasks.cli import run
from segnet.tasks.train import train_command

if __name__ == "__main__":
    # Lightning handles SIGTERM itself: it saves last.ckpt before the process stops.
    run(train_command, "train", handle_sigterm=False)
