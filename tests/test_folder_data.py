"""data=folder: pairs by relative path, splits (folders or hash), classes.txt, label maps, every
listing problem at once, and train -> evaluate -> infer/export with the dataset's classes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import hydra
import numpy as np
import pytest
from helpers import compose_config, compose_train, tiny_training
from PIL import Image

from segnet.data.class_file import write_class_file
from segnet.data.folder import in_val, list_folder_pairs
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError
from segnet.tasks.config import check_train_config

COLOURS = [(0, 0, 0), (200, 30, 40), (20, 160, 90)]
NAMES = ["background", "road", "tree"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def write_pair(image: Path, mask: Path, labels: np.ndarray, rgb_mask: bool = False) -> None:
    """An image whose colour follows ``labels`` (H, W), and its mask: raw ``labels`` (L), or
    the classes' COLOURS as an RGB PNG."""
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.array(COLOURS, dtype=np.uint8)[labels % 3]
    Image.fromarray(pixels).save(image)
    if rgb_mask:
        Image.fromarray(np.array(COLOURS, dtype=np.uint8)[labels]).save(mask)
    else:
        Image.fromarray(labels.astype(np.uint8), mode="L").save(mask)


def scene(seed: int, size: int = 40) -> np.ndarray:
    """uint8 (size, size) labels 0..2: two rectangles on background."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), dtype=np.uint8)
    for label in (1, 2):
        top, left = rng.integers(0, size // 2, 2)
        labels[top : top + size // 2, left : left + size // 2] = label
    return labels


def listed(listing, split: str, root: Path) -> list[tuple[str, str]]:
    return [
        (str(Path(i).relative_to(root)), str(Path(m).relative_to(root)))
        for i, m in listing.splits[split]
    ]


# --- listing and pairing ---------------------------------------------------------------------


def test_pairs_by_relative_path_in_subfolders(tmp_path):
    for rel in ("a/x.jpg", "b/x.JPEG", "b/deep/y.png"):
        touch(tmp_path / "images/train" / rel)
        touch(tmp_path / "masks/train" / rel).rename(
            tmp_path / "masks/train" / Path(rel).with_suffix(".png")
        )
    touch(tmp_path / "images/val/z.webp")
    touch(tmp_path / "masks/val/z.png")
    listing = list_folder_pairs(tmp_path)
    assert listing.problems == [] and not listing.hashed
    assert listed(listing, "train", tmp_path) == [
        ("images/train/a/x.jpg", "masks/train/a/x.png"),
        ("images/train/b/deep/y.png", "masks/train/b/deep/y.png"),
        ("images/train/b/x.JPEG", "masks/train/b/x.png"),
    ]
    assert listed(listing, "val", tmp_path) == [("images/val/z.webp", "masks/val/z.png")]


def test_mask_suffix_and_renamed_folders(tmp_path):
    touch(tmp_path / "photos/train/n.jpg")
    touch(tmp_path / "labels/train/n_mask.png")
    touch(tmp_path / "photos/val/m.jpg")
    touch(tmp_path / "labels/val/m_mask.png")
    listing = list_folder_pairs(tmp_path, "photos", "labels", "_mask")
    assert listing.problems == []
    assert listed(listing, "train", tmp_path) == [("photos/train/n.jpg", "labels/train/n_mask.png")]
    # Without the suffix, nothing pairs: each side is reported as unpaired.
    problems = list_folder_pairs(tmp_path, "photos", "labels").problems
    assert any("have no mask NAME.png" in p and "n.jpg" in p for p in problems)


def test_the_hash_split_is_deterministic_stable_and_near_its_fraction(tmp_path):
    names = [f"img_{i:04d}.jpg" for i in range(1000)]
    val = [n for n in names if in_val(n, 0.1)]
    assert 70 <= len(val) <= 130 and val == [n for n in names if in_val(n, 0.1)]
    for name in names[:50]:
        touch(tmp_path / "images" / name)
        touch(tmp_path / "masks" / name).rename(tmp_path / "masks" / name.replace(".jpg", ".png"))
    touch(tmp_path / "images/more/img_9999.jpg")  # a subfolder below files: organisation
    touch(tmp_path / "masks/more/img_9999.png")
    before = list_folder_pairs(tmp_path, val_fraction=0.2)
    assert before.hashed and before.problems == []
    for name in names[50:]:
        touch(tmp_path / "images" / name)
        touch(tmp_path / "masks" / name).rename(tmp_path / "masks" / name.replace(".jpg", ".png"))
    after = list_folder_pairs(tmp_path, val_fraction=0.2)
    for split in ("train", "val"):
        assert set(before.splits[split]) <= set(after.splits[split])
    assert len(after.splits["train"]) + len(after.splits["val"]) == 1001
    assert str(tmp_path / "images/more/img_9999.jpg") in dict(
        after.splits["train"] + after.splits["val"]
    )


def test_the_hash_split_is_stated_in_the_log(tmp_path, caplog):
    for i in range(30):
        write_pair(tmp_path / f"images/im{i}.png", tmp_path / f"masks/im{i}.png", scene(i, 16))
    write_class_file(tmp_path / "classes.txt", NAMES)
    module = FolderDataModule(str(tmp_path), val_fraction=0.2, batch_size=1, num_workers=0)
    with caplog.at_level("INFO", logger="segnet.data.folder_datamodule"):
        module.setup("fit")
    val = sum(in_val(f"im{i}", 0.2) for i in range(30))
    assert len(module.val_dataset) == val and len(module.train_dataset) == 30 - val
    assert (
        f"{tmp_path}/images has no split folders: {30 - val} images to 'train' and {val} to "
        "'val' by a hash of each path (data.val_fraction=0.2)"
    ) in caplog.text


def test_every_listing_problem_is_named_in_one_error(tmp_path):
    touch(tmp_path / "images/train/ok.jpg")
    touch(tmp_path / "masks/train/ok.png")
    touch(tmp_path / "images/train/lonely.jpg")
    touch(tmp_path / "masks/train/orphan.png")
    touch(tmp_path / "images/train/twin.jpg")
    touch(tmp_path / "images/train/twin.png")
    touch(tmp_path / "masks/train/twin.png")
    touch(tmp_path / "images/train/lossy.jpg")
    touch(tmp_path / "masks/train/lossy.jpg")
    (tmp_path / "images/val").mkdir()
    (tmp_path / "masks/val").mkdir()
    write_class_file(tmp_path / "classes.txt", NAMES)
    with pytest.raises(DataError) as caught:
        FolderDataModule(str(tmp_path), num_workers=0).setup("fit")
    lines = str(caught.value).splitlines()
    assert lines[0] == "5 problems with the dataset:"
    text = str(caught.value)
    assert "twin.jpg and twin.png have the same name" in text
    assert "1 masks are JPEG (lossy.jpg): JPEG is lossy" in text
    assert "2 images in" in text and "lonely.jpg, lossy.jpg" in text
    assert "1 masks in" in text and "orphan.png" in text
    assert "split 'val' is empty" in text


def test_any_split_folder_can_be_evaluated_alone(tmp_path):
    write_pair(tmp_path / "images/test/a.png", tmp_path / "masks/test/a.png", scene(0, 16))
    write_class_file(tmp_path / "classes.txt", NAMES)
    module = FolderDataModule(str(tmp_path), num_workers=0)
    images, masks = next(iter(module.eval_dataloader("test")))
    assert masks[0].numpy().tolist() == scene(0, 16).tolist()
    with pytest.raises(DataError, match=r"split 'val' does not exist: .* has the splits test"):
        module.eval_dataloader("val")


def test_missing_folders_say_what_was_expected(tmp_path):
    problems = list_folder_pairs(tmp_path).problems
    assert problems == [
        f"{tmp_path}/images does not exist: data=folder expects the images in "
        f"{tmp_path}/images/<split>/NAME.jpg and their masks in {tmp_path}/masks/<split>/NAME.png "
        "(set data.root, data.images_dir)"
    ]
    touch(tmp_path / "images/train/a.jpg")
    assert "masks does not exist" in list_folder_pairs(tmp_path).problems[0]


# --- classes and label maps ------------------------------------------------------------------


def test_classes_from_classes_txt_or_class_names(tmp_path):
    with pytest.raises(DataError, match="classes.txt does not exist.*data.class_names"):
        FolderDataModule(str(tmp_path))
    named = FolderDataModule(str(tmp_path), class_names=["bg", "cat"])
    assert named.class_names == ["bg", "cat"] and named.class_colours == [[0, 0, 0], [128, 0, 0]]
    write_class_file(tmp_path / "classes.txt", NAMES, COLOURS)
    module = FolderDataModule(str(tmp_path))
    assert module.class_names == NAMES and module.class_colours == [list(c) for c in COLOURS]


def test_label_map_and_colour_masks_are_applied_in_the_loaders(tmp_path):
    raw = np.array([[0, 7, 7, 200], [0, 0, 7, 200]], dtype=np.uint8)
    write_pair(tmp_path / "images/train/g.png", tmp_path / "masks/train/g.png", raw)
    labels = np.array([[0, 1, 2, 2], [0, 0, 1, 1]], dtype=np.uint8)
    write_pair(tmp_path / "images/val/c.png", tmp_path / "masks/val/c.png", labels, rgb_mask=True)
    write_class_file(tmp_path / "classes.txt", NAMES, COLOURS)
    module = FolderDataModule(
        str(tmp_path), label_map={0: 0, "7": 1, 200: 255}, batch_size=1, num_workers=0
    )
    module.setup("fit")
    raw_train = module.train_dataset.untransformed()
    assert raw_train[0][1].numpy().tolist() == [[0, 1, 1, 255], [0, 0, 1, 255]]
    _, masks = next(iter(module.val_dataloader()))
    assert masks[0].numpy().tolist() == labels.tolist()
    # Unmapped values stop the setup (the mask check before training), not a loader worker.
    unmapped = FolderDataModule(str(tmp_path), batch_size=1, num_workers=0)
    with pytest.raises(DataError, match=r"mask values 7 \(3 px in 1 file\), 200 \(2 px in 1"):
        unmapped.setup("fit")


def test_the_folder_config_composes_and_passes_the_config_checks(tmp_path):
    write_class_file(tmp_path / "classes.txt", NAMES)
    cfg = compose_train(["data=folder", f"data.root={tmp_path}", f"output_dir={tmp_path}/run"])
    check_train_config(cfg)
    module = hydra.utils.instantiate(cfg.data)
    assert isinstance(module, FolderDataModule) and module.num_classes == 3


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory) -> Path:
    """8 train, 2 val and 2 test pairs of 40 px, RGB masks in classes.txt's colours."""
    root = tmp_path_factory.mktemp("folder_data")
    for offset, (split, count) in enumerate((("train", 8), ("val", 2), ("test", 2))):
        for i in range(count):
            sub = "group_a/" if i % 2 else ""
            write_pair(
                root / f"images/{split}/{sub}im{i}.png",
                root / f"masks/{split}/{sub}im{i}_mask.png",
                scene(10 * offset + i),
                rgb_mask=True,
            )
    write_class_file(root / "classes.txt", NAMES, COLOURS)
    return root


