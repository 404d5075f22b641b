"""The command-line contract of every script: exit statuses and one-line errors (tasks/cli.py)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import hydra
import pytest
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from segnet.data.images import DataError
from segnet.tasks import cli

CFG = OmegaConf.create({})


class _BrokenDataset(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DataError(f"/data/img_{index}.jpg: cannot decode image (broken data stream)")


def test_one_line_unwraps_a_dataloader_worker_error():
    loader = DataLoader(_BrokenDataset(), num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    assert "DataLoader worker" in str(caught.value)  # what torch hands over
    assert cli.one_line(caught.value) == (
        "/data/img_0.jpg: cannot decode image (broken data stream)"
    )


def test_one_line_keeps_a_multi_line_original_message():
    wrapped = (
        "Caught DataError in DataLoader worker process 0.\n"
        "Original Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "    raise DataError(msg)\n"
        "segnet.data.images.DataError: 2 files listed in val.txt are missing:\n"
        "  a.jpg\n"
        "  b.jpg\n"
    )
    assert cli.unwrap_worker_message(wrapped) == (
        "2 files listed in val.txt are missing:\n  a.jpg\n  b.jpg"
    )
    assert cli.unwrap_worker_message("plain message") == "plain message"


class _ChainedErrorDataset(_BrokenDataset):
    def __getitem__(self, index: int):
        try:
            raise OSError("broken data stream")
        except OSError as err:
            raise DataError(f"/data/img_{index}.jpg: cannot decode image") from err


def test_one_line_gives_the_last_error_of_a_chain_raised_in_a_worker():
    with pytest.raises(DataError) as caught:
        next(iter(DataLoader(_ChainedErrorDataset(), num_workers=1)))
    assert "direct cause" in str(caught.value)
    assert cli.one_line(caught.value) == "/data/img_0.jpg: cannot decode image"


def test_one_line_gives_the_cause_of_a_hydra_instantiation_error():
    node = OmegaConf.create({"model": {"_target_": "segnet.device.resolve_device", "name": "gpu"}})
    with pytest.raises(hydra.errors.InstantiationException) as caught:
        hydra.utils.instantiate(node.model)
    message = cli.one_line(caught.value)
    assert message.startswith("model: device='gpu' is not a device")  # config key first
    assert "Error in call to target" not in message


@pytest.mark.parametrize(
    ("raised", "status", "stderr_start"),
    [
        (DataError("/d/a.png: mask is a colour image"), cli.EXIT_USAGE, "error: /d/a.png: mask"),
        (FileNotFoundError(2, "No such file", "/x"), cli.EXIT_USAGE, "error: [Errno 2]"),
        (KeyboardInterrupt(), cli.EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
        (cli.Terminated(), cli.EXIT_TERMINATED, "stopped (SIGTERM)"),
        (RuntimeError("boom"), cli.EXIT_BUG, "Traceback"),
    ],
)
def test_guarded_maps_each_ending_to_its_status(raised, status, stderr_start, capsys):
    def task(cfg):
        raise raised

    assert cli.guarded(task, CFG) == status
    err = capsys.readouterr().err
    assert err.startswith(stderr_start)
    if status == cli.EXIT_USAGE:
        assert len(err.strip().splitlines()) == 1
    if status == cli.EXIT_BUG:
        assert "RuntimeError: boom" in err and "internal error" in err


def test_guarded_passes_the_tasks_status_through():
    assert cli.guarded(lambda cfg: None, CFG) == cli.EXIT_OK
    assert cli.guarded(lambda cfg: cli.EXIT_PARTIAL, CFG) == cli.EXIT_PARTIAL


def test_guarded_turns_sigterm_into_terminated_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)

    def task(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # not reached: the handler raises first

    assert cli.guarded(task, CFG) == cli.EXIT_TERMINATED
    assert signal.getsignal(signal.SIGTERM) is before
    seen = []
    assert cli.guarded(lambda cfg: seen.append(signal.getsignal(signal.SIGTERM)), CFG, False) == 0
    assert seen == [before]  # handle_sigterm=False leaves SIGTERM alone (train: Lightning's)


@pytest.fixture
def hydra_logging_undone():
    """Hydra configures the process's logging (check_data's config disables every existing
    logger); undo it so later tests in this process still see their log records."""
    loggers = [logging.getLogger(name) for name in logging.root.manager.loggerDict]
    state = [(lg, lg.disabled, lg.level) for lg in loggers if isinstance(lg, logging.Logger)]
    root_level, root_handlers = logging.root.level, list(logging.root.handlers)
    yield
    for logger, disabled, level in state:
        logger.disabled, logger.level = disabled, level
    logging.root.setLevel(root_level)
    logging.root.handlers[:] = root_handlers


def _run(monkeypatch, task, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["check_data.py", *argv])
    with pytest.raises(SystemExit) as stop:
        cli.run(task, "check_data")
        raise SystemExit(0)
    return stop.value.code


def test_run_exits_2_for_a_command_line_hydra_cannot_parse(
    monkeypatch, capsys, hydra_logging_undone
):
    ran = []
    assert _run(monkeypatch, ran.append, "root") == cli.EXIT_USAGE  # "root" lacks "=value"
    assert ran == []
    err = capsys.readouterr().err
    assert "Error parsing override" in err
    assert err.rstrip().endswith(cli.QUOTING_HINT)
    assert cli.COMPOSE_HINT not in err


def test_a_key_the_configs_lack_gets_the_missing_key_line_not_the_quoting_one(
    monkeypatch, capsys, hydra_logging_undone
):
    ran = []
    assert _run(monkeypatch, ran.append, "no_such_key=1") == cli.EXIT_USAGE
    assert _run(monkeypatch, ran.append, "data=no_such_dataset") == cli.EXIT_USAGE
    assert ran == []
    err = capsys.readouterr().err
    assert "Could not override 'no_such_key'" in err
    assert "Could not find 'data/no_such_dataset'" in err
    assert err.count(cli.COMPOSE_HINT) == 2
    assert cli.QUOTING_HINT not in err


def test_run_exits_130_without_a_traceback_for_ctrl_c_before_the_task_starts(
    monkeypatch, capsys, hydra_logging_undone
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Ctrl-C while Hydra parses (the module, not the hydra.main function it exports)
    monkeypatch.setattr(sys.modules["hydra.main"], "_run_hydra", interrupted)
    ran = []
    assert _run(monkeypatch, ran.append, "root=x") == cli.EXIT_INTERRUPTED
    assert ran == []
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"


def test_run_exits_with_the_tasks_status(monkeypatch, tmp_path, hydra_logging_undone):
    assert _run(monkeypatch, lambda cfg: cli.EXIT_PARTIAL, f"root={tmp_path}") == 1
    assert _run(monkeypatch, lambda cfg: None, f"root={tmp_path}") == 0
    assert _run(monkeypatch, lambda cfg: 1 / 0, f"root={tmp_path}") == cli.EXIT_BUG
