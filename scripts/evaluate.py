"""Evaluate a checkpoint on a dataset split (see configs/eval.yaml and segnet/tasks/evaluate.py).

    python scripts/evaluate.py ckpt_path=.../checkpoints/best.ckpt data=demo

Exit status: 0 done; 2 nothing done (one line names the bad checkpoint, data, setting or output
folder, all checked before the first prediction) or the files could not be written (the metrics
are printed first); 130 Ctrl-C, 143 SIGTERM; the table is in segnet/tasks/cli.py.
"""

from segnet.tasks.cli import run
from segnet.tasks.evaluate import evaluate_command

if __name__ == "__main__":
    run(evaluate_command, "eval")
