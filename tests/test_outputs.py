"""segnet.outputs: files written whole or not at all, output folders checked, stale temporaries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from segnet import outputs
from segnet.outputs import (
    OutputError,
    check_output_dir,
    remove_stale_temporaries,
    temporary_path,
    write_bytes,
    write_together,
)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_set_is_renamed_only_once_every_file_of_it_is_written(tmp_path):
    def crash(f) -> None:
        f.write(b"half a png")
        raise KeyboardInterrupt  # or a full disk: any failure while staging

    with pytest.raises(KeyboardInterrupt):
        write_together(
            [(tmp_path / "a.npy", lambda f: f.write(b"npy")), (tmp_path / "m.png", crash)]
        )
    assert files_under(tmp_path) == []  # neither final name, no temporary
    write_together([(tmp_path / "d" / "a.npy", lambda f: f.write(b"npy"))])
    write_bytes(tmp_path / "d" / "m.png", b"png")
    assert files_under(tmp_path) == ["d/a.npy", "d/m.png"]
    assert (tmp_path / "d" / "a.npy").read_bytes() == b"npy"


def test_a_failed_rename_takes_back_the_files_of_the_set_already_renamed(tmp_path, monkeypatch):
    replace, calls = os.replace, []

    def second_fails(src, dst) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", second_fails)
    files = [(tmp_path / name, lambda f: f.write(b"x")) for name in ("p.npy", "o.jpg", "m.png")]
    with pytest.raises(OSError, match="No space"):
        write_together(files)
    assert len(calls) == 2 and files_under(tmp_path) == []


def test_ready_temporaries_are_renamed_with_the_set_or_removed_with_it(tmp_path):
    streamed = temporary_path(tmp_path / "p.npy")
    streamed.write_bytes(b"streamed")

    def full(f) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_together([(tmp_path / "m.png", full)], ready=[(streamed, tmp_path / "p.npy")])
    assert files_under(tmp_path) == []
    streamed.write_bytes(b"streamed")
    write_together(
        [(tmp_path / "m.png", lambda f: f.write(b"m"))], [(streamed, tmp_path / "p.npy")]
    )
    assert files_under(tmp_path) == ["m.png", "p.npy"]
    assert (tmp_path / "p.npy").read_bytes() == b"streamed"


def test_an_output_folder_that_cannot_be_used_is_named_with_the_reason(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match=r"output_dir='.*file.txt/sub'.*file.txt is a file"):
        check_output_dir(tmp_path / "file.txt" / "sub")
    with pytest.raises(OutputError, match="eval.output_dir='/proc/segnet-test' is not writable"):
        check_output_dir("/proc/segnet-test", "eval.output_dir")
    assert check_output_dir(tmp_path / "new" / "deep").is_dir()
    assert files_under(tmp_path) == ["file.txt"]  # the write probe is gone


def test_only_temporaries_of_processes_that_are_gone_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "a" / f".m.png.{dead.pid}-0123abcd.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    live = tmp_path / f".m.png.{os.getppid()}-0123abcd.tmp"  # our parent is running
    own = temporary_path(tmp_path / "m.png")
    other = tmp_path / ".notes.tmp"  # not a name this module writes
    for path in (live, own, other):
        path.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and live.exists() and own.exists() and other.exists()