@pytest.fixture(scope="module")
def trained_folder(folder_dataset, tmp_path_factory) -> Path:
    from segnet.tasks.train import train

    run_dir = tmp_path_factory.mktemp("folder_run")
    overrides = tiny_training(folder_dataset, "data=folder", "data.mask_suffix=_mask")
    overrides += ["data.crop_size=[32,32]", "trainer.max_epochs=1", f"output_dir={run_dir}"]
    with contextlib.redirect_stdout(io.StringIO()):
        train(compose_train(overrides))
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluate_any_split_of_the_folder(trained_folder, folder_dataset, tmp_path, split):
    from segnet.tasks.evaluate import evaluate

    overrides = [
        f"ckpt_path={trained_folder}",
        "data=folder",
        f"data.root={folder_dataset}",
        "data.mask_suffix=_mask",
        "data.num_workers=0",
        f"split={split}",
        f"output_dir={tmp_path / 'eval'}",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = evaluate(compose_config("eval", overrides))
    assert metrics["split"] == split and metrics["num_images"] == 2
    assert metrics["class_names"] == NAMES
    assert np.array(metrics["confusion_matrix"]).sum() == 2 * 40 * 40


def test_the_checkpoint_and_onnx_carry_the_datasets_classes(trained_folder):
    from segnet.predict.segmenter import Segmenter
    from segnet.runtime.checkpoint import load_model
    from segnet.runtime.onnx_writer import export_onnx
    from segnet.runtime.onnxrt import OnnxBackend

    seg = Segmenter.from_checkpoint(trained_folder, device="cpu")
    assert seg.class_names == NAMES and seg.palette == COLOURS
    labels = np.array([[0, 1, 2]], dtype=np.uint8)
    assert np.asarray(seg.colorize(labels).convert("RGB")).tolist() == [[list(c) for c in COLOURS]]
    model, names, palette = load_model(trained_folder, "cpu")
    data, _ = export_onnx(model, names, palette, trained_folder)
    onnx = trained_folder.parent / "model.onnx"
    onnx.write_bytes(data)
    backend = OnnxBackend(onnx)
    assert backend.class_names == NAMES and backend.palette == COLOURS
