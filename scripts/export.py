"""Export a checkpoint to a verified ONNX model (configs/export.yaml, runtime/onnx_writer.py).

    python scripts/export.py ckpt_path=.../checkpoints/best.ckpt output=model.onnx

Exit status: 0 written; 2 nothing written (one line names the bad checkpoint, output or setting,
or the ONNX model failed its check against PyTorch); 130 Ctrl-C, 143 SIGTERM (nothing is left
half-written); the table is in segnet/tasks/cli.py.
"""

from segnet.tasks.cli import run
from segnet.tasks.export import export_command

if __name__ == "__main__":
    run(export_command, "export")
