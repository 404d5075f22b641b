"""The pictures a training run draws (segnet.training.samples, docs/monitoring.md): the first
training batch as the network got it, and image | truth | prediction grids of fixed val images
after every validation. Checked by their pixels, against the data files and the saved model.
Tiny in-process trainings on the session's 8-image demo val set."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_varied_labels, compose_train, load_checkpoint, tiny_training
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from segnet.data.classes import flat_palette
from segnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from segnet.data.voc import VOCSegmentationDataset
from segnet.tasks.config import ConfigError, check_train_config
from segnet.tasks.train import train
from segnet.training.system import SegmentationSystem
from segnet.visualize import colorize, panel_columns, row_tops

VOID = (224, 224, 192)
CHOSEN = [0, 2, 5]  # 3 evenly spaced of the 8 val images
CROP = 100  # the demo's images at scale 0.5-0.6 are 48-154 px a side: most crops are padded
# lr 1e-9: the network stays as initialised, whose predictions are varied (a trained tiny one
# predicts background everywhere, which any drawing of "the prediction" would match).
SETTINGS = (
    "optim.lr=1e-9",
    "callbacks.samples.num=3",
    f"data.crop_size=[{CROP},{CROP}]",
    "data.scale_range=[0.5,0.6]",
)


def train_quietly(root: str, run_dir: Path, *extra: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        train(compose_train(tiny_training(root, f"output_dir={run_dir}", *extra, pictures=True)))


@pytest.fixture(scope="module")
def run(tiny_voc_root, tmp_path_factory) -> Path:
    """A 2-epoch run of 2 steps each (validations at steps 2 and 4), recording its first batch."""
    run_dir = tmp_path_factory.mktemp("samples") / "run"
    probe = [
        "+callbacks.probe._target_=train_probes.FirstBatchRecorder",
        f"+callbacks.probe.out={run_dir.parent / 'probe'}",
        f"+callbacks.probe.samples={run_dir / 'samples'}",
    ]
    train_quietly(tiny_voc_root, run_dir, *SETTINGS, *probe)
    return run_dir


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def palette(colours) -> np.ndarray:
    return np.array(flat_palette(colours), dtype=np.uint8).reshape(256, 3)


def test_val_pictures_show_the_same_images_their_truth_and_the_models_prediction(
    run, tiny_voc_root
):
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "train_batch.png",
        "val_step000002.png",
        "val_step000004.png",
    ]
    raw = VOCSegmentationDataset(tiny_voc_root, "val")
    normalised = VOCSegmentationDataset(tiny_voc_root, "val", transforms=eval_transforms())
    system = SegmentationSystem.load_from_checkpoint(
        run / "checkpoints" / "last.ckpt", map_location="cpu", pretrained=False
    ).eval()  # the weights of the step-4 validation (no step since)
    colours = system.hparams.class_colours
    samples = [raw[i] for i in CHOSEN]
    heights = [image.shape[1] for image, _ in samples]
    for name in ("val_step000002.png", "val_step000004.png"):
        grid = pixels(run / "samples" / name)
        for (image, mask), top in zip(samples, row_tops(heights), strict=True):
            height, width = mask.shape
            row = grid[top : top + height]
            # The same val images in every picture, at their own size, as decoded.
            np.testing.assert_array_equal(row[:, panel_columns(width, 0)], image.permute(1, 2, 0))
            truth = row[:, panel_columns(width, 1)]
            np.testing.assert_array_equal(truth, np.asarray(colorize(mask, colours).convert("RGB")))
            void = mask.numpy() == 255
            assert void.any() and (truth[void] == VOID).all()
    grid = pixels(run / "samples" / "val_step000004.png")
    predicted = []
    with torch.no_grad():
        for index, (_, mask), top in zip(CHOSEN, samples, row_tops(heights), strict=True):
            labels = system.predict_step(normalised[index][0][None], 0)[0].numpy()
            height, width = mask.shape
            shown = grid[top : top + height, panel_columns(width, 2)]
            np.testing.assert_array_equal(shown, palette(colours)[labels])
            predicted.append(labels.ravel())
    assert_varied_labels(np.concatenate(predicted))


def test_train_batch_picture_is_the_first_batch_and_exists_before_its_optimiser_step(run):
    record = torch.load(run.parent / "probe" / "first_batch.pt", weights_only=True)
    assert record["picture"] == (run / "samples" / "train_batch.png").read_bytes()
    picture = np.asarray(Image.open(io.BytesIO(record["picture"])).convert("RGB"))
    images, masks = record["images"], record["masks"].numpy()
    assert images.shape == (4, 3, CROP, CROP)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = ((images * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    lookup = palette(None)  # the demo's classes are VOC's, in VOC's colours
    padded = 0
    for image, mask, top in zip(rgb, masks, row_tops([CROP] * 4), strict=True):
        row = picture[top : top + CROP]
        np.testing.assert_array_equal(row[:, panel_columns(CROP, 0)], image)
        np.testing.assert_array_equal(row[:, panel_columns(CROP, 1)], lookup[mask])
        blend = row[:, panel_columns(CROP, 2)]
        void = mask == 255
        assert (blend[void] == VOID).all()  # unblended: padding reads as padding
        expected = np.rint(0.5 * image.astype(np.float32) + 0.5 * lookup[mask]).astype(np.uint8)
        np.testing.assert_array_equal(blend[~void], expected[~void])
        padded += int((void.all(axis=1) & (image == 0).all(axis=(1, 2))).sum())
    assert padded > 0  # some rows are crop padding: black image, all 255


def test_tensorboard_shows_the_pictures_at_their_steps(run):
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    for tag, files in [
        ("samples/val", {2: "val_step000002.png", 4: "val_step000004.png"}),
        ("samples/train_batch", {0: "train_batch.png"}),
    ]:
        shown = events.Images(tag)
        assert [event.step for event in shown] == list(files)
        for event, name in zip(shown, files.values(), strict=True):
            decoded = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
            np.testing.assert_array_equal(decoded, pixels(run / "samples" / name))


def test_a_resumed_run_draws_again_and_counts_validations_across_the_resume(
    run, tiny_voc_root, tmp_path
):
    resumed = tmp_path / "run"
    shutil.copytree(run, resumed)
    (resumed / "samples" / "train_batch.png").unlink()
    # Validation 3 of the run, at step 6: every 3rd from the first draws 1, 4, ... (not 3;
    # a count restarted at the resume would call it 1 and draw it).
    extra = ["ckpt_path=last", "trainer.max_epochs=3", "callbacks.samples.every_n_validations=3"]
    train_quietly(tiny_voc_root, resumed, *SETTINGS, *extra, "logger=[csv]")
    assert load_checkpoint(resumed / "checkpoints" / "last.ckpt")["global_step"] == 6
    assert sorted(p.name for p in (resumed / "samples").iterdir()) == [
        "train_batch.png",  # drawn again, from the batch the run resumed at
        "val_step000002.png",
        "val_step000004.png",
    ]


def test_num_0_draws_nothing(tiny_voc_root, tmp_path):
    train_quietly(tiny_voc_root, tmp_path, "callbacks.samples.num=0", "trainer.max_epochs=1")
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "samples").exists()


def test_the_pictures_can_be_left_out_of_the_config(tiny_voc_root, tmp_path):
    cfg = compose_train(
        tiny_training(tiny_voc_root, f"output_dir={tmp_path}", "~callbacks.samples", pictures=True)
    )
    assert "samples" not in cfg.callbacks
    assert compose_train([]).callbacks.samples.num == 8  # on by default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("callbacks.samples.num=-1", "callbacks.samples.num=-1 must be a whole number >= 0"),
        ("callbacks.samples.num=2.5", "callbacks.samples.num=2.5 must be a whole number >= 0"),
        (
            "callbacks.samples.every_n_validations=0",
            "callbacks.samples.every_n_validations=0 must be a whole number >= 1",
        ),
    ],
)
def test_a_bad_setting_is_one_config_line_before_training(
    override, message, tiny_voc_root, tmp_path
):
    overrides = tiny_training(tiny_voc_root, f"output_dir={tmp_path}", override, pictures=True)
    cfg = compose_train(overrides)
    with pytest.raises(ConfigError) as err:
        check_train_config(cfg)
    assert message in str(err.value)
    assert str(err.value).count("\n  - ") == 1
