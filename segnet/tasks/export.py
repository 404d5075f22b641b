"""``scripts/export.py``: a checkpoint in, one verified .onnx out, written whole or not at all.

Everything cheap is checked before the export starts (the output's name and folder, whether it
exists, the checkpoint); the file is written only after ONNX Runtime reproduced PyTorch (see
:func:`segnet.runtime.onnx_writer.verify_onnx`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from segnet.outputs import OutputError, check_output_dir, write_bytes
from segnet.runtime.checkpoint import load_model
from segnet.runtime.onnx_writer import export_onnx
from segnet.tasks.cli import EXIT_OK, ConfigError


def check_output(output: str | None, overwrite: bool) -> Path:
    """The output path, checked: ends in .onnx, not an existing file unless ``overwrite``, and
    its folder exists (created if needed) and is writable.

    Raises:
        ConfigError: no output given. OutputError: any other problem with it.
    """
    if not output:
        raise ConfigError("output is not set: give the .onnx file to write (output=model.onnx)")
    path = Path(output)
    if path.suffix.lower() != ".onnx":
        # Segmenter.load and infer.py pick the runtime by this suffix.
        raise OutputError(f"output={output!r} must end in .onnx")
    if path.is_dir():
        raise OutputError(f"output={output!r} is a folder")
    if path.exists() and not overwrite:
        raise OutputError(f"output={output!r} exists; overwrite=true replaces it")
    check_output_dir(path.parent, "output's folder")
    return path


def export_command(cfg: DictConfig) -> int:
    """Export ``cfg.ckpt_path`` to ``cfg.output`` (see configs/export.yaml); returns 0.

    Raises:
        ConfigError, OutputError: bad settings or output. CheckpointError: unreadable or not
            a segnet checkpoint. ExportError: ONNX Runtime did not reproduce PyTorch (no file).
    """
    output = check_output(cfg.get("output"), bool(cfg.get("overwrite", False)))
    source = Path(cfg.ckpt_path)
    model, class_names, palette = load_model(source, "cpu")
    data, report = export_onnx(model, class_names, palette, source)
    write_bytes(output, data)
    check = report["verification"]
    sizes = ", ".join("x".join(map(str, s)) for s in check["shapes"])
    print(
        f"wrote {output} ({len(data) / 1e6:.1f} MB, FCN {model.variant} {model.backbone_name}, "
        f"{model.num_classes} classes) in {report['seconds']:.0f} s; ONNX Runtime vs PyTorch "
        f"at N x H x W = {sizes}: max |logit diff| {check['max_abs_diff']:.2g}, labels differ "
        f"on {100 * check['label_mismatch']:.4f}% of pixels",
        flush=True,
    )
    return EXIT_OK
