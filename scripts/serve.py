"""Serve a trained model over HTTP, with a page to try it (configs/serve.yaml, docs/serve.md).

    python scripts/serve.py ckpt_path=.../checkpoints/best.ckpt host=127.0.0.1 port=8000

Exit status: 0 after a graceful stop (SIGTERM or Ctrl-C: requests in flight finish, new ones get
503); 2 nothing served (bad setting, checkpoint, device, or the port is taken).
"""

from segnet.tasks.cli import run
from segnet.tasks.serve import serve_command

if __name__ == "__main__":
    run(serve_command, "serve")
