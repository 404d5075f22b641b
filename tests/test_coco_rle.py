"""segnet.data.importers.coco_rle against pycocotools: the run lengths of a compressed string
re-encode to the same string, and a window of columns equals pycocotools' decode of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from segnet.data.importers.coco_rle import decode_columns, run_lengths


def masks(rng: np.random.Generator):
    yield np.zeros((5, 7), dtype=np.uint8)
    yield np.ones((5, 7), dtype=np.uint8)
    corner = np.zeros((4, 3), dtype=np.uint8)
    corner[-1, -1] = 1
    yield corner
    # Runs of millions of pixels need six 5-bit groups; alternating long and short runs make
    # the stored differences negative (the sign bit).
    large = np.zeros((1500, 1400), dtype=np.uint8)
    large[:, 200:1300] = 1
    large[::7, 300] = 0
    yield large
    for shape in [(1, 50), (50, 1), (33, 47), (480, 640)]:
        for density in (0.05, 0.5, 0.95):
            yield (rng.random(shape) < density).astype(np.uint8)


def test_run_lengths_re_encode_to_the_same_string_and_decode_to_the_same_pixels():
    rng = np.random.default_rng(0)
    for mask in masks(rng):
        height, width = mask.shape
        rle = coco_mask.encode(np.asfortranarray(mask))
        lengths = run_lengths(rle["counts"], height, width)
        again = coco_mask.frPyObjects(
            {"size": [height, width], "counts": lengths.tolist()}, height, width
        )
        assert again["counts"] == rle["counts"]
        first, stop = sorted(rng.integers(0, width + 1, 2))
        for window in ((0, width), (first, stop), (width - 1, width)):
            np.testing.assert_array_equal(
                decode_columns(lengths, height, *window),
                mask[:, window[0] : window[1]].astype(bool),
                err_msg=f"{mask.shape} columns {window}",
            )


def test_a_compressed_string_given_as_text_reads_as_its_bytes():
    mask = np.eye(6, dtype=np.uint8)
    rle = coco_mask.encode(np.asfortranarray(mask))
    np.testing.assert_array_equal(
        run_lengths(rle["counts"].decode("ascii"), 6, 6), run_lengths(rle["counts"], 6, 6)
    )


@pytest.mark.parametrize(
    "counts, message",
    [
        (b"", "empty RLE counts"),
        (b"0!1", "outside '0'..'o'"),
        (b"0P", "end in the middle of a number"),
        (b"12", "cover 3 pixels"),
        (b"0@", "some negative: True"),
    ],
)
def test_malformed_strings_are_refused_with_the_reason(counts: bytes, message: str):
    with pytest.raises(ValueError, match=message):
        run_lengths(counts, 2, 2)


REAL_RESULTS = (
    Path(__file__).parent
    / "fixtures"
    / "coco-fakesegm"
    / "instances_val2014_fakesegm100_results.json"
)


def test_real_coco_strings_read_as_pycocotools_reads_them():
    # 734 masks of real COCO val2014 images, as pycocotools wrote them (fixture README).
    results = json.loads(REAL_RESULTS.read_text())
    assert len(results) == 734
    for result in results:
        rle = result["segmentation"]
        height, width = rle["size"]
        lengths = run_lengths(rle["counts"], height, width)
        again = coco_mask.frPyObjects(
            {"size": [height, width], "counts": lengths.tolist()}, height, width
        )
        assert again["counts"].decode("ascii") == rle["counts"]
        np.testing.assert_array_equal(
            decode_columns(lengths, height, 0, width), coco_mask.decode(rle).astype(bool)
        )
