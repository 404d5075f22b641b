"""Palette masks, overlays with legends, confusion-matrix plots."""

from __future__ import annotations

import matplotlib.figure
import numpy as np
import pytest
from PIL import Image

from segnet.data.classes import VOC_CLASSES, voc_palette
from segnet.visualize import (
    class_label,
    colorize,
    comparison,
    overlay,
    panel_columns,
    plot_confusion_matrix,
    stack_rows,
)

PALETTE = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)


def test_colorize_writes_class_indices_with_the_voc_palette(tmp_path):
    labels = np.array([[0, 1, 2], [15, 20, 255]], dtype=np.int64)
    colorize(labels).save(tmp_path / "mask.png")
    with Image.open(tmp_path / "mask.png") as saved:
        assert saved.mode == "P" and saved.size == (3, 2)
        assert saved.getpalette()[: 3 * 256] == voc_palette()
        np.testing.assert_array_equal(np.asarray(saved), labels)
        assert saved.convert("RGB").getpixel((0, 1)) == (192, 128, 128)  # person


def test_colorize_rejects_labels_a_palette_cannot_hold():
    with pytest.raises(ValueError, match="0..255"):
        colorize(np.array([[0, 300]]))
    with pytest.raises(ValueError, match="H, W"):
        colorize(np.zeros((2, 2, 3), dtype=np.uint8))


def test_overlay_blends_colours_and_lists_present_classes_in_a_legend():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[10:30, 20:50] = 12  # dog
    result = overlay(Image.fromarray(pixels), labels, VOC_CLASSES, alpha=0.4)
    assert result.mode == "RGB" and result.height >= 40 and result.width > 60
    canvas = np.asarray(result)
    expected = np.rint(pixels * 0.6 + PALETTE[labels] * 0.4)
    np.testing.assert_allclose(canvas[:40, :60], expected, atol=1)
    panel = canvas[:, 60:].reshape(-1, 3)
    for index in (0, 12):  # a legend box in each present class's colour
        assert (panel == PALETTE[index]).all(1).sum() > 20
    assert not (panel == PALETTE[15]).all(1).any()  # an absent class gets no box


def test_overlay_of_a_single_pixel_still_has_a_readable_legend():
    result = overlay(np.full((1, 1, 3), 200, np.uint8), np.array([[15]]), VOC_CLASSES)
    assert result.height >= 12 and result.width > 20  # the panel grows the canvas
    assert np.asarray(result)[0, 0].tolist() == np.rint(200 * 0.5 + PALETTE[15] * 0.5).tolist()


def test_overlay_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="matching"):
        overlay(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), np.uint8), VOC_CLASSES)


def test_class_labels_name_void_and_unknown_indices():
    assert [class_label(i, VOC_CLASSES) for i in (0, 20, 255, 30)] == [
        "background",
        "tvmonitor",
        "void",
        "30",
    ]


def test_confusion_matrix_plot_shows_each_true_class_row_normalised(tmp_path, monkeypatch):
    figures = []

    class Recorded(matplotlib.figure.Figure):  # the figure the function draws, kept
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            figures.append(self)

    monkeypatch.setattr(matplotlib.figure, "Figure", Recorded)
    rng = np.random.default_rng(0)
    confmat = rng.integers(0, 1000, (21, 21)) + np.eye(21, dtype=np.int64) * 20000
    confmat[7] = 0  # a class absent from the ground truth: an empty row, no division by zero
    plot_confusion_matrix(confmat, VOC_CLASSES, tmp_path / "cm.png", title="val")
    with Image.open(tmp_path / "cm.png") as image:
        assert image.format == "PNG" and min(image.size) >= 900
    (ax,) = [a for a in figures[0].axes if a.images]
    shown = np.asarray(ax.images[0].get_array())
    expected = confmat / np.maximum(confmat.sum(1, keepdims=True), 1)
    np.testing.assert_allclose(shown, expected)
    assert np.allclose(np.delete(shown.sum(1), 7), 1) and shown[7].sum() == 0
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    assert cells[(3, 3)] == f"{100 * expected[3, 3]:.0f}" and (7, 7) not in cells
    assert [t.get_text() for t in ax.get_xticklabels()] == list(VOC_CLASSES)
    assert ax.get_title() == "val"
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(confmat, VOC_CLASSES[:5], tmp_path / "bad.png")


def test_comparison_panels_hold_the_image_and_both_label_maps_in_their_colours():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    truth = rng.integers(0, 3, (5, 7))
    truth[0, 0] = 255
    prediction = rng.integers(0, 3, (5, 7))
    colours = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    row = comparison(image, truth, prediction, colours)
    lookup = np.zeros((256, 3), dtype=np.uint8)
    lookup[:3], lookup[255] = colours, (224, 224, 192)
    np.testing.assert_array_equal(row[:, panel_columns(7, 0)], image)
    np.testing.assert_array_equal(row[:, panel_columns(7, 1)], lookup[truth])
    np.testing.assert_array_equal(row[:, panel_columns(7, 2)], lookup[prediction])
    assert tuple(row[0, panel_columns(7, 1)][0]) == (224, 224, 192)  # ignore stands apart


def test_stack_rows_keeps_each_row_whole_at_the_left():
    first = np.zeros((2, 5, 3), dtype=np.uint8)
    second = np.ones((3, 3, 3), dtype=np.uint8)
    grid = stack_rows([first, second])
    assert grid.shape[1] == 5
    np.testing.assert_array_equal(grid[:2], first)
    top = grid.shape[0] - 3
    np.testing.assert_array_equal(grid[top:, :3], second)
    with pytest.raises(ValueError):
        stack_rows([])
