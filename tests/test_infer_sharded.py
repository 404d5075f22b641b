"""torchrun scripts/infer.py: disjoint shares, the outputs of one process, resume with another
number of processes, one combined summary and the combined exit status on every process; two
torchrun agents as two nodes on this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import (
    PROBES_ENV,
    REPO,
    assert_varied_labels,
    infer_in_process,
    labels_of,
    two_nodes,
)
from PIL import Image


def torchrun(processes: int, *overrides: str) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [sys.executable, *launcher, str(REPO / "scripts" / "infer.py"), *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


def test_two_and_three_processes_write_what_one_writes_and_resume_each_other(
    checkpoint, tiny_voc_root, tmp_path
):
    source = tmp_path / "in"
    source.mkdir()
    photos = sorted(Path(tiny_voc_root).glob("VOCdevkit/VOC2012/JPEGImages/*.jpg"))[:7]
    for i, photo in enumerate(photos):  # sizes mixed: three share one, the rest their own
        with Image.open(photo) as image:
            (image.crop((0, 0, 60, 40)) if i % 2 else image).save(source / f"img{i}.png")
    data = (source / "img0.png").read_bytes()
    (source / "img7_cut.png").write_bytes(data[: len(data) // 2])
    args = ["num_workers=0", "device=cpu", "batch_size=2"]

    single = infer_in_process(checkpoint, source, tmp_path / "one", *args)
    assert (single.written, len(single.skipped)) == (7, 1)
    expected = outputs(tmp_path / "one")
    assert len(expected) == 14
    masks = np.concatenate([labels_of(p).ravel() for p in (tmp_path / "one").glob("*.png")])
    assert_varied_labels(masks)

    out = tmp_path / "two"
    io = [f"ckpt_path={checkpoint}", f"input={source}", f"output_dir={out}", *args]
    done = torchrun(2, *io)
    # One process met the broken file: both exit 1 (torchrun reports that as its failure).
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("written ") == 1, done.stdout
    assert "written 7, skipped 1, existing 0" in done.stdout
    assert done.stderr.count("skipped ") >= 1 and "img7_cut.png" in done.stderr
    assert outputs(out) == expected  # byte for byte, the source recorded in each

    for name in ("img1.png", "img4.png", "overlays/img5.jpg"):
        (out / name).unlink()
    (source / "img7_cut.png").unlink()
    again = torchrun(3, *io)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("written ") == 1
    assert "written 3, skipped 0, existing 4" in again.stdout
    assert outputs(out) == expected


def test_two_nodes_write_what_one_process_writes(checkpoint, tiny_voc_root, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for photo in sorted(Path(tiny_voc_root).glob("VOCdevkit/VOC2012/JPEGImages/*.jpg"))[:5]:
        (source / photo.name).write_bytes(photo.read_bytes())
    args = ["num_workers=0", "device=cpu"]
    assert infer_in_process(checkpoint, source, tmp_path / "one", *args).written == 5

    out = tmp_path / "nodes"
    io = [f"ckpt_path={checkpoint}", f"input={source}", f"output_dir={out}", *args]
    agents = two_nodes(REPO / "scripts" / "infer.py", io, PROBES_ENV)
    assert [agent.returncode for agent in agents] == [0, 0], agents[0].stderr + agents[1].stderr
    summaries = [agent.stdout for agent in agents if "written " in agent.stdout]
    assert len(summaries) == 1 and "written 5, skipped 0, existing 0" in summaries[0]
    assert outputs(out) == outputs(tmp_path / "one")
