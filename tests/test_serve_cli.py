"""scripts/serve.py's start-up refusals, in process: each is one line and exit 2 (cli.guarded)."""

from __future__ import annotations

import socket

import pytest
from helpers import compose_config
from omegaconf import DictConfig

from segnet.tasks.cli import EXIT_USAGE, guarded
from segnet.tasks.serve import serve_command


def serve_config(*overrides: str) -> DictConfig:
    """The serve config with ``overrides``."""
    return compose_config("serve", overrides)


def test_a_bad_limit_is_refused_before_the_model_loads(tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"  # never opened: the limit is checked first
    cfg = serve_config(f"ckpt_path={missing}", "limits.max_queue=0", "limits.timeout_s=-1")
    assert guarded(serve_command, cfg) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == "error: max_queue=0 must be > 0; timeout_s=-1 must be > 0"


def test_a_taken_port_is_one_line_naming_the_address(checkpoint, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cfg = serve_config(f"ckpt_path={checkpoint}", f"port={port}", "device=cpu")
        assert guarded(serve_command, cfg) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "\n" not in err


def test_the_api_key_comes_from_the_environment(monkeypatch):
    from segnet.tasks.serve import settings_from

    monkeypatch.setenv("SEGNET_API_KEY", "from-env")
    assert settings_from(serve_config("ckpt_path=x")).api_key == "from-env"
    monkeypatch.delenv("SEGNET_API_KEY")
    assert settings_from(serve_config("ckpt_path=x")).api_key is None
    assert settings_from(serve_config("ckpt_path=x", "api_key=abc")).api_key == "abc"


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_port_out_of_range_is_refused(tmp_path, capsys, port):
    cfg = serve_config(f"ckpt_path={tmp_path / 'x.ckpt'}", f"port={port}")
    assert guarded(serve_command, cfg) == EXIT_USAGE
    assert f"port={port} must be in 0..65535" in capsys.readouterr().err
