"""Benchmarks behind ``scripts/benchmark.py``: one module per section.

Each section module defines ``run(quick: bool) -> list[Result]``. Targets are checked
here and reported, never asserted in the test suite.
"""

from __future__ import annotations

import importlib
import resource
from dataclasses import asdict, dataclass
from pathlib import Path

SECTIONS = ("layers", "model", "data", "training", "inference", "deploy", "serve")


@dataclass
class Result:
    """One measured figure. ``target`` is human-readable, ``met`` whether it was reached."""

    section: str
    case: str
    metric: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def peak_rss_kb() -> int:
    """This process's own peak resident set size in kB: ``VmHWM`` of /proc/self/status.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss`` where /proc exists: Linux carries a forking parent's
    RSS through exec into the child's ru_maxrss, so a benchmark's child would report its parent's
    size.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_sections(names: list[str], quick: bool) -> list[Result]:
    results: list[Result] = []
    for name in names:
        if name not in SECTIONS:
            raise ValueError(
                f"unknown benchmark section {name!r}; choose from {', '.join(SECTIONS)}"
            )
        try:
            module = importlib.import_module(f"segnet.benchmarks.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"segnet.benchmarks.{name}":
                raise
            print(f"(section {name!r} is not implemented yet; skipped)")
            continue
        results.extend(module.run(quick=quick))
    return results


def markdown_table(results: list[Result]) -> str:
    lines = [
        "| section | case | metric | value | unit | target | met |",
        "|---|---|---|---:|---|---|---|",
    ]
    for r in results:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        cells = (r.section, r.case, r.metric, f"{r.value:.4g}", r.unit, r.target, met)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
