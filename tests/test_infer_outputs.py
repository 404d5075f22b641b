"""scripts/infer.py and segnet.tasks.infer: what is written (masks at each input's size,
overlays, probabilities, flip TTA and sliding windows), bad files skipped and named, nothing
written outside output_dir, and bad settings as one line before any work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, infer_config, infer_in_process, labels_of, photo, write_inputs
from PIL import Image

from segnet.data.classes import voc_palette
from segnet.tasks.cli import guarded
from segnet.tasks.infer import infer_command

NOBODY = 65534


def run_infer(*overrides: str, cwd: Path = REPO, **options) -> subprocess.CompletedProcess:
    """scripts/infer.py with the shipped config (no Hydra overrides of the test's own)."""
    command = [sys.executable, str(REPO / "scripts" / "infer.py"), *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, **options)


@pytest.fixture
def open_tmp():
    """A folder any user may enter (pytest's tmp_path is private to its owner); removed after."""
    folder = Path(tempfile.mkdtemp(prefix="segnet-infer-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def unprivileged() -> dict:
    """subprocess options that run as nobody, where this process is root and nobody may run
    this interpreter (a virtualenv under /root may not be); else none (the file set of the
    working directory is still checked)."""
    if os.geteuid() != 0:
        return {}
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    try:
        subprocess.run([sys.executable, "-c", ""], check=True, capture_output=True, **user)
    except (OSError, subprocess.CalledProcessError):
        return {}
    return user


def test_every_kind_of_input_is_segmented_at_its_size_and_bad_ones_reported(checkpoint, open_tmp):
    source, out, cwd = open_tmp / "in", open_tmp / "out", open_tmp / "cwd"
    good = write_inputs(source)
    assert len(good) == 12
    # The run starts in a read-only working directory, as an unprivileged user where the
    # tests run as root (root ignores permission bits): nothing may be written outside out/.
    cwd.mkdir(mode=0o555)
    out.mkdir()
    user = unprivileged()
    if user:
        os.chown(out, NOBODY, NOBODY)
    ckpt = open_tmp / "tiny.ckpt"
    os.link(checkpoint, ckpt)
    args = [f"ckpt_path={ckpt}", f"input={source}", f"output_dir={out}"]
    args += ["max_pixels=20000", "window=64", "batch_size=2"]
    done = run_infer(*args, cwd=cwd, **user)
    assert done.returncode == 1, done.stderr
    assert list(cwd.iterdir()) == []
    report = done.stdout + done.stderr
    assert "written 12, skipped 4, existing 0" in report
    for name, reason in [
        ("notes.jpg", "cannot decode"),
        ("empty.png", "file is empty"),
        ("truncated.jpg", "truncated"),
        ("noise.gif", "cannot decode"),
    ]:
        assert f"skipped {source / name}: " in report and reason in report.split(name)[-1]
    names = {"a/photo.jpg": "a/photo.jpg", "a/photo.png": "a/photo.png"}  # stems clash
    for rel, size in good.items():
        stem = names.get(rel, str(Path(rel).with_suffix("")))
        with Image.open(out / f"{stem}.png") as mask:
            assert mask.size == size and mask.mode == "P", rel
            assert mask.getpalette()[:768] == voc_palette()
            assert np.asarray(mask).max() < 21
        with Image.open(out / "overlays" / f"{stem}.jpg") as picture:
            assert picture.format == "JPEG" and picture.height >= size[1]
    assert np.array_equal(labels_of(out / "rotated.png"), labels_of(out / "upright.png"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporaries left

    # Rerun: everything done is skipped (untouched); a deleted output is made again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    (out / "gray.png").unlink()
    again = infer_in_process(ckpt, source, out, *args[3:])
    assert (again.written, len(again.skipped), again.existing) == (1, 4, 11)
    assert (out / "gray.png").is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "gray.png")


def test_flip_tta_on_a_symmetric_image_gives_a_symmetric_prediction(checkpoint, tmp_path):
    rng = np.random.default_rng(1)
    half = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1)).save(tmp_path / "sym.png")
    infer_in_process(checkpoint, tmp_path / "sym.png", tmp_path / "plain")
    infer_in_process(checkpoint, tmp_path / "sym.png", tmp_path / "flip", "tta.flip=true")
    plain, flipped = labels_of(tmp_path / "plain/sym.png"), labels_of(tmp_path / "flip/sym.png")
    assert not np.array_equal(plain, plain[:, ::-1])  # the model alone is not symmetric
    assert np.array_equal(flipped, flipped[:, ::-1])


def test_window_covering_the_image_equals_whole_image_and_probs_are_saved(checkpoint, tmp_path):
    photo(np.random.default_rng(2), 70, 90).save(tmp_path / "image.png")
    source = tmp_path / "image.png"
    infer_in_process(checkpoint, source, tmp_path / "whole", "window=null", "save_probs=true")
    infer_in_process(checkpoint, source, tmp_path / "win", "window=128", "max_pixels=0")
    whole = labels_of(tmp_path / "whole/image.png")
    assert np.array_equal(whole, labels_of(tmp_path / "win/image.png"))
    probs = np.load(tmp_path / "whole/probs/image.npy")
    assert probs.shape == (21, 70, 90) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=0.02)
    # float16 rounding may tie the top two classes on a rare pixel
    assert (probs.argmax(0) == whole).mean() > 0.99


def test_probabilities_of_a_windowed_image_stream_to_disk(checkpoint, tmp_path):
    photo(np.random.default_rng(3), 150, 110).save(tmp_path / "big.png")
    args = ["window=48", "max_pixels=1000", "save_probs=true"]
    summary = infer_in_process(checkpoint, tmp_path / "big.png", tmp_path / "out", *args)
    assert summary.written == 1 and not summary.skipped
    probs = np.load(tmp_path / "out/probs/big.npy")
    assert probs.shape == (21, 150, 110)
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=0.02)
    assert (probs.argmax(0) == labels_of(tmp_path / "out/big.png")).mean() > 0.99


