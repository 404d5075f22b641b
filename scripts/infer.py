"""Segment images with a trained checkpoint (see configs/infer.yaml and segnet/tasks/infer.py).

    python scripts/infer.py ckpt_path=.../checkpoints/best.ckpt input=photos/ output_dir=pred/

Exit status: 0 every image written (or already there), 1 some skipped (each named), 2 nothing
done (bad setting, checkpoint, output folder or an input that matches nothing), 130 Ctrl-C,
143 SIGTERM (both print the summary so far; finished images are kept whole, a rerun resumes);
the table is in segnet/tasks/cli.py.
"""

from segnet.tasks.cli import run
from segnet.tasks.infer import infer_command

if __name__ == "__main__":
    run(infer_command, "infer")
