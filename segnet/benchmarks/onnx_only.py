"""Segment one image with a segnet .onnx model using only onnxruntime, numpy and Pillow.

    python -P segnet/benchmarks/onnx_only.py MODEL.onnx IMAGE [THREADS]

Prints one JSON line: the peak resident set size of this process (``VmHWM``, kB), the label map's
shape, the classes found, how many modules were imported and which of torch / Lightning / Hydra /
segnet were (none should be). The deploy benchmark runs it in a fresh process to measure what a
PyTorch-free deployment costs; it is also the smallest complete client of an exported model:
everything it needs (class names, the uint8 RGB input convention) is in the file.

Deliberately imports nothing from segnet (run with ``-P`` so this folder's sibling modules are not
on ``sys.path`` either).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

FORBIDDEN = ("torch", "lightning", "pytorch_lightning", "hydra", "omegaconf", "segnet")
"""Top-level packages a PyTorch-free deployment must not load."""


def peak_rss_kb() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def segment(model: str, image: str, threads: int | None = None) -> tuple[np.ndarray, list[str]]:
    """uint8 (H, W) class indices of ``image`` (EXIF orientation applied) and the class names."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = json.loads(session.get_modelmeta().custom_metadata_map["class_names"])
    with Image.open(image) as img:
        rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))  # (H, W, 3) uint8
    pixels = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])  # (1, 3, H, W) uint8, as exported
    (logits,) = session.run(["logits"], {"image": pixels})  # (1, C, H, W) float32
    return logits[0].argmax(0).astype(np.uint8), names


def main() -> None:
    model, image = sys.argv[1:3]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else None
    labels, names = segment(model, image, threads)
    loaded = {name.partition(".")[0] for name in sys.modules}
    report = {
        "peak_rss_kb": peak_rss_kb(),
        "shape": list(labels.shape),
        "classes": [names[i] for i in np.unique(labels)],
        "modules": len(sys.modules),
        "forbidden": sorted(loaded.intersection(FORBIDDEN)),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
