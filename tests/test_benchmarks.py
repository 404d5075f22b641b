"""Smoke test of scripts/benchmark.py and every section of segnet/benchmarks at tiny sizes.

The figures are not judged here (docs/benchmarks.md: targets are reported, never asserted); what
is checked is that every section runs, returns well-formed results and writes its JSON. Sizes
are shrunk through each module's size constants; the fresh processes that measure peak memory
(about 10 s of imports each on the project's machine) are replaced as noted.
"""

from __future__ import annotations

import functools
import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segnet.benchmarks import SECTIONS, Result, run_sections
from segnet.benchmarks import data as data_bench
from segnet.benchmarks import dataset_scale as scale_bench
from segnet.benchmarks import import_scale as import_bench
from segnet.benchmarks import inference as inference_bench
from segnet.benchmarks import layers as layers_bench
from segnet.benchmarks import model as model_bench
from segnet.benchmarks import training as training_bench

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
# Figures that may honestly be zero: a memory rise measured inside the test process, whose
# high-water mark was set by earlier work.
MAY_BE_ZERO = ("peak RSS above imports",)


@pytest.fixture
def tiny(monkeypatch):
    """Every section at the smallest sizes its code accepts."""
    monkeypatch.setattr(layers_bench, "BATCH", 1)
    monkeypatch.setattr(layers_bench, "OUT_SIZE", (64, 96))  # divisible by both factors
    monkeypatch.setattr(model_bench, "SIZE", (64, 64))
    monkeypatch.setattr(model_bench, "CASES", ("fcn8s-mobilenet_v3_large", model_bench.REFERENCE))
    # Same measurement, in this process instead of a fresh one, each model built once.
    monkeypatch.setattr(model_bench, "build", functools.cache(model_bench.build))
    monkeypatch.setattr(
        model_bench, "in_fresh_process", lambda case, threads: model_bench.peak_rss_and_flops(case)
    )
    monkeypatch.setattr(data_bench, "WIDTH", 128)  # room for its 60-100 px rectangles
    monkeypatch.setattr(data_bench, "HEIGHT", 112)
    monkeypatch.setattr(data_bench, "CROP", (64, 64))
    monkeypatch.setattr(data_bench, "BATCH", 2)
    monkeypatch.setattr(data_bench, "STEP_BACKBONE", "mobilenet_v3_large")
    monkeypatch.setattr(scale_bench, "FOLDER_PAIRS_QUICK", 50)
    monkeypatch.setattr(scale_bench, "COCO_POLYGONS_QUICK", 30)
    monkeypatch.setattr(scale_bench, "COCO_DECODE_INSTANCES_QUICK", 20)
    monkeypatch.setattr(import_bench, "IMAGES_QUICK", 3)
    monkeypatch.setattr(
        training_bench, "THROUGHPUT_CASES", {True: (("mobilenet_v3_large",), (32, 32), 2, 1, 1)}
    )
    monkeypatch.setattr(inference_bench, "BACKBONES", {True: ("mobilenet_v3_large",)})
    monkeypatch.setattr(inference_bench, "PHOTO", (64, 48))
    monkeypatch.setattr(inference_bench, "SIZES", {True: (2, 2, (96, 64))})
    monkeypatch.setattr(inference_bench, "WINDOW_CASES", {True: (64, 32, 1)})
    # Peak memory needs three fresh processes; record what would be measured instead.
    measured = []

    def fake_peak(ckpt, image, out):
        measured.append(image)
        return 100.0

    monkeypatch.setattr(inference_bench, "peak_rss_mb", fake_peak)
    return measured


def check(results: list[Result], section: str) -> None:
    assert results and all(isinstance(r, Result) for r in results)
    for r in results:
        assert r.section == section and r.case and r.metric and isinstance(r.unit, str)
        assert math.isfinite(r.value), r
        assert r.value >= 0 if r.metric in MAY_BE_ZERO else r.value > 0, r
        # A target comes with its verdict, and only then.
        assert (r.met is None) == (r.target == ""), r


def test_every_section_runs_at_tiny_sizes_and_gives_positive_finite_figures(tiny):
    results = run_sections(list(SECTIONS), quick=True)
    for section in SECTIONS:
        check([r for r in results if r.section == section], section)
    metrics = {(r.section, r.metric) for r in results}
    assert ("inference", "windowed / whole CPU time") in metrics
    assert ("inference", "window pixels / image pixels") in metrics
    assert ("model", "speed-up over torchvision fcn_resnet50") in metrics
    coverage = next(r.value for r in results if r.metric == "window pixels / image pixels")
    assert coverage == pytest.approx(9 * 32 * 32 / 64**2)  # 3 x 3 windows of 32 on 64 x 64
    # The memory case measures the model alone, a small image and the large one.
    assert tiny[0] is None and [Path(p).name for p in tiny[1:]] == ["small.jpg", "large.jpg"]


def test_script_writes_the_table_and_json(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    argv = ["benchmark.py", "--quick", "--sections", "layers", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr().out
    assert "| section | case | metric |" in printed and f"wrote {out}" in printed
    written = json.loads(out.read_text())
    assert written["machine"]["quick"] is True
    rows = written["results"]
    check([Result(**row) for row in rows], "layers")
    assert len(printed.splitlines()) >= len(rows) + 2  # header, rule, one line per result


@pytest.mark.parametrize(
    ("write", "importer"),
    [
        (import_bench.write_cvat_export, import_bench.import_cvat),
        (import_bench.write_roboflow_export, import_bench.import_roboflow),
    ],
)
def test_the_import_benchmark_measures_a_whole_import(tmp_path, write, importer):
    """The timed export imports every item with the classes it was drawn with: the rate is
    not that of an import that skipped or mislabelled its masks."""
    drawn = write(tmp_path / "export", 3)
    summary = importer(tmp_path / "export", tmp_path / "out")
    assert summary.images == {"train": 3} and not summary.skipped
    assert summary.classes == [f"class{i}" for i in range(import_bench.CLASSES)]
    masks = sorted((tmp_path / "out" / "masks" / "train").glob("*.png"))
    images = sorted((tmp_path / "out" / "images" / "train").glob("*.jpg"))
    assert [m.stem for m in masks] == [i.stem for i in images] and len(masks) == 3
    for mask, labels in zip(masks, drawn, strict=True):
        written = np.asarray(Image.open(mask))
        assert np.array_equal(written, labels)
        assert len(np.unique(labels)) >= 3  # background and regions of several classes


def test_an_unknown_section_is_named():
    with pytest.raises(ValueError, match="unknown benchmark section 'gpu'"):
        run_sections(["gpu"], quick=True)
