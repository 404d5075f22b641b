"""``scripts/import_data.py``: another tool's export -> the ``data=folder`` layout, and a
report of what was written (images per split, classes, every skipped item with its reason)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from segnet.data.images import DataError
from segnet.data.importers import (
    ImportSummary,
    import_coco,
    import_cvat,
    import_labelme,
    import_roboflow,
    writer,
)
from segnet.tasks.cli import EXIT_OK, EXIT_PARTIAL, ConfigError

Importer = Callable[..., ImportSummary]

# format name -> import_X(input_dir, output_dir, overwrite=False, progress=False)
IMPORTERS: dict[str, Importer] = {
    "coco": import_coco,
    "cvat": import_cvat,
    "labelme": import_labelme,
    "roboflow": import_roboflow,
}

_IMPORTED = "imported"  # the importer's folder inside the staging folder


def import_command(cfg: DictConfig) -> int:
    """Import ``cfg.input`` (format ``cfg.format``) into ``cfg.output`` (configs/import_data.yaml)
    and print what was written; 1 if anything was skipped.

    Raises:
        ConfigError: an unknown format, or an output folder inside the input folder.
        DataError: no input folder, an existing output without ``overwrite=true``, an export
            the importer refuses, or no image imported (nothing is left at the output then).
    """
    importer = _importer(str(cfg.format))
    source, output = Path(str(cfg.input)), Path(str(cfg.output))
    if not source.is_dir():
        raise DataError(f"input={source}: no such folder")
    if output.resolve().is_relative_to(source.resolve()):
        raise ConfigError(f"output={output} lies inside input={source}; choose a folder outside it")
    if output.exists() and not cfg.overwrite:
        raise DataError(f"output={output} already exists; add overwrite=true to replace it")
    # The importer writes inside this command's own atomic output, so an import that yields no
    # image can still be thrown away whole, leaving an old dataset at ``output`` untouched.
    with writer.atomic_output(output, overwrite=True) as staging:
        summary = importer(source, staging / _IMPORTED, progress=bool(cfg.progress))
        if sum(summary.images.values()) == 0:
            print(format_summary(summary, output))
            raise DataError(f"input={source}: no image could be imported (see skipped above)")
        for entry in list((staging / _IMPORTED).iterdir()):
            entry.rename(staging / entry.name)
        (staging / _IMPORTED).rmdir()
    print(format_summary(summary, output))
    return EXIT_PARTIAL if summary.skipped else EXIT_OK


def _importer(name: str) -> Importer:
    if name not in IMPORTERS:
        raise ConfigError(f"format={name}: unknown; choose one of {', '.join(sorted(IMPORTERS))}")
    return IMPORTERS[name]


def format_summary(summary: ImportSummary, output: Path) -> str:
    """The report: images per split, classes (index, name), skipped items, the train command."""
    imported = sum(summary.images.values())
    lines = [f"wrote {output}" if imported else f"wrote nothing to {output}"]
    lines += [f"  {split}: {count} images" for split, count in summary.images.items()]
    lines.append(f"classes ({len(summary.classes)}):")
    lines += [f"  {index} {name}" for index, name in enumerate(summary.classes)]
    if summary.skipped:
        lines.append(f"skipped ({len(summary.skipped)}):")
        lines += [f"  {item}" for item in summary.skipped]
    if imported:
        lines.append(f"train on it: python scripts/train.py data=folder data.root={output}")
    return "\n".join(lines)
