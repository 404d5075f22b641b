"""From the values a mask file stores to class indices: sparse ids, many-to-one maps, colours.

A mask stores *raw values*: the pixel values of a grayscale (L, I;16) PNG, the palette indices
of a palette (P) PNG (never its colours, as VOC's masks), or the ``(r, g, b)`` colours of an RGB
PNG. A :class:`LabelMap` turns them into labels ``0..num_classes-1`` or 255 (ignore):

- ``values``: raw value -> label, e.g. ``{0: 0, 7: 1, 12: 2, 200: 255}`` (sparse ids, several
  values onto one class, values to ignore);
- ``colours``: ``(r, g, b)`` -> label, for RGB masks: each class's colour of ``classes.txt``,
  plus colour keys of the config's ``label_map`` (``"#rrggbb"``);
- a raw value the map does not name keeps its own value if that is already a label (a class
  index or 255): ``{255: 1}`` alone turns a 0/255 binary mask into background/foreground.

Anything else is an error that names the file, the values and their pixel counts. JPEG masks are
refused: JPEG's lossy compression smears the values along every edge into values that are no
class at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segnet.data.class_file import format_colour, parse_colour
from segnet.data.classes import IGNORE_INDEX
from segnet.data.images import DataError, read_raw_mask

Colour = tuple[int, int, int]
_SHOWN = 10


class LabelMap:
    """Raw mask values -> labels (see the module docstring).

    Args:
        num_classes: labels are ``0..num_classes-1`` and 255.
        values: raw grayscale/palette value -> label.
        colours: ``(r, g, b)`` -> label, for colour masks.
    """

    def __init__(
        self,
        num_classes: int,
        values: Mapping[int, int] | None = None,
        colours: Mapping[Colour, int] | None = None,
    ) -> None:
        if not 2 <= num_classes <= IGNORE_INDEX:
            raise ValueError(f"num_classes must be in 2..{IGNORE_INDEX}, got {num_classes}")
        self.num_classes = num_classes
        self.values = {int(k): self._label(k, v) for k, v in (values or {}).items()}
        self.colours = {
            tuple(int(c) for c in k): self._label(k, v) for k, v in (colours or {}).items()
        }

    @classmethod
    def from_config(
        cls,
        label_map: Mapping | None,
        num_classes: int,
        class_colours: Sequence[Sequence[int]] | None = None,
    ) -> LabelMap:
        """The map of a ``data.label_map`` setting: integer keys are raw values, ``"#rrggbb"``
        keys colours; ``class_colours`` (a ``classes.txt``'s) map each class's colour to it.

        Raises:
            ValueError: a key that is neither a value 0..65535 nor a colour, or a label that is
                no class index and not 255.
        """
        values: dict[int, int] = {}
        colours: dict[Colour, int] = {
            tuple(int(c) for c in colour): label for label, colour in enumerate(class_colours or ())
        }
        for key, label in (label_map or {}).items():
            if isinstance(key, str) and key.strip().startswith("#"):
                colours[parse_colour(key)] = label
            elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 65535:
                values[key] = label
            else:
                raise ValueError(
                    f"label_map key {key!r} is neither a mask value 0..65535 nor a colour '#rrggbb'"
                )
        return cls(num_classes, values, colours)

    @property
    def is_identity(self) -> bool:
        """True when no raw value is renamed: masks must already hold labels."""
        return not self.values and not self.colours

    def _label(self, key, label) -> int:
        if (
            isinstance(label, bool)
            or not isinstance(label, int)
            or not (0 <= label < self.num_classes or label == IGNORE_INDEX)
        ):
            raise ValueError(
                f"label_map maps {key!r} to {label!r}, which is no class index "
                f"0..{self.num_classes - 1} and not {IGNORE_INDEX} (ignore)"
            )
        return label

    def apply(self, raw: np.ndarray, path: str | Path) -> np.ndarray:
        """Raw mask (H, W) integers or (H, W, 3) uint8 colours -> uint8 (H, W) labels.

        Raises:
            DataError: raw values (or colours) neither mapped nor labels, with pixel counts.
        """
        if raw.ndim == 3:
            if not self.colours:
                raise DataError(
                    f"{path}: a colour (RGB) mask, but no class has a colour: give each class "
                    "its mask colour in classes.txt ('NAME #rrggbb'), or map the colours with "
                    "data.label_map={'#rrggbb': CLASS_INDEX, ...}"
                )
            keys, name = pack_colours(raw), "colours"
        else:
            keys, name = raw, "values"
        unique, inverse = np.unique(keys, return_inverse=True)
        labels = self.labels_of(unique, colours=raw.ndim == 3)
        if (labels < 0).any():
            bad = unique[labels < 0]
            counts = np.bincount(inverse.ravel(), minlength=len(unique))[labels < 0]
            raise DataError(f"{path}: {self.describe_unknown(bad, counts, name)}")
        return labels[inverse].reshape(keys.shape).astype(np.uint8)

    def labels_of(self, keys: np.ndarray, colours: bool) -> np.ndarray:
        """int16 (N,) labels of N raw values (or :func:`pack_colours` keys): -1 where unknown."""
        if colours:
            table = {(r << 16) | (g << 8) | b: label for (r, g, b), label in self.colours.items()}
        else:
            table = {v: v for v in range(self.num_classes)} | {IGNORE_INDEX: IGNORE_INDEX}
            table |= self.values
        return np.array([table.get(int(k), -1) for k in np.ravel(keys)], dtype=np.int16)

    def describe_unknown(
        self, keys: np.ndarray, counts: np.ndarray, name: str, files: np.ndarray | None = None
    ) -> str:
        """One phrase: which raw values (or packed colours) are unknown, in how many pixels
        (and, given ``files``, in how many files)."""
        shown = [
            f"{format_key(int(k), name)} ({int(n)} px"
            + ("" if files is None else f" in {_files(int(files[i]))}")
            + ")"
            for i, (k, n) in enumerate(zip(keys[:_SHOWN], counts[:_SHOWN], strict=True))
        ]
        more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
        known = (
            f"the classes 0..{self.num_classes - 1}, {IGNORE_INDEX} (ignore)"
            + (f" and data.label_map's {sorted(self.values)}" if self.values else "")
            if name == "values"
            else "classes.txt's colours and data.label_map's colour keys"
        )
        return f"mask {name} {', '.join(shown)}{more} are not among {known}"


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def pack_colours(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) colours -> uint32 (...) keys ``r << 16 | g << 8 | b``."""
    keys = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
    return keys | rgb[..., 2]


def format_key(key: int, name: str) -> str:
    """A raw value as itself; a packed colour (``name`` "colours") as ``#rrggbb``."""
    if name == "values":
        return str(key)
    return format_colour(((key >> 16) & 255, (key >> 8) & 255, key & 255))


def read_label_mask(path: str | Path, label_map: LabelMap) -> np.ndarray:
    """Read ``path`` and map it: uint8 (H, W) labels (see :meth:`LabelMap.apply`)."""
    return label_map.apply(read_raw_mask(path), path)