def test_an_unusable_output_folder_is_one_line_before_any_work(checkpoint, tmp_path, capsys):
    photo(np.random.default_rng(8), 8, 8).save(tmp_path / "x.png")
    (tmp_path / "file").write_text("x")
    (tmp_path / "out" / "overlays").parent.mkdir()
    (tmp_path / "out" / "overlays").write_text("x")
    for out, problem in [
        (tmp_path / "file" / "sub", f"{tmp_path / 'file'} is a file, not a folder"),
        (tmp_path / "out", f"{tmp_path / 'out' / 'overlays'} is a file, not a folder"),
    ]:
        assert guarded(infer_command, infer_config(checkpoint, tmp_path / "x.png", out)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: output_dir=") and problem in err and err.count("\n") == 1


def test_a_bad_model_file_is_one_line_and_creates_no_output_folder(tmp_path, capsys):
    photo(np.random.default_rng(8), 8, 8).save(tmp_path / "x.png")
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    cfg = infer_config(tmp_path / "bad.ckpt", tmp_path / "x.png", tmp_path / "out")
    assert guarded(infer_command, cfg) == 2
    assert "bad.ckpt is not a PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_alpha_is_one_line_before_anything_is_read_or_written(tmp_path, capsys):
    photo(np.random.default_rng(8), 8, 8).save(tmp_path / "x.png")
    missing = tmp_path / "no.ckpt"  # never read: alpha is checked first
    cfg = infer_config(missing, tmp_path / "x.png", tmp_path / "out", "alpha=2")
    assert guarded(infer_command, cfg) == 2
    assert (
        capsys.readouterr().err
        == "error: alpha=2 must be in [0, 1] (the overlay's colour weight)\n"
    )
    assert not (tmp_path / "out").exists()
