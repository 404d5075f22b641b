"""Export a trained FCN to a self-contained, self-verified ONNX model.

The graph is :class:`segnet.runtime.eager.PixelFCN` (the module the eager backend runs):

    input  "image"  uint8 (N, 3, H, W), RGB 0..255, any N, H, W >= 1
    output "logits" float32 (N, C, H, W)

Normalisation (x / 255, then (x - mean) / std with ImageNet's mean/std) happens inside the graph:
a deployment cannot feed it unnormalised floats, BGR-scaled floats or another mean/std by
mistake, and 8-bit pixels are what every decoder produces.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``: it gives the same
numbers as the dynamo-based one, exports much faster and needs no onnxscript (the measurement is
in docs/benchmarks.md, the decision in docs/design.md). It is deprecated upstream: if a later
torch drops it, switch to ``dynamo=True`` with ``dynamic_shapes`` and keep the verification
(:func:`verify_onnx`: ONNX Runtime against PyTorch at ``VERIFY_SHAPES`` before a file is
written), which decides either way.

Metadata (``metadata_props``, all strings; JSON where structured): see :func:`metadata`. The
``weights_sha256`` entry lets :class:`segnet.runtime.onnxrt.OnnxBackend` refuse a file whose
weights were damaged after export (protobuf parses flipped float bytes without complaint).
"""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from segnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segnet.models import FCN
from segnet.runtime.base import first_line
from segnet.runtime.eager import PixelFCN, file_sha256, segnet_version
from segnet.runtime.onnxrt import FORMAT, weights_sha256

OPSET = 17
INPUT_CONVENTION = (
    "input 'image': uint8 RGB (N, 3, H, W), values 0..255, any N, H, W >= 1 (no resizing "
    "needed); normalised inside the graph as (x / 255 - mean) / std per channel. "
    "output 'logits': float32 (N, C, H, W); class = argmax over C"
)

ATOL = 1e-3
"""Largest |ONNX Runtime - PyTorch| logit difference an export may show, for logits up to
:data:`LOGIT_SCALE` in magnitude; beyond, it grows in proportion to the largest |logit|.

fp32 rounding (ORT's fused convolutions against eager's polyphase upsampling) is relative to the
logits' size. Measured at 320x480, 500x375, 251x317 and 1 px wide: the trained demo model
(mobilenet_v3_large) 7.2e-6; resnet18 with random weights 1.7e-5 at logits up to 12; resnet50
3.0e-4 at logits up to 210: 1.4e-6 of the largest logit in both. Faults are far larger: the
frozen padding gave 0.07 (1x1 image, logits 0.1) to 1.2 (251x317), the issue measured 0.22;
an error of 0.01 in one class's bias still shows as 3e-3 through a 1 px wide image. 1e-3 is 14x
the worst rounding seen at logits below 100 and 3x under the smallest fault."""
LOGIT_SCALE = 100.0
MAX_LABEL_MISMATCH = 1e-4
"""Largest fraction of pixels whose argmax class may differ (0.01%: near-ties only)."""
VERIFY_SHAPES = ((1, 37, 1), (1, 1, 37), (1, 251, 317), (2, 320, 480))
"""(N, H, W) checked before writing: 1 px wide and high, odd sizes, a batch of 2."""


Palette = list[tuple[int, int, int]]


class ExportError(ValueError):
    """An export refused: the ONNX graph does not reproduce the PyTorch model."""


def metadata(
    model: FCN, class_names: list[str], palette: Palette, source: Path, settings: dict
) -> dict[str, str]:
    """The strings stored in the .onnx: what a deployment needs besides the graph."""
    return {
        "segnet.format": FORMAT,
        "class_names": json.dumps(class_names),
        "palette": json.dumps([list(colour) for colour in palette]),
        "input_convention": INPUT_CONVENTION,
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "backbone": model.backbone_name,
        "variant": model.variant,
        "num_classes": str(model.num_classes),
        "segnet_version": segnet_version(),
        "source_checkpoint": source.name,
        "source_sha256": file_sha256(source),
        "export": json.dumps(settings),
    }


def trace_to_onnx(pixel_model: torch.nn.Module, opset: int = OPSET):
    """``pixel_model`` (uint8 (N, 3, H, W) -> logits) as an ``onnx.ModelProto``, dynamic N, H, W.

    Traced at 64x96: the size does not matter (the pad is shape arithmetic), small is fast.
    """
    import onnx

    example = torch.zeros(1, 3, 64, 96, dtype=torch.uint8)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The exporter's deprecation notice and tracer warnings about shape-dependent Python
        # values (checked by verify_onnx, which is what decides) are noise to a user.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pixel_model.eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    return onnx.load_from_string(buffer.getvalue())


