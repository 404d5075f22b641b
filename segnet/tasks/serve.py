"""Serve a model over HTTP (see configs/serve.yaml and segnet/serve/).

    python scripts/serve.py ckpt_path=best.ckpt host=127.0.0.1 port=8000

Loads the model first (a bad checkpoint, device or setting ends here with one line, exit 2),
then runs uvicorn until SIGTERM or Ctrl-C: requests in flight finish, new ones get 503, and
the command returns 0.
"""

from __future__ import annotations

import socket
import sys

import torch
import uvicorn
from omegaconf import DictConfig, OmegaConf

from segnet.serve import ServeSettings, create_app
from segnet.serve.server import DrainingServer
from segnet.tasks.cli import EXIT_OK
from segnet.tasks.configured_model import configured_segmenter

# A stop waits for requests in flight at most this long beyond their own timeout_s.
DRAIN_GRACE_S = 5.0


def settings_from(cfg: DictConfig) -> ServeSettings:
    """The service's settings from the ``limits`` group and the top-level switches."""
    limits = OmegaConf.to_container(cfg.limits, resolve=True)
    return ServeSettings.from_mapping(
        {
            **limits,
            "max_batch": cfg.batch_size,
            "alpha": cfg.alpha,
            "api_key": None if cfg.api_key is None else str(cfg.api_key),
            "cors_origins": list(cfg.cors_origins or []),
        }
    )


def serve_command(cfg: DictConfig) -> int:
    """``scripts/serve.py``: load, serve until stopped, 0 after a graceful stop."""
    settings = settings_from(cfg)  # a bad limit is reported before the model loads
    if not 0 <= int(cfg.port) <= 65535:
        raise ValueError(f"port={cfg.port} must be in 0..65535")
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    seg = configured_segmenter(cfg)
    app = create_app(seg, settings)
    # Bound here, not by uvicorn: a taken port is then an OSError naming the address (exit 2),
    # where uvicorn would log it and sys.exit(1), the status of partial success.
    host = str(cfg.host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, int(cfg.port)), family=family)
    except OSError as err:
        raise OSError(f"cannot listen on {host}:{cfg.port}: {err.strerror or err}") from err
    config = uvicorn.Config(
        app,
        log_level=str(cfg.log_level),
        timeout_graceful_shutdown=int(settings.timeout_s + DRAIN_GRACE_S),
    )
    server = DrainingServer(
        config,
        app.state.service,
        drain_s=settings.timeout_s + DRAIN_GRACE_S,
        on_ready=lambda url: print(f"serving {cfg.ckpt_path} at {url}", flush=True),
    )
    server.run(sockets=[sock])
    print("stopped", file=sys.stderr, flush=True)
    return EXIT_OK
