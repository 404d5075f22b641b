"""What an import wrote and what it left out: the record every importer returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SkippedItem:
    """An input left out of the import, and why."""

    path: Path
    reason: str


@dataclass
class ImportSummary:
    """What an import wrote: images per split, the class names (mask value order), what it
    skipped."""

    images: dict[str, int]
    classes: list[str]
    skipped: list[SkippedItem] = field(default_factory=list)
