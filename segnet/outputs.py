"""Output files written whole or not at all, and only where the user said.

A file is first written to a temporary name beside its final one, flushed and fsync'ed with
every error checked, and only then renamed into place; files that belong together (an image's
mask, overlay and probabilities; an evaluation's metrics and report) are all staged before the
first is renamed, so a full disk, a crash or Ctrl-C leaves either the complete set or none of
it under the final names. Encoders write into memory first: Pillow's JPEG encoder writes
through the file descriptor and ignores a short write on a full disk (it returns normally),
while a Python file's ``write``/``flush``/``fsync`` raise ``OSError`` (ENOSPC).

Temporary names are ``.<name>.<pid>-<random>.tmp``: a later run removes those whose process is
gone (:func:`remove_stale_temporaries`), never those of a run still writing.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], None]
_TEMPORARY = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp$")


class OutputError(ValueError):
    """An output location that cannot be used; the message names it and says why."""


def check_output_dir(path: str | Path, what: str = "output_dir") -> Path:
    """Create ``path`` if needed and prove it writable (a probe file is written and removed).

    Called before any work starts, so a bad location costs nothing.

    Raises:
        OutputError: ``path`` (or a parent) is a file, or the folder cannot be created or
            written (read-only file system, permissions); ``what`` names the setting.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{what}={str(path)!r}: {parent} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temporary_path(path / "write-probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"{what}={str(path)!r} is not writable: {err.strerror or err}") from err
    return path


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _stage(path: Path, write: Writer) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_together(
    files: Iterable[tuple[Path, Writer]], ready: Iterable[tuple[Path, Path]] = ()
) -> None:
    """Write every ``(path, write)`` in full, then rename them into place in the given order.

    ``write(f)`` writes the file's bytes to the binary file ``f``. ``ready`` holds
    ``(temporary, path)`` pairs the caller has written already (e.g. a memory-mapped array,
    named by :func:`temporary_path`): they are fsync'ed, renamed first and removed on failure
    like the others. If any write or rename fails (or the process is interrupted) no path of
    the set is left with a new file and no temporary file is left. Put the file whose
    presence marks the set as complete last.
    """
    staged: list[tuple[Path, Path]] = list(ready)
    renamed: list[Path] = []
    try:
        for tmp, _ in staged:
            _fsync(tmp)
        for path, write in files:
            staged.append((_stage(path, write), path))
        for tmp, path in staged:
            os.replace(tmp, path)
            renamed.append(path)
    except BaseException:
        # A rename failed after others succeeded: a partial set must not stay in place.
        for path in renamed:
            path.unlink(missing_ok=True)
        raise
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    write_together([(path, lambda f: f.write(data))])


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` whole or not at all."""
    write_bytes(path, text.encode())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files under ``folder`` left by runs that were killed; returns how many.

    Only names of the form this module writes, and only if their process no longer exists.
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for path in folder.rglob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match[1])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
