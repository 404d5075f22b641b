"""infer.py and evaluate.py on an exported .onnx model: the files and metrics of the checkpoint."""

from __future__ import annotations

import numpy as np
from helpers import eval_args, infer_in_process, labels_of
from test_evaluate import evaluate_quietly


def test_evaluate_on_the_onnx_model_gives_the_checkpoints_metrics(
    checkpoint, onnx_model, tiny_voc_root, tmp_path
):
    eager, _ = evaluate_quietly(eval_args(checkpoint, tiny_voc_root, tmp_path / "eager"))
    onnx, _ = evaluate_quietly(eval_args(onnx_model, tiny_voc_root, tmp_path / "onnx"))
    assert abs(onnx["miou"] - eager["miou"]) <= 1e-3
    eager_counts, onnx_counts = (np.array(m["confusion_matrix"]) for m in (eager, onnx))
    predicted = eager_counts.sum(0)
    assert (predicted >= 0.01 * predicted.sum()).sum() >= 3  # varied predictions
    # The same pixels, give or take a few logit near-ties: at most 0.01% of them moved.
    assert np.abs(onnx_counts - eager_counts).sum() <= 2e-4 * eager_counts.sum()


def test_infer_on_the_onnx_model_writes_the_checkpoints_files(
    checkpoint, onnx_model, tiny_voc_root, tmp_path
):
    source = f"{tiny_voc_root}/VOCdevkit/VOC2012/JPEGImages/*val*.jpg"
    options = ["num_workers=0", "max_pixels=20000", "window=96"]  # windows included
    eager = infer_in_process(checkpoint, source, tmp_path / "eager", *options)
    onnx = infer_in_process(onnx_model, source, tmp_path / "onnx", *options)
    assert eager.written == onnx.written == 8 and not onnx.skipped
    differ = total = 0
    for mask in sorted((tmp_path / "eager").glob("*.png")):
        expected, got = labels_of(mask), labels_of(tmp_path / "onnx" / mask.name)
        assert (tmp_path / "onnx" / "overlays" / f"{mask.stem}.jpg").is_file()
        differ += int((expected != got).sum())
        total += expected.size
    assert differ <= 1e-4 * total, (differ, total)
