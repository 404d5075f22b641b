"""A segnet .onnx model (from scripts/export.py) on ONNX Runtime's CPU provider.

Everything a prediction needs comes from the file: the graph takes uint8 RGB and normalises
inside, and its metadata holds the class names, palette and provenance (see
:mod:`segnet.runtime.onnx_writer`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from segnet.runtime.base import ModelFileError, first_line

FORMAT = "segnet-fcn-onnx/1"
"""Value of the ``segnet.format`` metadata entry that marks a segnet model (and its layout)."""
_REQUIRED = ("segnet.format", "class_names", "palette", "num_classes", "weights_sha256")


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise ModelFileError(f"ONNX model {path} does not exist")
    data = path.read_bytes()
    if not data:
        raise ModelFileError(f"ONNX model {path} is an empty file")
    return data


def _parse(path: Path, data: bytes):
    """The ModelProto of ``data``; ModelFileError if it is not one or its weights were damaged."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise ModelFileError(
            f"ONNX model {path} is truncated or corrupt (not a readable ONNX file: {err})"
        ) from err
    meta = {p.key: p.value for p in proto.metadata_props}
    missing = [key for key in _REQUIRED if key not in meta]
    if missing or meta["segnet.format"] != FORMAT:
        what = f"no {', '.join(missing)} metadata" if missing else meta["segnet.format"]
        raise ModelFileError(
            f"ONNX model {path} is not a segnet model ({what}); export one with scripts/export.py"
        )
    if weights_sha256(proto.graph) != meta["weights_sha256"]:
        raise ModelFileError(
            f"ONNX model {path} is corrupt (its weights do not match the digest written at export)"
        )
    return meta


def weights_sha256(graph) -> str:
    """Digest of an ONNX graph's initializers (names, shapes, raw bytes), serialiser-independent:
    protobuf parses flipped bytes inside a weight without complaint, this digest does not."""
    digest = hashlib.sha256()
    for tensor in graph.initializer:
        digest.update(f"{tensor.name}:{tensor.data_type}:{list(tensor.dims)}".encode())
        digest.update(tensor.raw_data)
    return digest.hexdigest()


class OnnxBackend:
    """A segnet .onnx file on ONNX Runtime (CPU): uint8 (N, 3, H, W) -> float32 logits (N, C, H, W).

    Args:
        path: the .onnx written by scripts/export.py.
        threads: ONNX Runtime intra-op threads (None: its default, one per core).

    Attributes: ``name`` ("onnxruntime"), ``device`` (cpu), ``num_classes``, ``class_names``,
    ``palette`` (``[(r, g, b), ...]`` per class), ``info`` (the file's metadata, JSON decoded).

    Raises:
        ModelFileError: missing, empty, truncated or corrupt file, damaged weights, or an ONNX
            model that scripts/export.py did not write (no segnet metadata).
        ValueError: ``threads`` is not a positive int or None.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        path = Path(path)
        data = _read(path)
        meta = _parse(path, data)
        file_sha256 = hashlib.sha256(data).hexdigest()
        # ONNX Runtime reads the file itself: holding these bytes (and the parsed copy) while it
        # builds the session would add twice the model's size to the process's peak memory.
        del data
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT raises its own Fail/InvalidGraph types, not OSError
            raise ModelFileError(f"ONNX model {path} cannot be loaded: {first_line(err)}") from err
        self.path = path
        self.device = torch.device("cpu")
        try:
            self.info = {k: _decode(k, v) for k, v in meta.items()}
            self.class_names = [str(n) for n in self.info["class_names"]]
            self.num_classes = self.info["num_classes"]
            self.palette = [tuple(int(v) for v in rgb) for rgb in self.info["palette"]]
        except (ValueError, TypeError) as err:
            raise ModelFileError(f"ONNX model {path}: unreadable segnet metadata ({err})") from err
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ModelFileError(
                f"ONNX model {path}: metadata lists {len(self.class_names)} class names and "
                f"{len(self.palette)} colours for {self.num_classes} classes"
            )
        self.info["path"] = str(path)
        self.info["file_sha256"] = file_sha256

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 RGB (N, 3, H, W), N, H, W >= 1, on the CPU -> float32 logits (N, C, H, W)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if images.numel() == 0:
            raise ValueError(f"expected N, H, W >= 1, got {tuple(images.shape)}")
        array = np.ascontiguousarray(images.cpu().numpy())
        (logits,) = self.session.run(["logits"], {"image": array})
        return torch.from_numpy(logits)


def _decode(key: str, value: str):
    """Metadata values that were written as JSON come back as lists/dicts."""
    if key in ("class_names", "palette", "mean", "std", "export"):
        return json.loads(value)
    if key == "num_classes":
        return int(value)
    return value
