"""The synthetic demo dataset: VOC layout, content, determinism and atomic generation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image, ImageFilter
from torchvision.datasets import VOCSegmentation

from segnet.data import demo
from segnet.data.classes import IGNORE_INDEX, VOC_CLASSES, voc_palette
from segnet.data.demo import MARKER, demo_dataset_ready, generate_demo_dataset, scenes
from segnet.tasks.cli import EXIT_USAGE, guarded
from segnet.tasks.make_demo_data import make_demo_command

REPO = Path(__file__).resolve().parents[1]


def _voc(root: str | Path) -> Path:
    return Path(root) / "VOCdevkit" / "VOC2012"


def _masks(root: str | Path, split: str) -> list[np.ndarray]:
    return [np.asarray(mask) for _, mask in VOCSegmentation(str(root), "2012", split)]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def balanced_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images (60) for every class to appear several times."""
    root = tmp_path_factory.mktemp("demo60")
    generate_demo_dataset(root, num_train=48, num_val=12, seed=3)
    return root


def test_torchvision_reads_every_split(tiny_voc_root: str) -> None:
    lengths = {}
    for split in ("train", "val", "trainval"):
        dataset = VOCSegmentation(tiny_voc_root, year="2012", image_set=split)
        lengths[split] = len(dataset)
        for image, mask in dataset:
            assert image.mode == "RGB" and mask.mode == "P"
            assert image.size == mask.size
            assert mask.getpalette() == voc_palette()
    assert lengths == {"train": 16, "val": 8, "trainval": 24}
    assert demo_dataset_ready(tiny_voc_root)
    assert demo_dataset_ready(tiny_voc_root, num_train=16, num_val=8, seed=0)


def test_all_classes_appear_with_balanced_counts(balanced_root: Path) -> None:
    masks = _masks(balanced_root, "train")
    images_per_class = np.zeros(len(VOC_CLASSES), int)
    for mask in masks:
        labels = np.unique(mask)
        assert set(labels) <= set(range(len(VOC_CLASSES))) | {IGNORE_INDEX}
        images_per_class[labels[labels < len(VOC_CLASSES)]] += 1
    assert images_per_class[0] == len(masks)  # background everywhere
    objects = images_per_class[1:]
    assert objects.min() >= 3 and objects.max() - objects.min() <= 3, objects
    # val is dealt from its own decks: 12 images with 1-4 objects each show every class once
    # or twice, and background in every image.
    val = np.zeros(len(VOC_CLASSES), int)
    for mask in _masks(balanced_root, "val"):
        labels = np.unique(mask)
        assert set(labels) <= set(range(len(VOC_CLASSES))) | {IGNORE_INDEX}
        val[labels[labels < len(VOC_CLASSES)]] += 1
    assert val[0] == 12 and val[1:].min() >= 1 and val[1:].max() <= 2, val


def test_void_band_separates_every_pair_of_regions(tiny_voc_root: str) -> None:
    between = []
    for mask in _masks(tiny_voc_root, "trainval"):
        assert 0.02 < np.mean(mask == IGNORE_INDEX) < 0.4
        for cls in np.unique(mask[mask != IGNORE_INDEX]):
            # Growing a class's pixels by 2 px must reach only that class or void:
            # the band is at least 3 px wide wherever two regions meet.
            region = Image.fromarray(((mask == cls) * 255).astype(np.uint8))
            grown = np.asarray(region.filter(ImageFilter.MaxFilter(5))) > 0
            others = (mask != cls) & (mask != IGNORE_INDEX)
            assert not np.any(grown & others)
        # And void is a band along borders, not blobs: every void pixel lies within 5 px of a
        # region, and most lie between two (the rest are slivers too thin to keep).
        near = sum(
            np.asarray(
                Image.fromarray((mask == c).astype(np.uint8)).filter(ImageFilter.MaxFilter(11))
            )
            for c in np.unique(mask[mask != IGNORE_INDEX])
        )[mask == IGNORE_INDEX]
        assert np.all(near >= 1)
        between.append(np.mean(near >= 2))
    assert np.mean(between) > 0.85, between


def test_sizes_vary_and_are_not_multiples_of_32(tiny_voc_root: str) -> None:
    sizes = [mask.shape for mask in _masks(tiny_voc_root, "trainval")]
    sides = np.array(sizes).ravel()
    assert sides.min() >= 96 and sides.max() <= 256
    assert np.all(sides % 32 != 0)
    assert len(set(sizes)) == len(sizes)
    assert sides.max() - sides.min() > 80


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    trees = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_demo_dataset(tmp_path / name, num_train=3, num_val=2, seed=seed)
        trees[name] = _files(tmp_path / name)
    assert trees["a"] == trees["b"]
    assert trees["a"].keys() == trees["c"].keys()
    images = [k for k in trees["a"] if k.endswith((".jpg", ".png"))]
    assert len(images) == 10
    assert all(trees["a"][k] != trees["c"][k] for k in images)


def test_colour_does_not_tell_the_class(balanced_root: Path) -> None:
    """Per-instance mean colours vary as much within a class as across all classes."""
    means, labels = [], []
    for image, mask in VOCSegmentation(str(balanced_root), "2012", "trainval"):
        pixels, mask = np.asarray(image, np.float64), np.asarray(mask)
        for cls in np.unique(mask[mask != IGNORE_INDEX]):
            if np.sum(mask == cls) >= 200:
                means.append(pixels[mask == cls].mean(0))
                labels.append(cls)
    means, labels = np.array(means), np.array(labels)
    total = means.var(0).sum()
    within = np.mean([means[labels == c].var(0).sum() for c in np.unique(labels)])
    # If a class fixed its colour, `within` would be near 0; independent colours give ~1.
    assert within / total > 0.6, (within, total)
    assert np.sqrt(total) > 80  # and colours themselves spread widely


