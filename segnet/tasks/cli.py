"""Run a task as a command: a Hydra config in, one clear outcome and exit status out.

Every script in ``scripts/`` is ``run(task, config_name)``; the task returns its exit status
and raises for anything that stops it. The statuses, the same for every script:

====  ==========================================================================================
0     done
1     partly done: some inputs were skipped, each named (infer), or problems found (check_data)
2     nothing done: a bad command line, setting, device, checkpoint, dataset or output location;
      one line on stderr names it
3     internal error (a bug): the traceback is printed
130   interrupted by Ctrl-C (SIGINT); finished outputs are kept, nothing is left half-written
143   stopped by SIGTERM (e.g. a scheduler's time limit); the same
====  ==========================================================================================
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

Task = Callable[[DictConfig], int | None]

QUOTING_HINT = (
    "error: the command line could not be parsed (Hydra's message above); a value holding "
    "= , [ ] quotes or non-ASCII characters must be quoted for Hydra inside the shell's "
    "quotes: \"key='value'\""
)
COMPOSE_HINT = (
    "error: the configuration could not be composed (Hydra's message above): a key or option "
    "the configs do not have; a new key needs a leading + (+trainer.key=value), and "
    "--cfg job prints every setting"
)


class ConfigError(ValueError):
    """An invalid configuration; the message lists every problem by its config key."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread the way Ctrl-C raises KeyboardInterrupt, so a task
    unwinds (temporary files removed, a summary printed) instead of dying mid-write."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def one_line(err: BaseException) -> str:
    """The message a user needs from ``err``, without the wrappers around it.

    - A DataLoader worker's error arrives as "Caught DataError in DataLoader worker process 1.
      Original Traceback (most recent call last): ...": the original message is taken back out.
    - Hydra's InstantiationException ("Error in call to target ...") gives its cause's message,
      prefixed with the config key it was building.
    """
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        key = next((line for line in str(err).splitlines() if line.startswith("full_key:")), "")
        key = key.removeprefix("full_key:").strip()
        return f"{key}: {one_line(err.__cause__)}" if key else one_line(err.__cause__)
    return unwrap_worker_message(str(err))


def unwrap_worker_message(message: str) -> str:
    """The original exception message inside a DataLoader worker's re-raised one (else as is)."""
    marker = "Original Traceback (most recent call last):"
    if not message.startswith("Caught ") or marker not in message:
        return message
    # A chained error ("raise ... from err") lists each exception's traceback in turn; the
    # one raised is the last. Its frames are indented; the first unindented line after them
    # is "module.Type: message".
    last = message.split(marker, 1)[1].rsplit("Traceback (most recent call last):", 1)[-1]
    lines = last.splitlines()
    for i, line in enumerate(lines):
        if line and not line[0].isspace():
            first = line.split(": ", 1)[1] if ": " in line else line
            return "\n".join([first, *lines[i + 1 :]]).rstrip()
    return message


def guarded(task: Task, cfg: DictConfig, handle_sigterm: bool = True) -> int:
    """Run ``task(cfg)`` and turn how it ended into an exit status (see the module table).

    ``handle_sigterm=False`` leaves SIGTERM to the task (Lightning installs its own handler).
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handle_sigterm else None
    try:
        return int(task(cfg) or EXIT_OK)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Terminated:
        print("stopped (SIGTERM)", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except (ValueError, OSError, InstantiationException) as err:
        # ValueError covers DataError, CheckpointError and ConfigError; OSError an output
        # location or disk that refuses a write.
        print(f"error: {one_line(err)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print("internal error (a bug in segnet): please report the traceback", file=sys.stderr)
        return EXIT_BUG
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run(task: Task, config_name: str, handle_sigterm: bool = True) -> None:
    """Parse the command line with Hydra (``configs/<config_name>.yaml``), run ``task``, exit.

    Hydra exits 1 for a command line it cannot parse or compose; that becomes 2 here, the
    status of every "nothing was done" error, with a line on quoting values (parse) or on
    keys the configs lack (compose). Ctrl-C before
    the task starts is 130 without a traceback.
    """
    started = False

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def main(cfg: DictConfig) -> None:
        nonlocal started
        started = True
        status = guarded(task, cfg, handle_sigterm)
        if status != EXIT_OK:
            sys.exit(status)

    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C while Hydra was still starting: nothing was done
        print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except SystemExit as stop:
        if stop.code == 1 and not started:
            print(_startup_hint(sys.argv[1:]), file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USAGE) from None
        raise


def _startup_hint(argv: list[str]) -> str:
    """The line after Hydra's own message when it refused ``argv``: quoting for an override
    it cannot parse, else (the overrides parse, so composing failed) the missing-key line."""
    # Hydra's own argument parser and override grammar (hydra-core < 1.4 is pinned), so the
    # verdict is Hydra's, not a guess at its syntax.
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_overrides(get_args_parser().parse_args(argv).overrides)
    except (HydraException, SystemExit):
        return QUOTING_HINT
    return COMPOSE_HINT
