"""A dataset's own class colours go everywhere the model's output is shown: the checkpoint,
Segmenter's palette, mask PNGs, overlays, an exported ``.onnx`` and the serve API."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from segnet import Segmenter
from segnet.data.class_file import CLASSES_FILE, read_class_file, write_class_file
from segnet.data.images import DataError
from segnet.runtime.onnx_writer import export_onnx
from segnet.serve import ServeSettings, create_app
from segnet.training.system import SegmentationSystem
from segnet.visualize import flat_palette

with warnings.catch_warnings():  # Starlette's deprecation note on httpx, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NAMES = ["sky", "road", "traffic light"]
COLOURS = [(70, 130, 180), (128, 64, 128), (250, 170, 30)]


@pytest.fixture(scope="module")
def coloured_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    system = SegmentationSystem(
        num_classes=3, backbone="resnet18", class_names=NAMES, class_colours=COLOURS
    )
    path = tmp_path_factory.mktemp("colours") / "coloured.ckpt"
    state = system.state_dict()
    torch.save({"hyper_parameters": dict(system.hparams), "state_dict": state}, path)
    return path


def test_the_system_keeps_the_colours_as_plain_lists_and_refuses_bad_ones():
    system = SegmentationSystem(num_classes=3, backbone="resnet18", class_colours=COLOURS)
    assert system.hparams.class_colours == [list(c) for c in COLOURS]
    with pytest.raises(ValueError, match="2 class_colours given for num_classes=3"):
        SegmentationSystem(num_classes=3, backbone="resnet18", class_colours=COLOURS[:2])
    with pytest.raises(ValueError, match="values 0..255"):
        SegmentationSystem(num_classes=2, backbone="resnet18", class_colours=[[0, 0, 0], [1, 2]])


def test_segmenter_draws_masks_and_overlays_in_the_checkpoints_colours(coloured_checkpoint):
    seg = Segmenter.load(coloured_checkpoint, device="cpu")
    assert seg.palette == COLOURS
    labels = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    mask = Image.open(io.BytesIO(seg.mask_png(labels)))
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), labels)
    drawn = np.asarray(mask.convert("RGB"))
    assert [tuple(drawn[0, 0]), tuple(drawn[0, 1]), tuple(drawn[1, 0])] == COLOURS
    assert tuple(drawn[1, 1]) == (224, 224, 192)  # void keeps VOC's colour
    opaque = np.asarray(seg.overlay(np.zeros((2, 2, 3), np.uint8), labels, alpha=1.0))
    assert [tuple(opaque[0, 0]), tuple(opaque[0, 1]), tuple(opaque[1, 0])] == COLOURS


def test_the_onnx_file_and_the_serve_api_carry_the_colours(coloured_checkpoint, tmp_path):
    seg = Segmenter.load(coloured_checkpoint, device="cpu")
    data, _ = export_onnx(seg.backend.network.model, NAMES, COLOURS, coloured_checkpoint)
    onnx_path = tmp_path / "coloured.onnx"
    onnx_path.write_bytes(data)
    onnx_seg = Segmenter.from_onnx(onnx_path, threads=1)
    assert onnx_seg.palette == COLOURS and onnx_seg.class_names == NAMES
    labels = np.array([[2, 1]], dtype=np.uint8)
    assert onnx_seg.mask_png(labels) == seg.mask_png(labels)

    with TestClient(create_app(onnx_seg, ServeSettings())) as client:
        info = client.get("/v1/info").json()
    assert info["palette"] == [list(c) for c in COLOURS]
    assert info["classes"] == NAMES


def test_flat_palette_puts_the_colours_first_and_voc_after():
    flat = flat_palette(COLOURS)
    assert len(flat) == 768 and flat[:9] == [c for rgb in COLOURS for c in rgb]
    assert flat[9:] == flat_palette()[9:]


def test_a_class_file_gives_every_class_its_own_colour(tmp_path):
    path = tmp_path / CLASSES_FILE
    write_class_file(path, NAMES, COLOURS)
    assert read_class_file(path) == (NAMES, COLOURS)
    path.write_text("sky #4682b4\nroad #4682b4\n")
    with pytest.raises(DataError, match="'sky' and 'road' have the same colour #4682b4"):
        read_class_file(path)
