"""Raw mask values -> labels: sparse ids, many-to-one maps, colour masks, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segnet.data.images import DataError, read_raw_mask
from segnet.data.label_map import LabelMap, read_label_mask


def _save(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)
    return path


def test_sparse_and_many_to_one_values_map_and_unnamed_labels_keep_their_value(tmp_path):
    raw = np.array([[0, 7, 12], [200, 7, 1]])
    mapping = LabelMap.from_config({0: 0, 7: 1, 12: 1, 200: 255}, num_classes=3)
    path = _save(tmp_path / "m.png", raw, "L")
    np.testing.assert_array_equal(read_label_mask(path, mapping), [[0, 1, 1], [255, 1, 1]])


def test_binary_mask_fix_maps_255_to_the_foreground(tmp_path):
    path = _save(tmp_path / "m.png", [[0, 255], [255, 0]], "L")
    mapping = LabelMap.from_config({255: 1}, num_classes=2)
    np.testing.assert_array_equal(read_label_mask(path, mapping), [[0, 1], [1, 0]])


def test_values_outside_classes_and_map_are_named_with_pixel_counts(tmp_path):
    path = _save(tmp_path / "m.png", [[0, 9, 9], [40, 1, 0]], "L")
    with pytest.raises(DataError) as err:
        read_label_mask(path, LabelMap(3))
    message = str(err.value)
    assert str(path) in message and "9 (2 px)" in message and "40 (1 px)" in message


def test_palette_masks_give_their_indices_not_their_colours(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [2, 255]], dtype=np.uint8), mode="P")
    image.putpalette([9, 9, 9, 200, 0, 0, 0, 200, 0] + [0] * (768 - 9))
    image.save(tmp_path / "m.png")
    np.testing.assert_array_equal(
        read_label_mask(tmp_path / "m.png", LabelMap(3)), [[0, 1], [2, 255]]
    )


def test_colour_masks_map_through_class_colours_and_colour_keys(tmp_path):
    red, green, white = (255, 0, 0), (0, 255, 0), (255, 255, 255)
    raw = np.array([[(0, 0, 0), red], [green, white]], dtype=np.uint8)
    path = _save(tmp_path / "m.png", raw, "RGB")
    mapping = LabelMap.from_config(
        {"#ffffff": 255}, num_classes=3, class_colours=[(0, 0, 0), red, green]
    )
    np.testing.assert_array_equal(read_label_mask(path, mapping), [[0, 1], [2, 255]])


def test_an_unknown_colour_is_named_and_a_colour_mask_without_colours_says_the_fix(tmp_path):
    raw = np.array([[(0, 0, 0), (12, 200, 7)]], dtype=np.uint8)
    path = _save(tmp_path / "m.png", raw, "RGB")
    with pytest.raises(DataError, match=r"#0cc807 \(1 px\)"):
        read_label_mask(path, LabelMap(2, colours={(0, 0, 0): 0, (255, 0, 0): 1}))
    with pytest.raises(DataError, match="classes.txt"):
        read_label_mask(path, LabelMap(2))


def test_jpeg_masks_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "m.jpg"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match="JPEG.*lossy"):
        read_raw_mask(path)
    renamed = tmp_path / "m.png"  # a JPEG under a .png name is still lossy
    path.rename(renamed)
    with pytest.raises(DataError, match="JPEG"):
        read_raw_mask(renamed)


@pytest.mark.parametrize(
    ("label_map", "message"),
    [
        ({3: 5}, "no class index"),
        ({"red": 1}, "neither a mask value"),
        ({70000: 1}, "neither a mask value"),
        ({1: True}, "no class index"),
    ],
)
def test_bad_label_maps_are_refused_naming_the_entry(label_map, message):
    with pytest.raises(ValueError, match=message):
        LabelMap.from_config(label_map, num_classes=3)


def test_sixteen_bit_masks_map_values_above_255(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 1000], [1000, 3]], dtype=np.uint16)).save(path)
    mapping = LabelMap.from_config({1000: 1, 3: 2}, num_classes=3)
    np.testing.assert_array_equal(read_label_mask(path, mapping), [[0, 1], [1, 2]])
