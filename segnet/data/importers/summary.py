"""What an import wrote and what it left out: the record every importer returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SkippedItem:
    """An input left out of the import, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        # A reason from a DataError already opens with the file it names; say it once.
        prefix = f"{self.path}: "
        return self.reason if self.reason.startswith(prefix) else prefix + self.reason


@dataclass
class ImportSummary:
    """What an import wrote: images per split, the class names (mask value order), what it
    skipped."""

    images: dict[str, int]
    classes: list[str]
    skipped: list[SkippedItem] = field(default_factory=list)
