"""Segment a file, a folder or a glob of images with a trained checkpoint.

    python scripts/infer.py ckpt_path=best.ckpt input=photos/ output_dir=predictions/

For ``input/<dirs>/NAME.ext`` it writes ``output_dir/<dirs>/NAME.png`` (palette PNG of class
indices, exactly the image's size after EXIF orientation), ``output_dir/overlays/<dirs>/NAME.jpg``
(colours blended over the image, with a legend) and, with ``save_probs=true``,
``output_dir/probs/<dirs>/NAME.npy`` (float16 (C, H, W) softmax probabilities). Where NAME
would be ambiguous the extension stays in it (``a.jpg.png``); see
:func:`segnet.tasks.infer_inputs.plan_jobs`.

Masks and overlays record the input they were made from (PNG text / JPEG comment
``segnet-infer-source``): a rerun counts an image as done only if its mask says so, and an
``output_dir`` holding the inputs (the input folder itself, or a folder above it) never takes
infer's own outputs for inputs.

The pipeline overlaps three stages: DataLoader workers decode images, the main thread runs the
model on batches of equally sized images, and a thread pool encodes each image's files in memory
and writes them as one set through :mod:`segnet.outputs` (all of them or none: a full disk is a
reported per-image failure). Ctrl-C or SIGTERM lets the writes in progress finish, cancels the
rest and prints the summary so far; a rerun (``overwrite=false``) resumes.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import pil_to_tensor
from tqdm import tqdm

from segnet.data.images import DataError, frame_count, read_image
from segnet.outputs import (
    check_output_dir,
    remove_stale_temporaries,
    temporary_path,
)
from segnet.predict.predictor import image_size, size_batches
from segnet.predict.segmenter import Segmenter
from segnet.tasks.cli import EXIT_OK, EXIT_PARTIAL, Terminated
from segnet.tasks.distributed import process_device, start_distributed, world_size
from segnet.tasks.infer_inputs import (
    Job,
    find_inputs,
    plan_jobs,
    recorded_source,
)
from segnet.tasks.infer_outputs import predict_streaming, write_outputs


@dataclass
class Summary:
    written: int = 0
    existing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)  # done, but not quite as asked


def configured_segmenter(cfg: DictConfig, device: str | torch.device | None = None) -> Segmenter:
    """The model at ``cfg.ckpt_path`` (a .ckpt, or a .onnx from scripts/export.py) as a
    Segmenter with the ``tta``/``window``/... settings of an eval or infer config, on
    ``device`` (default ``cfg.device``)."""
    return Segmenter.load(
        cfg.ckpt_path,
        device=cfg.device if device is None else device,
        threads=cfg.get("threads"),
        flip=cfg.tta.flip,
        scales=list(cfg.tta.scales),
        window=OmegaConf.to_container(cfg.window) if OmegaConf.is_list(cfg.window) else cfg.window,
        overlap=cfg.overlap,
        blend=cfg.blend,
        max_pixels=cfg.max_pixels,
        batch_size=cfg.batch_size,
    )


def _to_do(jobs: list[Job], overwrite: bool, summary: Summary) -> list[Job]:
    """The jobs to run; counts those done before and skips those whose mask path holds a file
    infer did not write (replaced only with ``overwrite``)."""
    todo = []
    for job in jobs:
        source = None if overwrite or not job.mask.exists() else recorded_source(job.mask)
        if source == job.marker and all(p.is_file() for p in job.outputs):
            summary.existing += 1
        elif source is None and not overwrite and job.mask.exists():
            summary.skipped.append(
                (
                    str(job.source),
                    f"{job.mask} exists and is not infer's output for this image "
                    "(overwrite=true replaces it)",
                )
            )
        else:
            todo.append(job)
    return todo


class _Decode(Dataset):
    """Decodes job images in DataLoader workers:
    ``(index, uint8 (3, H, W) or None, error or None, number of frames)``."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int):
        source = self.jobs[index].source
        try:
            image = pil_to_tensor(read_image(source))
        except DataError as err:  # reported by the main process; the message names the file
            return index, None, str(err).removeprefix(f"{source}: "), 1
        return index, image, None, _frames(source)


