"""COCO's compressed run-length strings, read only inside an instance's columns.

A COCO RLE lists the lengths of alternating 0/1 runs over the image's pixels in column-major
order, starting with a run of 0s. pycocotools (``maskApi.c``: ``rleToString`` /
``rleFrString``) packs each length in 5-bit groups, one ASCII character (48 + group) per
group, bit 0x20 meaning "more groups follow" and bit 0x10 of the last group the sign; from the
fourth length on, it stores the difference to the length two before.

pycocotools rasterises polygons and writes these strings; :func:`decode_columns` is what its
``mask.decode`` computes, restricted to the columns an instance occupies: ``decode`` fills a
whole (H, W) frame per instance, which for objects a fraction of the image's size was the COCO
import's largest cost. tests/test_coco_rle.py holds the two equal, pixel for pixel, on
thousands of masks.
"""

from __future__ import annotations

import numpy as np

_ZERO_CHAR = 48
_MORE = 0x20
_SIGN = 0x10
_GROUP = 0x1F
_GROUP_BITS = 5


def run_lengths(counts: bytes | str, height: int, width: int) -> np.ndarray:
    """The run lengths (int64, first a 0-run) that a compressed RLE string stands for.

    Raises:
        ValueError: the string is empty, holds characters outside COCO's alphabet, ends
            mid-number, or its runs are negative or do not cover ``height * width`` pixels.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    chars = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - _ZERO_CHAR
    if chars.size == 0:
        raise ValueError("empty RLE counts")
    if chars.min() < 0 or chars.max() > _MORE | _GROUP:
        raise ValueError("RLE counts hold characters outside '0'..'o'")
    last_group = (chars & _MORE) == 0
    if not last_group[-1]:
        raise ValueError("RLE counts end in the middle of a number")
    ends = np.flatnonzero(last_group)
    starts = np.concatenate(([0], ends[:-1] + 1))
    number_of = np.cumsum(last_group) - last_group
    group_index = np.arange(chars.size) - starts[number_of]
    lengths = np.add.reduceat((chars & _GROUP) << (_GROUP_BITS * group_index), starts)
    negative = (chars[ends] & _SIGN) != 0
    lengths[negative] -= np.int64(1) << (_GROUP_BITS * (group_index[ends[negative]] + 1))
    # Lengths 3, 5, 7... were stored as differences to 1, 3, 5...; 4, 6... to 2, 4...
    lengths[1::2] = np.cumsum(lengths[1::2])
    lengths[2::2] = np.cumsum(lengths[2::2])
    if lengths.min() < 0 or lengths.sum() != height * width:
        raise ValueError(
            f"RLE runs cover {int(lengths.sum())} pixels (some negative: "
            f"{bool(lengths.min() < 0)}), the {height}x{width} frame {height * width}"
        )
    return lengths


def decode_columns(lengths: np.ndarray, height: int, first: int, stop: int) -> np.ndarray:
    """(height, stop - first) bool mask of columns ``first:stop`` of the frame that
    ``lengths`` (:func:`run_lengths`) encodes; equal to ``pycocotools.mask.decode(rle)
    [:, first:stop]``."""
    ends = np.cumsum(lengths)
    window_start, window_stop = first * height, stop * height
    inside = np.minimum(ends, window_stop) - np.maximum(ends - lengths, window_start)
    is_object = (np.arange(lengths.size) & 1).astype(bool)
    pixels = np.repeat(is_object, np.clip(inside, 0, None))
    return pixels.reshape(stop - first, height).T
