"""scripts/evaluate.py: exact predictions under TTA, windows and batching, agreement with
scripts/infer.py and with itself on 2 processes, nothing lost or written elsewhere, bad input as
one line (a bad checkpoint included; every way a checkpoint can be bad: test_checkpoint.py)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO, assert_varied, compose_config, eval_args
from PIL import Image

from segnet.data.classes import VOC_CLASSES
from segnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from segnet.data.voc import VOCSegmentationDataset
from segnet.predict.predictor import Predictor
from segnet.runtime.checkpoint import load_model
from segnet.tasks.cli import guarded
from segnet.tasks.evaluate import evaluate, evaluate_command
from segnet.tasks.infer import infer_command

NUM = len(VOC_CLASSES)


def evaluate_quietly(overrides: list[str]) -> tuple[dict, str]:
    """In-process evaluation (no 10 s subprocess start): (metrics, what it printed)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        metrics = evaluate(compose_config("eval", overrides))
    return metrics, stdout.getvalue()


def status_of(overrides: list[str], capsys) -> tuple[int, str, str]:
    """What scripts/evaluate.py would do, in process: (exit status, stdout, stderr without the
    progress bar)."""
    status = guarded(evaluate_command, compose_config("eval", overrides))
    out, err = capsys.readouterr()
    lines = [line for line in err.split("\n") if "\r" not in line]  # tqdm redraws with \r
    return status, out, "\n".join(lines)


def write_voc(root: Path, pairs: dict[str, tuple[Image.Image, Image.Image]]) -> Path:
    """A dataset in VOC's layout under ``root`` whose val split is ``pairs`` (id: image, mask)."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    for name, (image, mask) in pairs.items():
        image.save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
        mask.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{n}\n" for n in pairs))
    return root


def demo_pairs(tiny_voc_root, split: str) -> list[tuple[Image.Image, Image.Image]]:
    voc = Path(tiny_voc_root) / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    return [
        (
            Image.open(voc / "JPEGImages" / f"{i}.jpg"),
            Image.open(voc / "SegmentationClass" / f"{i}.png"),
        )
        for i in ids
    ]


def counts(pred, truth) -> np.ndarray:
    """(C, C) pixel counts, rows = truth, of class maps (1, H, W) and (H, W), with numpy."""
    pred = np.asarray(pred[0], dtype=np.int64)
    truth = np.asarray(truth, dtype=np.int64)
    keep = truth != 255
    return np.bincount(truth[keep] * NUM + pred[keep], minlength=NUM**2).reshape(NUM, NUM)


def expected_confmat(root, predict, transforms=eval_transforms()) -> np.ndarray:  # noqa: B008
    """The val split's confusion matrix from ``predict`` (1, 3, H, W) -> (1, H, W), one image
    at a time, counted here with numpy (independent of evaluate's batching and counting).
    The images are normalised floats, or with ``transforms=None`` uint8 as decoded."""
    confmat = np.zeros((NUM, NUM), dtype=np.int64)
    dataset = VOCSegmentationDataset(str(root), "val", transforms=transforms)
    with torch.inference_mode():
        for image, mask in dataset:
            confmat += counts(predict(image[None]), mask)
    return confmat


def normalize(image: torch.Tensor) -> torch.Tensor:
    """Float image(s) in [0, 1], shape (..., 3, H, W) -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image - mean) / std


def whole(model, image):
    """The plain prediction: argmax of the softmax (as averaged probabilities are compared)."""
    return model(image).softmax(1).argmax(1)


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint)[0]


