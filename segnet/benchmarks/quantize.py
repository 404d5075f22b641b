"""int8 static quantization of an exported model, measured against fp32: NOT offered by export.

The issue's bar for ``export.py quantize=int8``: at least 1.5x faster than fp32 ONNX Runtime at
batch 1 with at most 1.0 point of mIoU lost. :func:`measure_int8` measures exactly that:
ONNX Runtime static quantization (MinMax calibration on demo-train images, int8 per-channel
weights, uint8 activations, QDQ and QOperator formats) against the fp32 model, the two run
interleaved, and the mIoU of each on the demo val split.
``python -m segnet.benchmarks.quantize MODEL.onnx DEMO_ROOT`` prints it (run it outside the
repository: ONNX Runtime's quantizer leaves temporary files in the working directory when it
fails).

On the project's CPU (AVX2, no VNNI) int8 missed both bars, so export does not offer it; the
dated figures are in docs/benchmarks.md. A CPU with VNNI (or AMX) is where int8 pays; this
module is here to rerun the measurement there.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from segnet.data.images import read_image, read_mask
from segnet.data.voc import voc_split_files
from segnet.metrics import confusion_counts, confusion_scores
from segnet.runtime.onnx_writer import verification_images


def _pixels(path: str) -> np.ndarray:
    """uint8 (1, 3, H, W) RGB of an image file (the graph's input)."""
    return np.asarray(read_image(path), dtype=np.uint8).transpose(2, 0, 1)[None].copy()


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over image files: one {"image": (1,3,H,W)} each."""

    def __init__(self, paths: list[str]) -> None:
        self._paths = iter(paths)

    def get_next(self) -> dict | None:
        path = next(self._paths, None)
        return None if path is None else {"image": _pixels(path)}


def quantize_int8(fp32: Path, out: Path, calibration: list[str], fmt: str = "QDQ") -> None:
    """Write ``out``: ``fp32`` statically quantized (int8 weights per channel, uint8
    activations, MinMax ranges from ``calibration`` image files); ``fmt``: "QDQ" or "QOperator".
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ if fmt == "QDQ" else QuantFormat.QOperator,
            per_channel=True,
            # 7-bit weights: AVX2 without VNNI multiplies u8 x s8 pairs into saturating int16
            # (measured: mIoU 0.26 with 8-bit weights, 0.725 with 7-bit, on the demo model).
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def miou(session, images: list[str], masks: list[str], num_classes: int) -> float:
    """Demo-val style mIoU of an ONNX session: each image alone at its own size, one matrix."""
    confmat = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for image, mask in zip(images, masks, strict=True):
        logits = session.run(["logits"], {"image": _pixels(image)})[0]
        pred = torch.from_numpy(logits.argmax(1)[0]).long()
        target = torch.from_numpy(read_mask(mask, num_classes)).long()
        confmat += confusion_counts(pred, target, num_classes)
    return confusion_scores(confmat, [str(i) for i in range(num_classes)])["miou"]


def latency_ms(sessions: dict, shape: tuple[int, int], repeats: int = 11) -> dict[str, float]:
    """Median batch-1 latency of each session at ``shape`` (H, W), runs interleaved so load
    from other processes on the machine falls on all of them alike."""
    image = verification_images(1, *shape).numpy()
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up: first runs allocate and plan
        session.run(["logits"], {"image": image})
    for _ in range(repeats):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(["logits"], {"image": image})
            times[name].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(t) for name, t in times.items()}


def measure_int8(fp32: Path, root: str, num_calibration: int = 64, threads: int = 2) -> dict:
    """Quantize ``fp32`` (QDQ and QOperator) on ``num_calibration`` train images of the VOC-layout
    dataset at ``root``; return latencies at 320x480 and 500x375 and val mIoU of each model."""
    train, _ = voc_split_files(root, "train")
    val_images, val_masks = voc_split_files(root, "val")
    num_classes = _session(fp32, threads).get_outputs()[0].shape[1]
    num_classes = num_classes if isinstance(num_classes, int) else 21
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": fp32}
        for fmt in ("QDQ", "QOperator"):
            paths[fmt] = Path(tmp) / f"{fmt}.onnx"
            started = time.perf_counter()
            quantize_int8(fp32, paths[fmt], train[:num_calibration], fmt)
            result[f"{fmt} quantize s"] = round(time.perf_counter() - started, 1)
        sessions = {name: _session(path, threads) for name, path in paths.items()}
        for shape in ((320, 480), (500, 375)):
            result[f"ms {shape[0]}x{shape[1]}"] = latency_ms(sessions, shape)
        result["miou"] = {
            n: miou(s, val_images, val_masks, num_classes) for n, s in sessions.items()
        }
    return result


if __name__ == "__main__":
    print(measure_int8(Path(sys.argv[1]), sys.argv[2]))
