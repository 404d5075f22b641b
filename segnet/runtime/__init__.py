"""Model runtimes behind one interface (:class:`Backend`): eager PyTorch and ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

from segnet.runtime.base import Backend, ModelFileError

__all__ = ["Backend", "ModelFileError", "load_backend"]


def load_backend(path: str | Path, device: str = "auto", threads: int | None = None) -> Backend:
    """The model in ``path``: a ``.onnx`` file (from scripts/export.py) on ONNX Runtime, anything
    else as a checkpoint (from scripts/train.py) on eager PyTorch on ``device``.

    ``threads`` sets ONNX Runtime's intra-op threads (None: its default); an ONNX model runs on
    the CPU, so ``device`` must then be "auto" or "cpu".

    Raises:
        ModelFileError: the file is missing, damaged or not a segnet model.
        ValueError: ``device`` is not a device of this machine or not usable with the file.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if str(device) not in ("auto", "cpu"):
            raise ValueError(
                f"device={device!r}: an ONNX model ({path}) runs on ONNX Runtime's CPU provider; "
                "use device=cpu (or auto), or the .ckpt it was exported from for a GPU"
            )
        # Imported here: eager-only users need not install onnxruntime.
        from segnet.runtime.onnxrt import OnnxBackend

        return OnnxBackend(path, threads=threads)
    from segnet.runtime.eager import EagerBackend

    return EagerBackend.from_checkpoint(path, device)
