"""``classes.txt``: a dataset's class names, and optionally their colours, one class per line.

Line ``i`` (counting from 0) names the class whose mask value is ``i``::

    background #000000
    road #804080
    traffic light #faaa1e

A line is ``NAME`` or ``NAME #rrggbb``: the colour, if any, is the line's last
whitespace-separated token and starts with ``#``; the name is everything before it (spaces
allowed, surrounding spaces stripped). Either every line has a colour or none has (colours of
some classes only would leave the others to a palette they were not chosen against). Blank lines
are allowed only at the end. This is the file ``data=folder`` reads and ``scripts/import_data.py``
writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from segnet.data.classes import IGNORE_INDEX
from segnet.data.images import DataError

CLASSES_FILE = "classes.txt"
_COLOUR = re.compile(r"#([0-9a-fA-F]{6})")

Colour = tuple[int, int, int]


def parse_colour(text: str) -> Colour:
    """``"#rrggbb"`` -> ``(r, g, b)``; ValueError for anything else."""
    match = _COLOUR.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a colour of the form #rrggbb")
    value = match.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def format_colour(colour: Sequence[int]) -> str:
    """``(r, g, b)`` -> ``"#rrggbb"``."""
    r, g, b = (int(c) for c in colour)
    return f"#{r:02x}{g:02x}{b:02x}"


def read_class_file(path: str | Path) -> tuple[list[str], list[Colour] | None]:
    """``(names, colours or None)`` of a ``classes.txt``.

    Raises:
        DataError: naming the file and line: unreadable, blank or duplicate names, a blank line
            before the end, colours on some lines only or one colour for two classes, fewer
            than 2 or more than 255 classes.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the class list ({err})") from err
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    colours: list[Colour | None] = []
    for number, line in enumerate(lines, start=1):
        name, colour = _parse_line(path, number, line)
        if name in names:
            raise DataError(
                f"{path}:{number}: class {name!r} is listed twice (lines {names.index(name) + 1} "
                f"and {number}); each line is one mask value, so names must differ"
            )
        names.append(name)
        colours.append(colour)
    if not 2 <= len(names) <= IGNORE_INDEX:
        raise DataError(
            f"{path}: {len(names)} classes; a dataset needs 2..{IGNORE_INDEX} (line i names mask "
            f"value i, background usually first; {IGNORE_INDEX} is 'ignore')"
        )
    given = [c is not None for c in colours]
    if any(given) and not all(given):
        without = [names[i] for i, has in enumerate(given) if not has]
        raise DataError(
            f"{path}: colours are given for some classes but not for {', '.join(without[:5])}"
            f"{' ...' if len(without) > 5 else ''}: give every line a #rrggbb colour, or none"
        )
    if all(given):
        seen: dict[Colour, str] = {}
        for name, colour in zip(names, colours, strict=True):
            if colour in seen:
                raise DataError(
                    f"{path}: {seen[colour]!r} and {name!r} have the same colour "
                    f"{format_colour(colour)}; pictures of predictions could not tell them apart"
                )
            seen[colour] = name
        return names, [c for c in colours if c is not None]
    return names, None


def _parse_line(path: Path, number: int, line: str) -> tuple[str, Colour | None]:
    stripped = line.strip()
    if not stripped:
        raise DataError(
            f"{path}:{number}: blank line; line i names mask value i, so a class needs a name "
            "on every line"
        )
    head, _, last = stripped.rpartition(" ")
    if last.startswith("#"):
        try:
            colour = parse_colour(last)
        except ValueError as err:
            raise DataError(f"{path}:{number}: {err}") from err
        name = head.strip()
        if not name:
            raise DataError(f"{path}:{number}: a colour without a class name")
        return name, colour
    return stripped, None


def write_class_file(
    path: str | Path, names: Sequence[str], colours: Sequence[Sequence[int]] | None = None
) -> None:
    """Write ``names`` (and ``colours``, one per name) as :func:`read_class_file` reads them."""
    if colours is not None and len(colours) != len(names):
        raise ValueError(f"{len(colours)} colours for {len(names)} class names")
    lines = []
    for i, name in enumerate(names):
        name = str(name).strip()
        if not name or "\n" in name or name.rpartition(" ")[2].startswith("#"):
            raise ValueError(f"class name {name!r} cannot be written to {CLASSES_FILE}")
        lines.append(name if colours is None else f"{name} {format_colour(colours[i])}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