def test_interrupted_generation_is_not_taken_for_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    render = scenes.render_scene

    def render_then_die(rng: np.random.Generator, classes: list[int]):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render(rng, classes)

    monkeypatch.setattr(scenes, "render_scene", render_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(tmp_path / "cut", num_train=3, num_val=2)
    assert not demo_dataset_ready(tmp_path / "cut")
    assert not (tmp_path / "cut" / "VOCdevkit").exists()
    assert list((tmp_path / "cut").iterdir()) == []  # the half-written tree is gone too
    monkeypatch.setattr(scenes, "render_scene", render)

    generate_demo_dataset(tmp_path / "cut", num_train=3, num_val=2)
    generate_demo_dataset(tmp_path / "fresh", num_train=3, num_val=2)
    assert demo_dataset_ready(tmp_path / "cut")
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["VOCdevkit"]
    assert _files(tmp_path / "cut") == _files(tmp_path / "fresh")

    marker = _voc(tmp_path / "cut") / MARKER
    marker.write_text(
        marker.read_text().replace(f'"version": {demo.FORMAT_VERSION}', '"version": 0')
    )
    assert not demo_dataset_ready(tmp_path / "cut")  # made by an older generator
    (_voc(tmp_path / "fresh") / "ImageSets" / "Segmentation" / "val.txt").unlink()
    assert not demo_dataset_ready(tmp_path / "fresh")


def test_regeneration_replaces_a_demo_but_never_a_foreign_vocdevkit(tmp_path: Path) -> None:
    generate_demo_dataset(tmp_path, num_train=2, num_val=1, seed=0)
    generate_demo_dataset(tmp_path, num_train=3, num_val=1, seed=1)
    assert demo_dataset_ready(tmp_path, num_train=3, seed=1)
    assert not demo_dataset_ready(tmp_path, seed=0)
    assert len(list((_voc(tmp_path) / "JPEGImages").iterdir())) == 4

    foreign = tmp_path / "real"
    (_voc(foreign) / "JPEGImages").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a finished segnet demo"):
        generate_demo_dataset(foreign, num_train=2, num_val=1)
    assert (_voc(foreign) / "JPEGImages").is_dir() and not (_voc(foreign) / MARKER).exists()
    with pytest.raises(ValueError, match="num_train"):
        generate_demo_dataset(tmp_path / "empty", num_train=0, num_val=1)


def test_script_writes_the_tree(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_demo_data.py"), f"root={tmp_path}"]
        + ["num_train=2", "num_val=1", "seed=4"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2 train + 1 val" in result.stdout
    assert demo_dataset_ready(tmp_path, num_train=2, num_val=1, seed=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOCdevkit"]


def _make_demo(capsys, root, **overrides) -> tuple[int, str]:
    """Run make_demo_command as scripts/make_demo_data.py does: (exit status, stderr)."""
    cfg = OmegaConf.create({"root": str(root), "num_train": 2, "num_val": 1, "seed": 0} | overrides)
    status = guarded(make_demo_command, cfg)
    return status, capsys.readouterr().err


def _one_error_line(err: str, expected: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"num_train": 0}, "num_train must be an integer >= 1, got 0"),
        ({"num_val": -3}, "num_val must be an integer >= 1, got -3"),
        ({"num_train": "many"}, "num_train must be an integer >= 1, got 'many'"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ],
)
def test_make_demo_bad_counts_are_one_line(tmp_path, capsys, overrides, expected):
    status, err = _make_demo(capsys, tmp_path / "out", **overrides)
    assert status == EXIT_USAGE
    _one_error_line(err, expected)
    assert not (tmp_path / "out").exists()


def test_make_demo_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "root").write_text("keep me")
    status, err = _make_demo(capsys, tmp_path / "root")
    assert status == EXIT_USAGE
    _one_error_line(err, f"demo dataset root {tmp_path}/root is a file, not a folder")
    assert (tmp_path / "root").read_text() == "keep me"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's read-only sysfs")
@pytest.mark.parametrize("root", ["/sys", "/sys/segnet_demo"])
def test_make_demo_read_only_root(capsys, root):
    # sysfs refuses new files even to root, who ignores permission bits.
    status, err = _make_demo(capsys, root)
    assert status == EXIT_USAGE
    _one_error_line(err, f"cannot write the demo dataset into {root} (")


def test_make_demo_refuses_a_real_dataset_at_root(tmp_path, capsys):
    real = _voc(tmp_path) / "JPEGImages" / "2007_000032.jpg"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"a real image")
    status, err = _make_demo(capsys, tmp_path)
    assert status == EXIT_USAGE
    _one_error_line(err, f"{tmp_path}/VOCdevkit exists and is not a finished segnet demo dataset")
    assert real.read_bytes() == b"a real image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOCdevkit"]


def test_script_bad_root_exits_2_with_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_demo_data.py"), f"root={tmp_path}/file"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr == f"error: demo dataset root {tmp_path}/file is a file, not a folder; "
        "choose another root\n"
    )
