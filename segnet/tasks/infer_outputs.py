"""How infer turns a batch into files: class maps with streamed probabilities, and one
image's outputs encoded in memory and written as one set (:mod:`segnet.outputs`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from segnet.outputs import write_together
from segnet.predict.predictor import Predictor, class_map
from segnet.predict.segmenter import Segmenter
from segnet.tasks.infer_inputs import Job


def _npy(array: np.ndarray):
    def write(f) -> None:  # header, then the array's own memory: no copy of it
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        f.write(np.ascontiguousarray(array).data)

    return write


def write_outputs(
    seg: Segmenter, job: Job, pixels: np.ndarray, labels: np.ndarray, probs, alpha: float
):
    """Encode one image's outputs in memory and write them as one set (runs in the writer
    pool); the mask goes last, as it marks the set complete."""
    picture = seg.overlay_jpeg(pixels, labels, alpha, source=job.marker)
    mask = seg.mask_png(labels, source=job.marker)
    files = [
        (job.overlay, lambda f: f.write(picture)),
        (job.mask, lambda f: f.write(mask)),
    ]
    ready = []
    if isinstance(probs, np.memmap):  # streamed into a temporary .npy by predict_streaming
        probs.flush()
        ready.append((Path(probs.filename), job.probs))
    elif probs is not None:
        files.insert(0, (job.probs, _npy(probs)))
    write_together(files, ready=ready)


def _probs_file(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A float16 .npy of ``shape`` mapped into memory, its blocks allocated now: a full disk
    fails here with OSError, not later as SIGBUS on a write into a sparse hole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(path, "w+", np.float16, shape)
    with open(path, "r+b") as f:
        if hasattr(os, "posix_fallocate"):  # not on macOS
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return array


def predict_streaming(
    predictor: Predictor, images: torch.Tensor, probs_path: Path | None, progress=None
):
    """Class maps uint8 (N, H, W) of uint8 ``images`` (N, 3, H, W), and with ``probs_path``
    their float16 probabilities (N, C, H, W). A windowed image (N = 1) streams its
    probabilities into a memory-mapped .npy at ``probs_path`` (a temporary name; the caller
    removes it if this fails). ``progress``: see :meth:`Predictor.probability_bands`."""
    num, _, height, width = images.shape
    labels = np.empty((num, height, width), dtype=np.uint8)
    probs = None
    for top, band in predictor.probability_bands(images, progress):
        rows = slice(top, top + band.shape[2])
        labels[:, rows] = class_map(band).to(torch.uint8).cpu().numpy()
        if probs_path is None:
            continue
        if probs is None:
            shape = (num, band.shape[1], height, width)
            if predictor.uses_windows(height, width):
                probs = _probs_file(probs_path, shape[1:])[None]
            else:
                probs = np.empty(shape, dtype=np.float16)
        probs[:, :, rows] = band.half().cpu().numpy()
    return labels, [None] * num if probs is None else probs
