"""Segment a file, a folder or a glob of images with a trained checkpoint.

    python scripts/infer.py ckpt_path=best.ckpt input=photos/ output_dir=predictions/

For ``input/<dirs>/NAME.ext`` it writes ``output_dir/<dirs>/NAME.png`` (palette PNG of class
indices, exactly the image's size after EXIF orientation), ``output_dir/overlays/<dirs>/NAME.jpg``
(colours blended over the image, with a legend) and, with ``save_probs=true``,
``output_dir/probs/<dirs>/NAME.npy`` (float16 (C, H, W) softmax probabilities).

The pipeline overlaps its three stages: DataLoader workers decode images, the main thread
runs the model on batches of equally sized images, and a thread pool encodes and writes
PNG/JPEG/NPY files. A file that cannot be decoded or written is reported and skipped; every
output goes to a temporary file in its folder and is renamed into place, so an interrupted
run never leaves a half-written file and a rerun (``overwrite=false``) resumes.
"""

from __future__ import annotations

import glob
import os
import sys
import uuid
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import pil_to_tensor
from tqdm import tqdm

from segnet.checkpoint import load_model
from segnet.data.images import DataError, read_image
from segnet.device import resolve_device
from segnet.inference import Predictor, class_map, image_size, size_batches
from segnet.tasks.cli import EXIT_OK, EXIT_PARTIAL
from segnet.visualize import colorize, overlay

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class Job:
    """One input image and where its outputs go."""

    source: Path
    mask: Path
    overlay: Path
    probs: Path | None

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.mask, self.overlay, self.probs) if p is not None]


@dataclass
class Summary:
    written: int = 0
    existing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def configured_predictor(model: torch.nn.Module, cfg: DictConfig) -> Predictor:
    """The Predictor that the ``tta``/``window``/... keys of an eval or infer config describe."""
    return Predictor(
        model,
        flip=cfg.tta.flip,
        scales=list(cfg.tta.scales),
        window=cfg.window,
        overlap=cfg.overlap,
        blend=cfg.blend,
        max_pixels=cfg.max_pixels,
        batch_size=cfg.batch_size,
    )


