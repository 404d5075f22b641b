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

The pipeline overlaps three stages: DataLoader workers decode images
(:class:`~segnet.tasks.infer_inputs.DecodedImages`), the main thread runs the model on batches
of equally sized images, and a thread pool (:class:`~segnet.tasks.infer_writer.OutputWriter`)
encodes each image's files in memory and writes them as one set through :mod:`segnet.outputs`
(all of them or none: a full disk is a reported per-image failure). Ctrl-C or SIGTERM lets the
writes in progress finish, cancels the rest and prints the summary so far; a rerun
(``overwrite=false``) resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from tqdm import tqdm

from segnet.outputs import check_output_dir, remove_stale_temporaries, temporary_path
from segnet.predict.predictor import Predictor, image_size, size_batches
from segnet.tasks.cli import EXIT_OK, EXIT_PARTIAL, Terminated
from segnet.tasks.configured_model import configured_segmenter
from segnet.tasks.distributed import process_device, start_distributed, world_size
from segnet.tasks.infer_inputs import DecodedImages, Job, find_inputs, plan_jobs
from segnet.tasks.infer_outputs import predict_streaming
from segnet.tasks.infer_summary import Summary, report, still_to_do
from segnet.tasks.infer_writer import OutputWriter


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
    todo = still_to_do(plan_jobs(found.files, output_dir, cfg.save_probs), cfg.overwrite, before)
    if rank == 0:
        remove_stale_temporaries(output_dir)
        summary.add(before)
    if world > 1:
        dist.barrier()  # every process saw the same outputs before any writes more
    jobs = todo[rank::world]
    sizes = [image_size(j.source) for j in jobs]
    limit = cfg.max_pixels if predictor.window is not None else None
    loader = DataLoader(
        DecodedImages(jobs),
        batch_sampler=size_batches(sizes, cfg.batch_size, limit),
        collate_fn=list,
        num_workers=cfg.num_workers,
        pin_memory=predictor.device.type == "cuda",
    )
    desc = "infer" if world == 1 else f"infer (process 0 of {world}, its share)"
    bar = tqdm(total=len(jobs), unit="img", desc=desc, dynamic_ncols=True, disable=rank != 0)

    def shown(job: Job, reason: str) -> None:
        bar.write(f"skipped {job.source}: {reason}", file=sys.stderr)

    writer = OutputWriter(seg, cfg.writer_threads, summary, on_skip=shown)
    streamed: list[Path] = []  # temporary .npy files of windowed images, until renamed
    try:
        for records in loader:
            for index, _, error, frames in records:
                if error is not None:
                    writer.skip(jobs[index], error)
                elif frames > 1:
                    summary.notes.append(
                        f"{jobs[index].source}: {frames} frames, only the first was segmented"
                    )
            decoded = [(jobs[i], image) for i, image, _, _ in records if image is not None]
            # Header sizes are a hint; group by the decoded size to be sure.
            for shape in dict.fromkeys(image.shape for _, image in decoded):
                group = [(job, image) for job, image in decoded if image.shape == shape]
                _predict_and_write(predictor, group, cfg, writer, streamed, bar)
            bar.update(len(records))
        writer.finish()
    finally:
        writer.close()  # interrupted: the writes under way finish, those not started are dropped
        for tmp in streamed:
            tmp.unlink(missing_ok=True)
        bar.close()
    return summary


def _predict_and_write(
    predictor: Predictor,
    group: list[tuple[Job, torch.Tensor]],
    cfg: DictConfig,
    writer: OutputWriter,
    streamed: list[Path],
    bar: tqdm,
) -> None:
    """Predict one batch of equally sized images (uint8 (3, H, W) each) and queue their sets;
    a windowed image's probabilities stream to a temporary file (noted in ``streamed``)."""

    def windows(done: int, total: int) -> None:
        # A huge image takes minutes: show how far into it the model is, cleared when done.
        bar.set_postfix_str(f"windows {done}/{total}" if done < total else "")

    jobs = [job for job, _ in group]
    # One huge image is used as decoded: no stacked copy of it.
    images = torch.stack([im for _, im in group]) if len(group) > 1 else group[0][1][None]
    tmp = temporary_path(jobs[0].probs) if cfg.save_probs else None
    try:
        labels, probs = predict_streaming(predictor, images, tmp, windows)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if tmp is None or not isinstance(err, OSError):
            raise
        for job in jobs:  # no room for the streamed probabilities
            writer.skip(job, f"cannot write outputs: {err}")
        return
    if isinstance(probs, np.memmap):
        streamed.append(tmp)
    for n, job in enumerate(jobs):
        pixels = images[n].permute(1, 2, 0).numpy()
        writer.submit(job, pixels, labels[n], probs[n], cfg.alpha)


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
                summary.add(share)
    except (KeyboardInterrupt, Terminated):
        # Each process reports its own share: the others may be stopping too.
        where = "" if world == 1 else f" [process {rank} of {world}]"
        report(summary, f"{cfg.output_dir}{where}", interrupted=True)
        raise
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        report(summary, cfg.output_dir)
    return EXIT_PARTIAL if summary.skipped else EXIT_OK
