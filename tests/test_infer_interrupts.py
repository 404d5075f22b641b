"""scripts/infer.py and segnet.tasks.infer when a run is cut short or repeated: a full disk, Ctrl-C
and SIGTERM leave whole sets of outputs only; a rerun resumes, and overwrite=true rewrites."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
from helpers import REPO, infer_config, infer_in_process, photo
from PIL import Image

from segnet.tasks import infer as infer_module
from segnet.tasks.cli import Terminated, guarded
from segnet.tasks.infer import infer_command
from segnet.tasks.infer_inputs import recorded_source

_FULL_DISK = """
import sys
from hydra import compose, initialize_config_dir
from segnet.tasks.cli import guarded
from segnet.tasks.infer import infer_command
configs, *runs = sys.argv[1:]
for run in runs:
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("infer", overrides=run.split())
    print("status", guarded(infer_command, cfg), flush=True)
"""


def test_a_full_disk_skips_the_images_that_do_not_fit_and_leaves_no_partial_file(
    checkpoint, tmp_path
):
    """RLIMIT_FSIZE with SIGXFSZ ignored makes writes beyond the limit fail with EFBIG, as a full
    disk fails them with ENOSPC: Pillow's JPEG encoder then returned normally after a short
    write (a truncated overlay was renamed into place), and the sparse memory-mapped
    probabilities of a windowed image died of SIGBUS on a real full disk."""
    limit = 16 * 1024
    rng = np.random.default_rng(5)
    source = tmp_path / "in"
    source.mkdir()
    for i in range(2):  # every file of these fits: mask, overlay, probabilities (11 kB)
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(source / f"small{i}.png")
    photo(rng, 200, 200).save(source / "noise.jpg", quality=95)  # overlay 34 kB, probs 1.7 MB
    stale = tmp_path / "probs_out" / "probs" / ".noise.npy.4194304-0123abcd.tmp"  # pid > max
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run")
    common = f"ckpt_path={checkpoint} input={source} num_workers=0"
    runs = [
        f"{common} output_dir={tmp_path / 'out'}",
        f"{common} output_dir={tmp_path / 'probs_out'} save_probs=true max_pixels=1000 window=48",
    ]

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(REPO / "configs"), *runs],
        capture_output=True,
        text=True,
        preexec_fn=full_disk,
    )
    assert done.stdout.count("status 1") == 2, done.stdout + done.stderr
    assert done.stdout.count("written 2, skipped 1, existing 0") == 2
    report = f"  skipped {source / 'noise.jpg'}: cannot write outputs: "
    assert [line.startswith(report) for line in done.stderr.splitlines()].count(True) == 2
    assert "File too large" in done.stderr
    for out, names in [(tmp_path / "out", ["small0", "small1"]), (tmp_path / "probs_out", None)]:
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        expected = [f"overlays/small{i}.jpg" for i in range(2)]
        if names is None:
            expected += [f"probs/small{i}.npy" for i in range(2)]
        assert files == sorted(expected + [f"small{i}.png" for i in range(2)])  # whole sets only
        for i in range(2):
            with Image.open(out / "overlays" / f"small{i}.jpg") as overlay_picture:
                overlay_picture.load()  # complete, not truncated
    assert np.load(tmp_path / "probs_out/probs/small1.npy").shape == (21, 16, 16)


def test_ctrl_c_prints_the_summary_so_far_and_leaves_only_whole_outputs(checkpoint, tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "in").mkdir()
    for i in range(40):
        photo(rng, 128, 128).save(tmp_path / "in" / f"{i:02d}.png")
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts" / "infer.py"), f"ckpt_path={checkpoint}"]
    command += [f"input={tmp_path / 'in'}", f"output_dir={out}", "batch_size=1"]
    # Its own session: Ctrl-C in a terminal reaches the whole group, DataLoader workers too.
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    written = int(stdout.split("written ")[1].split(",")[0])
    assert "(interrupted: finished images are kept" in stdout and 1 <= written < 40
    assert "interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr
    masks = sorted(p.stem for p in out.glob("*.png"))
    assert len(masks) == written  # counted = there
    assert sorted(p.stem for p in out.glob("overlays/*.jpg")) == masks  # complete pairs
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_sigterm_stops_with_143_after_the_writes_under_way(
    checkpoint, tmp_path, monkeypatch, capsys
):
    rng = np.random.default_rng(7)
    (tmp_path / "in").mkdir()
    for i in range(6):
        photo(rng, 40, 40 + i).save(tmp_path / "in" / f"{i}.png")  # sizes differ: one per batch
    out, predict, calls = tmp_path / "out", infer_module.predict_streaming, []

    def stopped_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            while not list(out.glob("*.png")):  # let a write finish first
                time.sleep(0.01)
            raise Terminated()
        return predict(*args, **kwargs)

    monkeypatch.setattr(infer_module, "predict_streaming", stopped_at_the_third)
    cfg = infer_config(checkpoint, tmp_path / "in", out, "save_probs=true")
    assert guarded(infer_command, cfg) == 143
    report = capsys.readouterr()
    written = int(report.out.split("written ")[1].split(",")[0])
    assert 1 <= written <= 2 and "(interrupted" in report.out
    assert "stopped (SIGTERM)" in report.err
    masks = sorted(p.stem for p in out.glob("*.png"))
    assert len(masks) == written
    assert sorted(p.stem for p in out.glob("overlays/*.jpg")) == masks
    assert sorted(p.stem for p in out.glob("probs/*.npy")) == masks
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_overwrite_true_rewrites_and_a_file_infer_did_not_write_is_never_counted(
    checkpoint, tmp_path
):
    rng = np.random.default_rng(11)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        photo(rng, 20, 20).save(tmp_path / "in" / name)
    out = tmp_path / "out"
    assert infer_in_process(checkpoint, tmp_path / "in", out).written == 2
    foreign = Image.new("P", (3, 3))  # someone else's picture under a.png's mask name
    foreign.save(out / "a.png")
    stamp = (out / "b.png").stat().st_mtime_ns
    kept = infer_in_process(checkpoint, tmp_path / "in", out)
    assert (kept.written, kept.existing) == (0, 1)
    assert kept.skipped == [
        (
            str(tmp_path / "in/a.png"),
            f"{out / 'a.png'} exists and is not infer's output for this image "
            "(overwrite=true replaces it)",
        )
    ]
    assert Image.open(out / "a.png").size == (3, 3)  # not replaced without overwrite=true
    redone = infer_in_process(checkpoint, tmp_path / "in", out, "overwrite=true")
    assert (redone.written, redone.existing, redone.skipped) == (2, 0, [])
    assert Image.open(out / "a.png").size == (20, 20) and recorded_source(out / "a.png") == "a.png"
    assert (out / "b.png").stat().st_mtime_ns != stamp
