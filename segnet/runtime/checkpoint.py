"""Rebuild a trained FCN from a segnet Lightning checkpoint, safely.

A checkpoint is read with ``torch.load(weights_only=True)``: only tensors and plain Python
values are unpickled, so a checkpoint can never run code. The network is rebuilt from the
``hyper_parameters`` that :class:`segnet.training.system.SegmentationSystem` saves (the
:data:`~segnet.models.ARCHITECTURE_KEYS` and ``class_names``) by
:func:`~segnet.models.fcn_from_hparams`, as training built it, and its weights are the state
dict entries under the ``model.`` prefix. Nothing else from training is needed: no config,
no pretrained download (``pretrained=False``, the trained weights replace them anyway).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from segnet.data.classes import class_colours, default_class_names
from segnet.device import resolve_device
from segnet.models import ARCHITECTURE_KEYS, FCN, fcn_from_hparams
from segnet.runtime.base import ModelFileError


class CheckpointError(ModelFileError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's dict, read with ``weights_only=True`` after checking the archive.

    Raises:
        CheckpointError: missing, empty, not a zip archive, bad CRC, objects beyond tensors
            and plain values, or no dict inside.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is an empty file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch checkpoint (not a zip archive: "
            "truncated, corrupt or another kind of file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            # torch's reader skips CRCs: flipped bytes would load as silently wrong weights.
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        damaged = f"the archive ({err})"
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt (bad CRC in {damaged})")
    try:
        # Read onto the CPU whatever the target device: a GPU checkpoint then loads on a
        # CPU-only machine, and a missing device is reported as such, not as a corrupt file.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a long how-to-bypass text; one line of it names the culprit.
        lines = [line.strip() for line in str(err).splitlines()]
        reason = next((line for line in lines if "Unsupported global" in line), lines[0])
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, which "
            f"weights_only=True refuses to unpickle (a checkpoint must not run code): {reason}"
        ) from err
    # A damaged archive surfaces as RuntimeError/EOFError/OSError from the zip reader.
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} is not a segnet checkpoint (no dict inside)")
    return checkpoint


def read_model_parts(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(hyper_parameters, FCN state dict without the "model." prefix)`` of a checkpoint saved
    by scripts/train.py, read as :func:`read_checkpoint` reads it.

    Raises:
        CheckpointError: an exported ``.onnx`` given instead; what :func:`read_checkpoint`
            raises; no ``hyper_parameters`` with :data:`~segnet.models.ARCHITECTURE_KEYS`, or
            no ``model.`` weights.
    """
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path} is an exported model (.onnx), not a training checkpoint; give the .ckpt "
            "it was exported from (a run's checkpoints/best.ckpt)"
        )
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    state = checkpoint.get("state_dict")
    missing = [k for k in ARCHITECTURE_KEYS if not isinstance(hparams, dict) or k not in hparams]
    if missing or not isinstance(state, dict):
        what = f"hyper_parameters lack {', '.join(missing)}" if missing else "no state_dict"
        raise CheckpointError(
            f"checkpoint {path} is not a segnet checkpoint ({what}); expected one saved by "
            "scripts/train.py"
        )
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if not weights:
        raise CheckpointError(f"checkpoint {path} is not a segnet checkpoint (no model.* weights)")
    return hparams, weights


def load_model(
    ckpt_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[FCN, list[str], list[tuple[int, int, int]]]:
    """Load ``ckpt_path`` (a SegmentationSystem .ckpt) as ``(FCN in eval mode on device,
    class_names, class colours (r, g, b))``; ``device`` is checked first (``"auto"``: the GPU if
    there is one). A checkpoint saved before colours were kept draws in VOC's palette.

    Raises:
        ValueError: ``device`` is not a device of this machine.
        CheckpointError: missing file; not a zip archive or corrupt; objects beyond tensors and
            plain values; not a segnet checkpoint (no ``hyper_parameters`` with
            :data:`~segnet.models.ARCHITECTURE_KEYS`, or no ``model.`` weights); weights of
            another architecture.
    """
    target = resolve_device(device)
    path = Path(ckpt_path)
    hparams, weights = read_model_parts(path)
    try:
        model = fcn_from_hparams(hparams)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path}: cannot rebuild its model ({err})") from err
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        summary = [line.strip()[:160] for line in str(err).splitlines()[1:3]]
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit FCN(backbone={hparams['backbone']!r}, "
            f"variant={hparams['variant']!r}, num_classes={hparams['num_classes']}); it was "
            f"saved from another architecture: {' '.join(summary)}"
        ) from err
    names = hparams.get("class_names")
    if names is None:  # SegmentationSystem's own default
        names = default_class_names(model.num_classes)
    if len(names) != model.num_classes:
        raise CheckpointError(
            f"checkpoint {path}: {len(names)} class_names for {model.num_classes} classes"
        )
    colours = hparams.get("class_colours")
    if colours is None:
        colours = class_colours(model.num_classes)
    if len(colours) != model.num_classes:
        raise CheckpointError(
            f"checkpoint {path}: {len(colours)} class_colours for {model.num_classes} classes"
        )
    palette = [tuple(int(c) for c in colour) for colour in colours]
    return model.to(target).eval(), [str(n) for n in names], palette