def _frames(path: Path) -> int:
    try:
        return frame_count(path)
    except DataError:  # decoded a moment ago: one frame is the honest answer
        return 1


def infer(
    cfg: DictConfig,
    summary: Summary | None = None,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
) -> Summary:
    """Run the configured inference (see configs/infer.yaml). Fills and returns ``summary``,
    which holds what was done so far when the run is interrupted.

    As process ``rank`` of ``world`` (torchrun, process group joined), it does the images
    ``rank, rank + world, ...`` of those still to do; inputs found before it, existing outputs
    and unusable files are counted by rank 0 alone, so the summaries add up.

    Raises:
        CheckpointError, ModelFileError, ValueError: unusable model file, device or setting.
        OutputError: output_dir (or its overlays/, probs/) cannot be written; checked before
            any image is read.
        FileNotFoundError: ``input`` matches no image.
    """
    summary = Summary() if summary is None else summary
    if not 0 <= cfg.alpha <= 1:  # used only when the first overlay is drawn: check it now
        raise ValueError(f"alpha={cfg.alpha} must be in [0, 1] (the overlay's colour weight)")
    seg = configured_segmenter(cfg, device)
    predictor = seg.predictor
    output_dir = Path(cfg.output_dir)
    found = find_inputs(str(cfg.input), output_dir)
    for folder in ("", "overlays", "probs") if cfg.save_probs else ("", "overlays"):
        check_output_dir(output_dir / folder)
    before = Summary(skipped=found.unusable, notes=found.notes)
    todo = _to_do(plan_jobs(found.files, output_dir, cfg.save_probs), cfg.overwrite, before)
    if rank == 0:
        remove_stale_temporaries(output_dir)
        _add(summary, before)
    if world > 1:
        dist.barrier()  # every process saw the same outputs before any writes more
    jobs = todo[rank::world]
    sizes = [image_size(j.source) for j in jobs]
    limit = cfg.max_pixels if predictor.window is not None else None
    loader = DataLoader(
        _Decode(jobs),
        batch_sampler=size_batches(sizes, cfg.batch_size, limit),
        collate_fn=list,
        num_workers=cfg.num_workers,
        pin_memory=predictor.device.type == "cuda",
    )
    pending: deque[Future] = deque()  # writes submitted, oldest first: at most a few at a time
    streamed: list[Path] = []  # temporary .npy files of windowed images, until renamed
    desc = "infer" if world == 1 else f"infer (process 0 of {world}, its share)"
    bar = tqdm(total=len(jobs), unit="img", desc=desc, dynamic_ncols=True, disable=rank != 0)

    def windows(done: int, total: int) -> None:
        # A huge image takes minutes: show how far into it the model is, cleared when done.
        bar.set_postfix_str(f"windows {done}/{total}" if done < total else "")

    def skip(job: Job, reason: str) -> None:
        summary.skipped.append((str(job.source), reason))
        bar.write(f"skipped {job.source}: {reason}", file=sys.stderr)

    counting = threading.Lock()

    def write(job: Job, *args) -> None:
        # Counted in the writer thread, where Ctrl-C never lands (Python raises it in the main
        # thread): every set that reached the disk is counted, whenever the run is stopped.
        try:
            write_outputs(seg, job, *args)
        except (OSError, UnicodeError) as err:
            with counting:
                skip(job, f"cannot write outputs: {err}")
            return
        with counting:
            summary.written += 1

    def settle(limit: int) -> None:
        while len(pending) > limit:
            future = pending.popleft()
            if not future.cancelled():
                future.result()  # anything but a write error is a bug: raised here

    pool = ThreadPoolExecutor(max_workers=cfg.writer_threads)
    try:
        for records in loader:
            for index, _, error, frames in records:
                if error is not None:
                    skip(jobs[index], error)
                elif frames > 1:
                    summary.notes.append(
                        f"{jobs[index].source}: {frames} frames, only the first was segmented"
                    )
            decoded = [(i, image) for i, image, _, _ in records if image is not None]
            # Header sizes are a hint; group by the decoded size to be sure.
            for shape in dict.fromkeys(image.shape for _, image in decoded):
                group = [(i, image) for i, image in decoded if image.shape == shape]
                batch_jobs = [jobs[i] for i, _ in group]
                # One huge image is used as decoded: no stacked copy of it.
                images = (
                    torch.stack([im for _, im in group]) if len(group) > 1 else group[0][1][None]
                )
                tmp = temporary_path(batch_jobs[0].probs) if cfg.save_probs else None
                try:
                    labels, probs = predict_streaming(predictor, images, tmp, windows)
                except BaseException as err:
                    if tmp is not None:
                        tmp.unlink(missing_ok=True)
                    if tmp is None or not isinstance(err, OSError):
                        raise
                    for job in batch_jobs:  # no room for the streamed probabilities
                        skip(job, f"cannot write outputs: {err}")
                    continue
                if isinstance(probs, np.memmap):
                    streamed.append(tmp)
                for n, job in enumerate(batch_jobs):
                    pixels = images[n].permute(1, 2, 0).numpy()
                    args = (job, pixels, labels[n], probs[n], cfg.alpha)
                    pending.append(pool.submit(write, *args))
            bar.update(len(records))
            settle(2 * cfg.writer_threads)
        settle(0)
    finally:
        # Interrupted: the writes under way finish (each whole), those not started are dropped.
        pool.shutdown(wait=True, cancel_futures=True)
        settle(0)
        for tmp in streamed:
            tmp.unlink(missing_ok=True)
        bar.close()
    return summary


