"""Curves of a run's logged metrics, read from its ``csv/metrics.csv``: losses, val mIoU and
learning rates in one picture, each class's val IoU in another (PNG, drawn with matplotlib)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from segnet.data.classes import Colours

# {column: (global steps, values)}, in file order, of the rows where that column has a value.
Series = dict[str, tuple[list[int], list[float]]]
CLASS_IOU = "val/iou/"


def read_series(path: Path) -> Series:
    """Every metric column of a ``metrics.csv`` (Lightning's CSV logger layout: a ``step``
    column, one column per logged name, empty cells where a row did not log that name)."""
    series: Series = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if not row.get("step"):
                continue
            for name, value in row.items():
                if name in ("step", "epoch") or not value:
                    continue
                steps, values = series.setdefault(name, ([], []))
                steps.append(int(row["step"]))
                values.append(float(value))
    return series


def last_values(series: Series, prefix: str) -> dict[str, float]:
    """{name without ``prefix``: its last logged value} of the columns starting with it."""
    return {n[len(prefix) :]: v[-1] for n, (_, v) in series.items() if n.startswith(prefix)}


def plot_curves(series: Series) -> bytes:
    """PNG of three panels against the global step: train and val loss, val mIoU, each
    parameter group's lr (``lr/<group>``, LearningRateMonitor's names)."""
    from matplotlib.figure import Figure  # only reports draw plots

    fig = Figure(figsize=(13, 3.6), dpi=100, layout="constrained")
    panels = [
        ("loss", ["train/loss", "val/loss"], "cross-entropy"),
        ("val mIoU", ["val/miou"], "mIoU"),
        ("learning rate", sorted(n for n in series if n == "lr" or n.startswith("lr/")), "lr"),
    ]
    for ax, (title, names, ylabel) in zip(fig.subplots(1, 3), panels, strict=True):
        drawn = [name for name in names if name in series]
        for name in drawn:
            steps, values = series[name]
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=name)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("global step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_class_curves(series: Series, class_names: Sequence[str], colours: Colours) -> bytes:
    """PNG of each class's ``val/iou/<class>`` against the global step, one line per class
    drawn in the class's colour (gaps where a validation gave the class no IoU)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for name, colour in zip(class_names, colours, strict=True):
        if f"{CLASS_IOU}{name}" in series:
            steps, values = series[f"{CLASS_IOU}{name}"]
            rgb = tuple(c / 255 for c in colour)
            ax.plot(
                steps, values, color=rgb, marker="o" if len(steps) < 30 else None, ms=3, label=name
            )
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("val IoU per class")
    ax.set_xlabel("global step")
    ax.set_ylabel("IoU")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(
            fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 + len(ax.lines) // 24
        )
    return _png(fig)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
