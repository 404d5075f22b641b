"""scripts/import_data.py (segnet/tasks/import_data.py): the command around the importers, its
report, exit statuses and what it leaves on disk; the format here is COCO, the one importer the
command needs for these promises (each importer's own masks are tested in test_import_<format>)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, compose_config
from PIL import Image

from segnet.data.class_file import read_class_file
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError
from segnet.data.importers.summary import ImportSummary, SkippedItem
from segnet.tasks import import_data
from segnet.tasks.cli import ConfigError

SCRIPT = REPO / "scripts" / "import_data.py"
H, W = 8, 10
CATEGORIES = [{"id": 5, "name": "boat"}, {"id": 2, "name": "car"}]


def write_coco(root: Path, files: dict[str, list[str]], missing: tuple[str, ...] = ()) -> Path:
    """A COCO export: per split, images with one square polygon of ``car`` each; the images
    named in ``missing`` are listed in the json but have no file."""
    for split, names in files.items():
        images = [
            {"id": i, "file_name": name, "height": H, "width": W} for i, name in enumerate(names)
        ]
        annotations = [
            {
                "id": i,
                "image_id": i,
                "category_id": 2,
                "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]],
                "iscrowd": 0,
                "area": 16.0,
                "bbox": [1, 1, 4, 4],
            }
            for i in range(len(names))
        ]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        document = {"images": images, "annotations": annotations, "categories": CATEGORIES}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            if name not in missing:
                Image.new("RGB", (W, H), (90, 60, 30)).save(root / split / name)
    return root


def config(source: Path, output: Path, *overrides: str):
    return compose_config(
        "import_data",
        ["format=coco", f"input={source}", f"output={output}", "progress=false", *overrides],
    )


def run_script(source: Path, output: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "format=coco", f"input={source}", f"output={output}"]
        + list(overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def export(tmp_path: Path) -> Path:
    files = {"train": ["a.jpg", "b.jpg", "gone.jpg"], "val": ["c.jpg"]}
    return write_coco(tmp_path / "coco", files, missing=("gone.jpg",))


def test_the_script_reports_what_it_wrote_and_exits_1_for_a_skipped_image(
    export: Path, tmp_path: Path
):
    out = tmp_path / "dataset"
    done = run_script(export, out, "progress=false")

    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"wrote {out}",
        "  train: 2 images",
        "  val: 1 images",
        "classes (3):",
        "  0 background",
        "  1 car",
        "  2 boat",
        "skipped (1):",
        f"  {export / 'train' / 'gone.jpg'}: listed in the json, file missing",
        f"train on it: python scripts/train.py data=folder data.root={out}",
    ]
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["a.jpg", "b.jpg"]
    assert sorted(p.name for p in (out / "masks" / "train").iterdir()) == ["a.png", "b.png"]
    assert read_class_file(out / "classes.txt")[0] == ["background", "car", "boat"]
    # Only the dataset is written: no run folder, no .hydra copy beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "dataset"]


def test_the_train_command_it_prints_finds_a_whole_dataset(export: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    import_data.import_command(config(export, out))

    datamodule = FolderDataModule(str(out))
    datamodule.check()  # raises on any pairing problem or missing split
    assert datamodule.class_names == ["background", "car", "boat"]
    assert {split: len(pairs) for split, pairs in datamodule.listing().splits.items()} == {
        "train": 2,
        "val": 1,
    }


def test_a_clean_import_exits_0(tmp_path: Path):
    source = write_coco(tmp_path / "coco", {"train": ["a.jpg"], "val": ["b.jpg"]})
    assert import_data.import_command(config(source, tmp_path / "out")) == 0


def test_rerunning_is_refused_without_overwrite_and_replaces_with_it(export: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    assert run_script(export, out, "progress=false").returncode == 1
    (out / "masks" / "train" / "a.png").unlink()  # so a replacement shows

    refused = run_script(export, out, "progress=false")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: output={out} already exists; add overwrite=true to replace it"
    ]
    assert not (out / "masks" / "train" / "a.png").exists()

    replaced = run_script(export, out, "progress=false", "overwrite=true")
    assert replaced.returncode == 1
    assert (out / "masks" / "train" / "a.png").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_nothing_importable_leaves_nothing_and_keeps_an_old_dataset(tmp_path: Path, capsys):
    source = write_coco(tmp_path / "coco", {"train": ["a.jpg"]}, missing=("a.jpg",))
    out = tmp_path / "dataset"
    with pytest.raises(DataError, match="no image could be imported"):
        import_data.import_command(config(source, out))
    assert "skipped (1):" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]

    out.mkdir()
    (out / "old.txt").write_text("an earlier dataset")
    with pytest.raises(DataError, match="no image could be imported"):
        import_data.import_command(config(source, out, "overwrite=true"))
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "dataset"]


def test_the_script_exits_2_with_one_line_when_nothing_is_importable(tmp_path: Path):
    source = write_coco(tmp_path / "coco", {"train": ["a.jpg"]}, missing=("a.jpg",))
    done = run_script(source, tmp_path / "dataset", "progress=false")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: input={source}: no image could be imported (see skipped above)"
    ]
    assert done.stdout.splitlines()[0] == f"wrote nothing to {tmp_path / 'dataset'}"
    assert "train on it" not in done.stdout
    assert not (tmp_path / "dataset").exists()


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            ["format=pascal"],
            ConfigError,
            "format=pascal: unknown; choose one of coco, cvat, labelme, roboflow",
        ),
        (["input=/no/such/export"], DataError, "input=/no/such/export: no such folder"),
    ],
)
def test_bad_settings_are_one_clear_error(export: Path, tmp_path: Path, overrides, error, message):
    cfg = config(export, tmp_path / "out", *overrides)
    with pytest.raises(error) as caught:
        import_data.import_command(cfg)
    assert str(caught.value) == message
    assert not (tmp_path / "out").exists()


def test_an_output_inside_the_input_is_refused(export: Path):
    with pytest.raises(ConfigError, match="lies inside input"):
        import_data.import_command(config(export, export / "converted"))
    assert not (export / "converted").exists()


def test_the_progress_bar_goes_to_stderr(export: Path, tmp_path: Path):
    done = run_script(export, tmp_path / "dataset")  # progress=true is the default
    assert done.returncode == 1
    assert "import coco" in done.stderr and "4/4" in done.stderr
    assert "import coco" not in done.stdout


def test_a_skipped_item_is_named_once_when_its_reason_names_it_already(tmp_path: Path):
    mask = tmp_path / "a_mask.png"
    summary = ImportSummary(
        images={"train": 0},
        classes=["background", "car"],
        skipped=[
            SkippedItem(mask, f"{mask}: cannot decode image (OSError: broken)"),
            SkippedItem(mask, "pixel values _classes.csv does not list: 7 (3 px)"),
        ],
    )
    assert import_data.format_summary(summary, tmp_path / "out").splitlines()[-2:] == [
        f"  {mask}: cannot decode image (OSError: broken)",
        f"  {mask}: pixel values _classes.csv does not list: 7 (3 px)",
    ]