@pytest.fixture(scope="module")
def plain(checkpoint, tiny_voc_root, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    metrics, stdout = evaluate_quietly(eval_args(checkpoint, tiny_voc_root, out))
    return {"dir": out, "stdout": stdout, "metrics": metrics}


@pytest.fixture(scope="module")
def same_size_root(tiny_voc_root, tmp_path_factory) -> Path:
    """7 val images (odd, for 2 processes) of two sizes, interleaved A B A A B A A."""
    # (width, height), inside every demo image (sides >= 96). Mixed in one batch, both would
    # be padded to 96 x 96, beyond the multiple of 32 the network pads each to by itself.
    a, b = (96, 64), (64, 96)
    sizes = [a, b, a, a, b, a, a]
    pairs = {}
    for n, ((image, mask), (width, height)) in enumerate(
        zip(demo_pairs(tiny_voc_root, "train"), sizes, strict=False)
    ):
        box = (0, 0, width, height)
        pairs[f"same_{n}"] = (image.crop(box), mask.crop(box))
    return write_voc(tmp_path_factory.mktemp("same_size"), pairs)


@pytest.fixture
def predictions(monkeypatch) -> list[int]:
    """Counts the images evaluate predicts."""
    count = []
    predict = Predictor.predict

    def counting(self, images):
        count.append(len(images))
        return predict(self, images)

    monkeypatch.setattr(Predictor, "predict", counting)
    return count


@pytest.fixture(scope="module")
def inferred(checkpoint, tiny_voc_root, tmp_path_factory) -> Path:
    """scripts/infer.py's masks of the tiny dataset's images (NAME.png per NAME.jpg)."""
    voc = Path(tiny_voc_root) / "VOCdevkit" / "VOC2012"
    pred_dir = tmp_path_factory.mktemp("inferred")
    infer_args = [f"ckpt_path={checkpoint}", f"input={voc / 'JPEGImages'}"]
    infer_args += [f"output_dir={pred_dir}", "batch_size=1", "num_workers=0"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert infer_command(compose_config("infer", infer_args)) == 0
    return pred_dir


def test_metrics_equal_a_confusion_matrix_of_the_inferred_pngs(
    plain, checkpoint, tiny_voc_root, inferred
):
    voc = Path(tiny_voc_root) / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    pred_dir = inferred
    confmat = np.zeros((NUM, NUM), dtype=np.int64)
    for name in ids:
        pred = np.asarray(Image.open(pred_dir / f"{name}.png"))[None]
        confmat += counts(pred, Image.open(voc / "SegmentationClass" / f"{name}.png"))
    assert_varied(confmat)

    metrics = plain["metrics"]
    assert metrics["split"] == "val" and metrics["num_images"] == len(ids) == 8
    assert metrics["ckpt_path"] == str(checkpoint)
    assert np.array_equal(np.array(metrics["confusion_matrix"]), confmat)
    hits, truth, predicted = np.diag(confmat), confmat.sum(1), confmat.sum(0)
    union = truth + predicted - hits
    present = union > 0
    iou = hits / np.maximum(union, 1)
    assert metrics["pixel_acc"] == pytest.approx(hits.sum() / confmat.sum())
    assert metrics["mean_acc"] == pytest.approx(np.mean(hits[truth > 0] / truth[truth > 0]))
    assert metrics["miou"] == pytest.approx(iou[present].mean())
    assert metrics["fw_iou"] == pytest.approx((truth * iou).sum() / truth.sum())
    for i, name in enumerate(VOC_CLASSES):
        expected = iou[i] if present[i] else None
        assert metrics["per_class_iou"][name] == pytest.approx(expected)
    assert metrics["absent_classes"] == [n for i, n in enumerate(VOC_CLASSES) if not present[i]]

    assert json.loads((plain["dir"] / "metrics.json").read_text()) == metrics
    report = (plain["dir"] / "report.md").read_text()
    assert f"| mean IoU | {metrics['miou']:.4f} |" in report
    assert all(f"| {name} |" in report for name in VOC_CLASSES)
    with Image.open(plain["dir"] / "confusion_matrix.png") as picture:
        assert picture.format == "PNG"
    assert sorted(p.name for p in plain["dir"].iterdir()) == [
        "confusion_matrix.png",
        "hardest",
        "metrics.json",
        "report.md",
    ]
    assert f"mean IoU: {metrics['miou']:.4f}" in plain["stdout"]
    assert "person" in plain["stdout"] and "GT pixels" in plain["stdout"]


def test_flip_and_scale_tta_give_the_hand_computed_predictions(
    plain, model, checkpoint, tiny_voc_root, tmp_path
):
    def by_hand(image):  # uint8 (1, 3, H, W): a scale resizes the 8-bit picture, rounded
        height, width = image.shape[-2:]
        total = 0
        for scale in (0.5,):
            x = image.float()
            if scale != 1.0:
                size = (round(height * scale), round(width * scale))
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False).round()
            x = normalize(x.clamp(0, 255) * (1.0 / 255))
            for logits in (model(x), model(x.flip(-1)).flip(-1)):
                if logits.shape[-2:] != (height, width):
                    logits = F.interpolate(
                        logits, size=(height, width), mode="bilinear", align_corners=False
                    )
                total = total + logits.softmax(1)
        return total.argmax(1)

    expected = expected_confmat(tiny_voc_root, by_hand, transforms=None)
    assert_varied(expected)
    # The TTA changes predictions on this model, so ignoring it would show.
    assert not np.array_equal(expected, plain["metrics"]["confusion_matrix"])

    tta = ["tta.flip=true", "tta.scales=[0.5]"]
    metrics, _ = evaluate_quietly(eval_args(checkpoint, tiny_voc_root, tmp_path, *tta))
    assert metrics["settings"]["tta"] == {"flip": True, "scales": [0.5]}
    assert np.array_equal(metrics["confusion_matrix"], expected)


def test_windows_above_max_pixels_and_whole_images_below_in_one_evaluation(
    plain, model, checkpoint, tiny_voc_root, tmp_path
):
    dataset = VOCSegmentationDataset(tiny_voc_root, "val")
    areas = sorted(np.prod(Image.open(path).size) for path in dataset.images)
    max_pixels = int(np.median(areas))
    assert areas[0] <= max_pixels < areas[-1]  # both kinds are in the split
    settings = {"window": 96, "overlap": 0.25, "blend": "gaussian"}
    windowed = Predictor(model, **settings, max_pixels=0, batch_size=1)
    mixed = np.zeros((NUM, NUM), dtype=np.int64)
    small_changed = False  # whether windows would change a small image's counts
    dataset = VOCSegmentationDataset(tiny_voc_root, "val", transforms=eval_transforms())
    with torch.inference_mode():
        for image, mask in dataset:
            large = image.shape[-2] * image.shape[-1] > max_pixels
            pred = windowed.predict(image[None]) if large else whole(model, image[None])
            mixed += counts(pred, mask)
            if not large and not small_changed:
                by_windows = counts(windowed.predict(image[None]), mask)
                small_changed = not np.array_equal(by_windows, counts(pred, mask))
    assert_varied(mixed)
    # Windows change predictions of both kinds here, so windowing none or all would show.
    assert not np.array_equal(mixed, plain["metrics"]["confusion_matrix"])
    assert small_changed

    extra = [f"{key}={value}" for key, value in settings.items()] + [f"max_pixels={max_pixels}"]
    metrics, _ = evaluate_quietly(eval_args(checkpoint, tiny_voc_root, tmp_path, *extra))
    assert metrics["settings"]["window"] == 96 and metrics["settings"]["max_pixels"] == max_pixels
    assert np.array_equal(metrics["confusion_matrix"], mixed)


@pytest.fixture(scope="module")
def same_size_expected(model, same_size_root) -> np.ndarray:
    """The same-size split's matrix, predicted image by image."""
    expected = expected_confmat(same_size_root, lambda image: whole(model, image))
    assert_varied(expected)
    return expected


def test_same_size_batches_give_exactly_the_one_by_one_matrix(
    checkpoint, same_size_root, same_size_expected, tmp_path, predictions
):
    args = eval_args(checkpoint, same_size_root, tmp_path, "batch_size=3")
    metrics, _ = evaluate_quietly(args)
    # Sizes A B A A B A A: A images 0 2 3 together, B images 1 4, then A images 5 6.
    assert predictions == [3, 2, 2]
    assert np.array_equal(metrics["confusion_matrix"], same_size_expected)


def test_two_processes_give_the_one_process_matrix_and_write_only_into_output_dir(
    checkpoint, same_size_root, same_size_expected, tmp_path
):
    """torchrun as a user runs it (the config's own hydra settings), from an empty folder; the
    per-image scores and hardest images gathered from both equal one process's."""
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # 7 images: 4 and 3, in batches of 2 (a padded sampler would count one image twice).
    args = eval_args(checkpoint, same_size_root, out, "batch_size=2")
    done = subprocess.run(
        [sys.executable, *launcher, str(REPO / "scripts" / "evaluate.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.array_equal(metrics["confusion_matrix"], same_size_expected)
    assert metrics["num_images"] == 7
    assert done.stdout.count("mean IoU:") == 1  # rank 0 alone reports
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png",
        "hardest",
        "metrics.json",
        "report.md",
    ]
    one, _ = evaluate_quietly(
        eval_args(checkpoint, same_size_root, tmp_path / "one", "batch_size=2")
    )
    assert [e["id"] for e in metrics["per_image"]] == [f"same_{n}" for n in range(7)]
    assert metrics["per_image"] == one["per_image"]
    hardest = (out / "report.md").read_text().split("## Hardest images")[1]
    assert hardest == (tmp_path / "one" / "report.md").read_text().split("## Hardest images")[1]
    pictures = sorted(p.name for p in (tmp_path / "one" / "hardest").iterdir())
    assert len(pictures) == 7 and sorted(p.name for p in (out / "hardest").iterdir()) == pictures
    for name in pictures:
        assert (out / "hardest" / name).read_bytes() == (
            tmp_path / "one" / "hardest" / name
        ).read_bytes()


@pytest.mark.parametrize("where", ["under a file", "inside the dataset", "unset"])
def test_an_unusable_output_dir_stops_before_any_prediction(
    checkpoint, tiny_voc_root, tmp_path, capsys, predictions, where
):
    (tmp_path / "file").write_text("")
    out, message = {
        "under a file": (tmp_path / "file" / "eval", "is a file, not a folder"),
        "inside the dataset": (
            Path(tiny_voc_root) / "VOCdevkit/VOC2012/eval",
            "inside the dataset",
        ),
        "unset": ("null", "output_dir is not set"),
    }[where]
    status, stdout, stderr = status_of(eval_args(checkpoint, tiny_voc_root, out), capsys)
    assert status == 2 and predictions == []
    assert stderr.startswith("error: ") and message in stderr and len(stderr.splitlines()) == 1
    assert not (Path(tiny_voc_root) / "VOCdevkit/VOC2012/eval").exists()


def test_metrics_are_printed_when_the_files_cannot_be_written(
    plain, checkpoint, tiny_voc_root, tmp_path, capsys, monkeypatch
):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The output check passes (it syncs nothing); the disk then fills before the files.
    monkeypatch.setattr(os, "fsync", disk_full)
    out = tmp_path / "out"
    status, stdout, stderr = status_of(eval_args(checkpoint, tiny_voc_root, out), capsys)
    assert status == 2
    assert f"mean IoU: {plain['metrics']['miou']:.4f}" in stdout
    assert len(stderr.splitlines()) == 1
    assert "could not be written" in stderr and "No space left on device" in stderr
    assert list(out.iterdir()) == []  # nothing half-written, no temporary left


def unlabelled(mask: Image.Image) -> Image.Image:
    mask = mask.copy()
    mask.paste(255, (0, 0, *mask.size))
    return mask


def bad_dataset(kind: str, root: Path, tiny_voc_root) -> tuple[Path, list[str], str]:
    """(data root, extra overrides, expected message) of a dataset that cannot be scored."""
    pairs = demo_pairs(tiny_voc_root, "val")[:2]
    if kind == "empty split":
        write_voc(root, {})
        return root, [], "lists no images"
    if kind == "no labelled pixel":
        write_voc(
            root, {f"x{n}": (image, unlabelled(mask)) for n, (image, mask) in enumerate(pairs)}
        )
        return root, [], "none of its 2 images has a labelled pixel"
    if kind == "missing image":
        write_voc(root, {"x0": pairs[0]})
        split = root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
        split.write_text("x0\nx1\n")
        return root, [], "2 files listed in"
    return Path(tiny_voc_root), ["data.class_names=[background,thing]"], "predicts 21 classes but"


@pytest.mark.parametrize(
    "kind", ["empty split", "no labelled pixel", "missing image", "other class count"]
)
def test_a_dataset_that_cannot_be_scored_is_one_line_and_writes_nothing(
    checkpoint, tiny_voc_root, tmp_path, capsys, kind
):
    root, extra, message = bad_dataset(kind, tmp_path / "data", tiny_voc_root)
    out = tmp_path / "out"
    status, stdout, stderr = status_of(eval_args(checkpoint, root, out, *extra), capsys)
    assert status == 2, stderr
    assert stderr.startswith("error: ") and message in stderr, stderr
    if kind != "other class count":
        assert str(root / "VOCdevkit/VOC2012") in stderr  # names the split file
    assert kind == "missing image" or len(stderr.splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []
    assert "mean IoU" not in stdout


@pytest.mark.parametrize(
    ("device", "local", "message"),
    [
        ("cuda", "1", "start at most 1 per node (torchrun --nproc_per_node=1)"),
        ("cuda:0", "0", "would put every process of this node on one GPU"),
    ],
)
def test_torchrun_processes_without_a_gpu_of_their_own_are_one_line(
    checkpoint, tiny_voc_root, tmp_path, capsys, monkeypatch, device, local, message
):
    """2 processes on a node with 1 GPU (simulated: no process group is ever started)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key, value in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": local}.items():
        monkeypatch.setenv(key, value)
    args = eval_args(checkpoint, tiny_voc_root, tmp_path / "out", f"device={device}")
    status, _, stderr = status_of(args, capsys)
    assert status == 2 and stderr.startswith("error: ") and message in stderr
    assert len(stderr.splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluation_on_the_gpu_agrees_with_the_cpu(plain, checkpoint, tiny_voc_root, tmp_path):
    metrics, _ = evaluate_quietly(eval_args(checkpoint, tiny_voc_root, tmp_path, "device=cuda"))
    gpu = np.array(metrics["confusion_matrix"])
    cpu = np.array(plain["metrics"]["confusion_matrix"])
    assert gpu.sum() == cpu.sum()
    # Other kernels (and TF32) round differently: a few near-tie pixels may change class.
    assert np.abs(gpu - cpu).sum() <= 0.02 * cpu.sum()


def test_a_bad_checkpoint_is_one_clear_error(tiny_voc_root, tmp_path, capsys):
    path = tmp_path / "model.ckpt"
    path.write_text("not a checkpoint")
    status, _, stderr = status_of(eval_args(path, tiny_voc_root, tmp_path / "out"), capsys)
    assert status == 2
    assert stderr.strip() == f"error: checkpoint {path} is not a PyTorch checkpoint " + (
        "(not a zip archive: truncated, corrupt or another kind of file)"
    )
    assert not (tmp_path / "out").exists()
