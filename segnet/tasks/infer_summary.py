"""What an infer run did: its summary, the decision of what is left to do on a rerun, and the
report printed at the end (or at an interruption)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from segnet.tasks.infer_inputs import Job, recorded_source


@dataclass
class Summary:
    written: int = 0
    existing: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)  # done, but not quite as asked

    def add(self, other: Summary) -> None:
        self.written += other.written
        self.existing += other.existing
        self.skipped += other.skipped
        self.notes += other.notes


def still_to_do(jobs: list[Job], overwrite: bool, summary: Summary) -> list[Job]:
    """The jobs to run; counts in ``summary`` those done before and skips those whose mask path
    holds a file infer did not write (replaced only with ``overwrite``)."""
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


def report(summary: Summary, output_dir: str, interrupted: bool = False) -> None:
    """The summary line on stdout; every skipped file and every note on stderr."""
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