def find_inputs(pattern: str, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """``(file, path relative to the input root)`` for a file, a folder (recursive) or a glob.

    Folders and globs keep image extensions only (case-insensitive); a single file is taken
    whatever its name. Files under ``exclude`` (the output folder) are left out.

    Raises:
        FileNotFoundError: nothing matches ``pattern``.
    """
    path = Path(pattern)
    if path.is_file():
        found = [(path, Path(path.name))]
    else:
        if path.is_dir():
            root, files = path, (p for p in path.rglob("*"))
        else:
            magic = next(
                i for i, part in enumerate(path.parts + ("",)) if glob.has_magic(part) or not part
            )
            root = Path(*path.parts[:magic]) if magic else Path(".")
            files = (Path(p) for p in glob.glob(pattern, recursive=True))
        found = sorted(
            (p, p.relative_to(root))
            for p in files
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
    if exclude is not None:
        exclude = exclude.resolve()
        found = [(p, rel) for p, rel in found if not p.resolve().is_relative_to(exclude)]
    if not found:
        raise FileNotFoundError(
            f"input {pattern!r} matches no image files (a file, a folder searched recursively "
            f"for {', '.join(IMAGE_EXTENSIONS)}, or a glob)"
        )
    return found


def plan_jobs(inputs: list[tuple[Path, Path]], output_dir: Path, save_probs: bool) -> list[Job]:
    """Output paths for every input. Two inputs that differ only by extension (a.jpg, a.png)
    keep it in their names (a.jpg.png, a.png.png) so neither overwrites the other."""
    stems = [rel.with_suffix("") for _, rel in inputs]
    clashing = {s for s, n in Counter(stems).items() if n > 1}
    jobs = []
    for (source, rel), stem in zip(inputs, stems, strict=True):
        base = rel if stem in clashing else stem
        jobs.append(
            Job(
                source=source,
                mask=output_dir / f"{base}.png",
                overlay=output_dir / "overlays" / f"{base}.jpg",
                probs=output_dir / "probs" / f"{base}.npy" if save_probs else None,
            )
        )
    return jobs


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _atomic(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it into place."""
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Decode(Dataset):
    """Decodes job images in DataLoader workers: ``(index, uint8 (3, H, W) or None, error)``."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int):
        source = self.jobs[index].source
        try:
            image = pil_to_tensor(read_image(source))
        except DataError as err:  # reported by the main process; the message names the file
            return index, None, str(err).removeprefix(f"{source}: ")
        return index, image, None


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a name
        np.save(f, array)


def _write(job: Job, pixels: np.ndarray, labels: np.ndarray, probs, names, alpha: float):
    """Encode and write one image's outputs (runs in the writer pool); the PNG goes last."""
    if isinstance(probs, np.memmap):  # streamed into a temporary .npy: just rename it
        probs.flush()
        os.replace(probs.filename, job.probs)
    elif probs is not None:
        _atomic(job.probs, lambda tmp: _save_npy(tmp, probs))
    picture = overlay(pixels, labels, names, alpha)
    _atomic(job.overlay, lambda tmp: picture.save(tmp, format="JPEG", quality=90))
    mask = colorize(labels)
    _atomic(job.mask, lambda tmp: mask.save(tmp, format="PNG", compress_level=1))


def _predict(predictor: Predictor, images: torch.Tensor, probs_path: Path | None, progress=None):
    """Class maps uint8 (N, H, W) of uint8 ``images`` (N, 3, H, W), and with ``probs_path``
    their float16 probabilities (N, C, H, W). A windowed image (N = 1) streams its
    probabilities into a memory-mapped temporary file next to ``probs_path``. ``progress``:
    see :meth:`Predictor.probability_bands`."""
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
                tmp = _temporary(probs_path)
                probs = np.lib.format.open_memmap(tmp, "w+", np.float16, shape[1:])[None]
            else:
                probs = np.empty(shape, dtype=np.float16)
        probs[:, :, rows] = band.half().cpu().numpy()
    return labels, [None] * num if probs is None else probs


def infer(cfg: DictConfig) -> Summary:
    """Run the configured inference (see configs/infer.yaml); returns what was done."""
    device = resolve_device(cfg.device)
    model, names = load_model(cfg.ckpt_path, device)
    predictor = configured_predictor(model, cfg)
    output_dir = Path(cfg.output_dir)
    jobs = plan_jobs(find_inputs(str(cfg.input), exclude=output_dir), output_dir, cfg.save_probs)
    summary = Summary()
    if not cfg.overwrite:
        todo = [j for j in jobs if not all(p.is_file() for p in j.outputs)]
        summary.existing = len(jobs) - len(todo)
        jobs = todo
    sizes = [image_size(j.source) for j in jobs]
    limit = cfg.max_pixels if predictor.window is not None else None
    loader = DataLoader(
        _Decode(jobs),
        batch_sampler=size_batches(sizes, cfg.batch_size, limit),
        collate_fn=list,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    pending: deque[tuple[Job, Future]] = deque()
    bar = tqdm(total=len(jobs), unit="img", desc="infer", dynamic_ncols=True)

    def windows(done: int, total: int) -> None:
        # A huge image takes minutes: show how far into it the model is, cleared when done.
        bar.set_postfix_str(f"windows {done}/{total}" if done < total else "")

    def settle(limit: int) -> None:
        while len(pending) > limit:
            job, future = pending.popleft()
            try:
                future.result()
                summary.written += 1
            except OSError as err:
                summary.skipped.append((str(job.source), f"cannot write outputs: {err}"))
                bar.write(f"skipped {job.source}: cannot write outputs: {err}")

    with ThreadPoolExecutor(max_workers=cfg.writer_threads) as pool:
        for records in loader:
            for index, _, error in records:
                if error is not None:
                    summary.skipped.append((str(jobs[index].source), error))
                    bar.write(f"skipped {jobs[index].source}: {error}")
            decoded = [(i, image) for i, image, _ in records if image is not None]
            # Header sizes are a hint; group by the decoded size to be sure.
            for shape in dict.fromkeys(image.shape for _, image in decoded):
                group = [(i, image) for i, image in decoded if image.shape == shape]
                batch_jobs = [jobs[i] for i, _ in group]
                # One huge image is used as decoded: no stacked copy of it.
                images = (
                    torch.stack([im for _, im in group]) if len(group) > 1 else group[0][1][None]
                )
                labels, probs = _predict(predictor, images, batch_jobs[0].probs, windows)
                for n, job in enumerate(batch_jobs):
                    pixels = images[n].permute(1, 2, 0).numpy()
                    args = (job, pixels, labels[n], probs[n], names, cfg.alpha)
                    pending.append((job, pool.submit(_write, *args)))
            bar.update(len(records))
            settle(2 * cfg.writer_threads)
        settle(0)
    bar.close()
    return summary


def infer_command(cfg: DictConfig) -> int:
    """``scripts/infer.py``: infer, print the summary and every skipped file; 1 if any."""
    summary = infer(cfg)
    print(
        f"written {summary.written}, skipped {len(summary.skipped)}, "
        f"existing {summary.existing} -> {cfg.output_dir}"
    )
    for source, reason in summary.skipped:
        print(f"  skipped {source}: {reason}", file=sys.stderr)
    return EXIT_PARTIAL if summary.skipped else EXIT_OK