def with_metadata(proto, entries: dict[str, str]):
    """``proto`` with ``entries`` as its metadata and the weights' digest added."""
    del proto.metadata_props[:]
    for key, value in {**entries, "weights_sha256": weights_sha256(proto.graph)}.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "segnet", segnet_version()
    return proto


def verification_images(batch: int, height: int, width: int, seed: int = 0) -> Tensor:
    """Deterministic photo-like uint8 (N, 3, H, W) images: smooth colour blobs plus noise.

    Photo-like rather than pure noise, so the check sees what a model meets in use: regions it
    is confident about and the borders between them, not mostly near-ties between classes.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 16 + 2, width // 16 + 2, generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noise = 0.05 * torch.randn(batch, 3, height, width, generator=gen)
    return ((smooth + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def verify_onnx(
    onnx_bytes: bytes,
    pixel_model: torch.nn.Module,
    shapes=VERIFY_SHAPES,
    atol: float = ATOL,
    max_mismatch: float = MAX_LABEL_MISMATCH,
) -> dict:
    """Run ONNX Runtime and PyTorch on :data:`VERIFY_SHAPES`; raise unless they agree.

    Returns:
        ``{"max_abs_diff": float, "label_mismatch": float, "shapes": [[N, H, W], ...]}``.

    Raises:
        ExportError: ONNX Runtime fails at a shape, or logits differ by more than ``atol`` (times
            max|logit| / LOGIT_SCALE where that is above 1), or
            more than ``max_mismatch`` of the pixels change class (the message gives figures).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst_diff, worst_mismatch = 0.0, 0.0
    for batch, height, width in shapes:
        images = verification_images(batch, height, width)
        with torch.inference_mode():
            expected = pixel_model(images).numpy()
        try:
            got = session.run(["logits"], {"image": images.numpy()})[0]
        except Exception as err:  # ORT's own Fail/RuntimeException types
            raise ExportError(
                f"ONNX Runtime cannot run the exported model at {batch}x3x{height}x{width} "
                f"({first_line(err)}); nothing was written"
            ) from err
        if got.shape != expected.shape:
            raise ExportError(
                f"ONNX model gives logits of shape {got.shape} for input {tuple(images.shape)}, "
                f"PyTorch {expected.shape}"
            )
        diff = float(np.abs(got - expected).max())
        allowed = atol * max(1.0, float(np.abs(expected).max()) / LOGIT_SCALE)
        mismatch = float((got.argmax(1) != expected.argmax(1)).mean())
        if not diff <= allowed or mismatch > max_mismatch:  # "not <=": NaN fails too
            raise ExportError(
                f"ONNX model does not reproduce PyTorch at {batch}x3x{height}x{width}: max "
                f"|logit diff| {diff:.3g} (tolerance {allowed:.3g}), labels differ on "
                f"{100 * mismatch:.4f}% of pixels (tolerance {100 * max_mismatch:g}%); "
                "nothing was written"
            )
        worst_diff, worst_mismatch = max(worst_diff, diff), max(worst_mismatch, mismatch)
    return {
        "max_abs_diff": worst_diff,
        "label_mismatch": worst_mismatch,
        "shapes": [list(s) for s in shapes],
    }


def export_onnx(
    model: FCN, class_names: list[str], palette: Palette, source: Path
) -> tuple[bytes, dict]:
    """Export ``model`` (CPU, eval) with its classes' names and (r, g, b) colours, and verify
    it; nothing is written here.

    Returns:
        ``(onnx_bytes, report)``: the complete .onnx file and ``{"seconds", "verification"}``.

    Raises:
        ExportError: the exported graph does not reproduce ``model`` (see :func:`verify_onnx`).
    """
    started = time.perf_counter()
    pixel_model = PixelFCN(model).eval()
    proto = trace_to_onnx(pixel_model)
    settings = {
        "exporter": "torch.onnx TorchScript-based (dynamo=False)",
        "opset": OPSET,
        "torch": torch.__version__,
        "precision": "float32",
        "atol": ATOL,
        "logit_scale": LOGIT_SCALE,
        "max_label_mismatch": MAX_LABEL_MISMATCH,
    }
    stored = metadata(model, class_names, palette, source, settings)
    data = with_metadata(proto, stored).SerializeToString()
    checked = verify_onnx(data, pixel_model)
    return data, {"seconds": time.perf_counter() - started, "verification": checked}