def _add(total: Summary, part: Summary) -> None:
    total.written += part.written
    total.existing += part.existing
    total.skipped += part.skipped
    total.notes += part.notes


def _report(summary: Summary, output_dir: str, interrupted: bool = False) -> None:
    stopped = " (interrupted: finished images are kept, rerun to do the rest)"
    print(
        f"written {summary.written}, skipped {len(summary.skipped)}, "
        f"existing {summary.existing} -> {output_dir}{stopped if interrupted else ''}",
        flush=True,
    )
    for source, reason in summary.skipped:
        print(f"  skipped {source}: {reason}", file=sys.stderr)
    for note in summary.notes:
        print(f"  note: {note}", file=sys.stderr)


def infer_command(cfg: DictConfig) -> int:
    """``scripts/infer.py``: infer, print the summary, every skipped file and every note;
    1 if any file was skipped. Interrupted, the summary so far is printed before unwinding.

    Under torchrun (``torchrun --nproc_per_node=N scripts/infer.py ...``, several nodes on a
    shared filesystem too) every process takes its share of the images; the summaries are
    combined and printed once, and every process exits with the combined status.
    """
    world = world_size()
    device = process_device(cfg.device, world)
    rank = start_distributed(device, world)
    summary = Summary()
    try:
        infer(cfg, summary, rank, world, device)
        if world > 1:
            shares: list[Summary | None] = [None] * world
            dist.all_gather_object(shares, summary)
            summary = Summary()
            for share in shares:
                _add(summary, share)
    except (KeyboardInterrupt, Terminated):
        # Each process reports its own share: the others may be stopping too.
        where = "" if world == 1 else f" [process {rank} of {world}]"
        _report(summary, f"{cfg.output_dir}{where}", interrupted=True)
        raise
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        _report(summary, cfg.output_dir)
    return EXIT_PARTIAL if summary.skipped else EXIT_OK
