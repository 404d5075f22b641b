"""segnet.data.importers.import_labelme: folders of json files in labelme's own format (5.x:
version, flags, shapes, imagePath, imageData, imageHeight, imageWidth) -> the folder layout.

The masks of DRAWN and STROKES (every shape type, fractional points) are labelme's own: their
GOLDEN rows were produced once by labelme 7.9.1's ``shapes_to_label`` (labelme/_utils/_mask.py
of the PyPI wheel, given the label values labelme2voc.py gives: __ignore__ -1, _background_ 0,
then 1, 2, ...; -1 stored as uint8 is 255), not by the importer. The others are stated by hand
with numpy slices.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_config
from PIL import Image

from segnet.data.class_file import read_class_file
from segnet.data.classes import IGNORE_INDEX, class_colours, flat_palette
from segnet.data.folder import in_val, list_folder_pairs
from segnet.data.folder_datamodule import FolderDataModule
from segnet.data.images import DataError
from segnet.data.importers import import_labelme
from segnet.data.importers.labelme import NO_SPLIT
from segnet.tasks.cli import EXIT_PARTIAL
from segnet.tasks.import_data import import_command

LABELS_TXT = "__ignore__\n_background_\ncat\ndog\nroad\ntree\n"
CLASSES = ["background", "cat", "dog", "road", "tree"]
CHAR_OF = {0: ".", 1: "c", 2: "d", 3: "r", 4: "t", IGNORE_INDEX: "x"}


def mask_png(rows: list[str]) -> str:
    """A mask shape's ``mask`` as labelme writes it: base64 of a mode-L PNG of 0/1."""
    pixels = np.array([[char == "#" for char in row] for row in rows], dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def shape(label: str, points: list, shape_type: str | None = "polygon", mask=None) -> dict:
    """One shape as labelme 5.x saves it; ``shape_type=None`` leaves the key out, as
    labelme 3.x files do."""
    saved = {
        "label": label,
        "points": points,
        "group_id": None,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        "mask": mask,
    }
    if shape_type is None:
        del saved["shape_type"]
    return saved


DRAWN_SIZE = (20, 28)  # (height, width)
DRAWN = [
    shape("cat", [[1.5, 1.2], [9.7, 2.4], [6.3, 8.8]]),
    shape("dog", [[19.6, 7.4], [13.2, 1.5]], "rectangle"),  # drawn right to left
    shape("road", [[5.5, 14.0], [8.6, 15.2]], "circle"),
    shape("tree", [[22.0, 14.0]], "point"),
    shape("dog", [[11, 11], [16, 11], [16, 18]], None),
]
STROKES_SIZE = (26, 34)
STROKES = [
    shape("cat", [[1.0, 2.0], [12.5, 5.0]], "line"),
    shape("dog", [[16.0, 7.0], [24.5, 7.0], [24.5, 18.0]], "linestrip"),
    shape("road", [[3.0, 14.0], [9.0, 11.0], [12.0, 17.0], [6.0, 20.0]], "oriented_rectangle"),
    # Whole-pixel corners: a 6x6 box, so the PNG's 7th row is cropped off.
    shape(
        "tree",
        [[14, 19], [19, 24]],
        "mask",
        mask_png(["##....", "###...", ".###..", "..###.", "...###", "....##", "######"]),
    ),
    # Fractional corners: the PNG's own 5x5 at the rounded (31, 22), clipped by the image.
    shape(
        "cat",
        [[30.6, 22.4], [35.4, 27.3]],
        "mask",
        mask_png(["#.#.#", ".#.#.", "#####", ".....", "#####"]),
    ),
]
GOLDEN_DRAWN = [
    "............................",
    ".c...........ddddddd........",
    "..cccccccc...ddddddd........",
    "..ccccccc....ddddddd........",
    "...cccccc....ddddddd........",
    "....cccc.....ddddddd........",
    ".....ccc.....ddddddd........",
    ".....cc......ddddddd........",
    "......c.....................",
    "....................ttttt...",
    "....rrr............ttttttt..",
    "...rrrrr...dddddd.ttttttttt.",
    "..rrrrrrr...dddddttttttttttt",
    "..rrrrrrr...dddddttttttttttt",
    "..rrrrrrr....ddddttttttttttt",
    "..rrrrrrr.....dddttttttttttt",
    "...rrrrr.......ddttttttttttt",
    "....rrr........dd.ttttttttt.",
    "................d..ttttttt..",
    "....................ttttt...",
]
GOLDEN_STROKES = [
    "..cccccccc........................",
    ".ccccccccccccc....................",
    ".ccccccccccccc....................",
    ".ccccccccccccc..dddddddddd........",
    ".cccccccccccc...dddddddddddd......",
    "ccccccccccccc...dddddddddddd......",
    "ccccccccccccc...ddddddddddddd.....",
    "ccccccccccccc...dddddddddddddd....",
    "....cccccccc....dddddddddddddd....",
    ".......ccccc....dddddddddddddd....",
    "...........c....dddddddddddddd....",
    ".........r......dddddddddddddd....",
    ".......rrr......dddddddddddddd....",
    ".....rrrrrr.........dddddddddd....",
    "...rrrrrrrr.........dddddddddd....",
    "....rrrrrrrr........dddddddddd....",
    "....rrrrrrrr........dddddddddd....",
    ".....rrrrrrrr.......dddddddddd....",
    ".....rrrrrr.........dddddddddd....",
    "......rrr.....tt..................",
    "......r.......ttt.................",
    "...............ttt................",
    "................ttt............c.c",
    ".................ttt............c.",
    "..................tt...........ccc",
    "..................................",
]

OVERLAP_SIZE = (10, 12)
OVERLAP = [
    shape("cat", [[0, 0], [7, 5]], "rectangle"),
    shape("dog", [[11, 9], [4, 3]], "rectangle"),
    shape("__ignore__", [[2, 1], [5, 1], [5, 4], [2, 4]]),
    shape("cat", [[9, 0], [11, 1]], "rectangle"),
]


def expected_overlap() -> np.ndarray:
    """Later shapes on top; a rectangle (and an outlined polygon) covers its corner pixels."""
    mask = np.zeros(OVERLAP_SIZE, dtype=np.uint8)
    mask[0:6, 0:8] = 1
    mask[3:10, 4:12] = 2
    mask[1:5, 2:6] = IGNORE_INDEX
    mask[0:2, 9:12] = 1
    return mask


def rows_to_mask(rows: list[str]) -> np.ndarray:
    value_of = {char: value for value, char in CHAR_OF.items()}
    return np.array([[value_of[char] for char in row] for row in rows], dtype=np.uint8)


def image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    height, width = size
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def write_label_file(
    path: Path,
    shapes: list[dict],
    size: tuple[int, int],
    image_path: str,
    image: bytes | None = None,
    embed: bool = False,
) -> None:
    """A json as labelme 5.4 saves it; the image file written at ``image_path`` unless it is
    embedded (``embed``: imageData, and no file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image_bytes(size, "PNG") if image is None else image
    if not embed:
        target = path.parent / image_path.replace("\\", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image)
    saved = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image).decode("ascii") if embed else None,
        "imageHeight": size[0],
        "imageWidth": size[1],
    }
    path.write_text(json.dumps(saved, ensure_ascii=False, indent=2), encoding="utf-8")


OVERLAP_JPEG = image_bytes(OVERLAP_SIZE, "JPEG")


@pytest.fixture
def split_export(tmp_path: Path) -> Path:
    """labels.txt, train/ (good files and one of each kind to skip), val/ (Windows path)."""
    root = tmp_path / "labelme"
    (root / "train").mkdir(parents=True)
    (root / "labels.txt").write_text(LABELS_TXT)
    train = root / "train"
    write_label_file(train / "drawn.json", DRAWN, DRAWN_SIZE, "drawn.png")
    write_label_file(train / "strokes.json", STROKES, STROKES_SIZE, "strokes.png")
    write_label_file(
        train / "overlap.json", OVERLAP, OVERLAP_SIZE, "overlap.jpg", OVERLAP_JPEG, True
    )
    write_label_file(
        train / "horse.json", [shape("horse", [[0, 0], [3, 3]], "rectangle")], (6, 8), "horse.png"
    )
    (train / "broken.json").write_text('{"version": "5.4.1", "shapes": [')
    write_label_file(train / "gone.json", [], (6, 8), "gone.png")
    (train / "gone.png").unlink()
    wrong = train / "wrong_size.json"
    write_label_file(wrong, [], (6, 8), "wrong_size.png")
    wrong.write_text(wrong.read_text().replace('"imageHeight": 6', '"imageHeight": 99'))
    write_label_file(
        train / "ellipse.json", [shape("cat", [[1, 1], [4, 4]], "ellipse")], (6, 8), "ellipse.png"
    )
    road = shape("road", [[0, 0], [5, 0], [5, 3], [0, 3]])
    write_label_file(root / "val" / "scene.json", [road], (6, 8), "images\\scene.png")
    return root


EXPECTED_SKIPS = [
    ("broken.json", "cannot read the json (Expecting value: line 1 column 33 (char 32))"),
    (
        "ellipse.json",
        "shapes[0] (cat): shape_type 'ellipse' is not one labelme draws into a mask (circle, "
        "line, linestrip, mask, oriented_rectangle, point, polygon, rectangle)",
    ),
    ("gone.json", "image file missing: {train}/gone.png (imagePath 'gone.png')"),
    ("horse.json", "label 'horse' is not in labels.txt"),
    ("wrong_size.json", "the image is 8x6 px but the json says imageWidth=8, imageHeight=99"),
]


def read_mask(path: Path, num_classes: int = len(CLASSES)) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette() == flat_palette(class_colours(num_classes))
        return np.asarray(image)


def test_split_folders_masks_images_and_classes(split_export: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = import_labelme(split_export, out)

    assert summary.images == {"train": 3, "val": 1}
    assert summary.classes == CLASSES
    train = split_export / "train"
    assert [(s.path.name, s.reason) for s in summary.skipped] == [
        (name, reason.format(train=train)) for name, reason in EXPECTED_SKIPS
    ]
    assert read_class_file(out / "classes.txt") == (CLASSES, class_colours(len(CLASSES)))
    masks = out / "masks"
    np.testing.assert_array_equal(read_mask(masks / "train/drawn.png"), rows_to_mask(GOLDEN_DRAWN))
    np.testing.assert_array_equal(
        read_mask(masks / "train/strokes.png"), rows_to_mask(GOLDEN_STROKES)
    )
    np.testing.assert_array_equal(read_mask(masks / "train/overlap.png"), expected_overlap())
    scene = np.zeros((6, 8), dtype=np.uint8)
    scene[0:4, 0:6] = 3
    np.testing.assert_array_equal(read_mask(masks / "val/scene.png"), scene)

    images = out / "images"
    assert sorted(p.name for p in (images / "train").iterdir()) == [
        "drawn.png",
        "overlap.jpg",
        "strokes.png",
    ]
    assert os.path.samefile(images / "train/drawn.png", train / "drawn.png")
    assert (images / "train/overlap.jpg").read_bytes() == OVERLAP_JPEG
    assert os.path.samefile(images / "val/scene.png", split_export / "val/images/scene.png")
    assert sorted(p.name for p in (masks / "train").iterdir()) == [
        "drawn.png",
        "overlap.png",
        "strokes.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelme", "out"]


def test_the_import_is_a_data_folder_dataset(split_export: Path, tmp_path: Path):
    out = tmp_path / "out"
    import_labelme(split_export, out)
    module = FolderDataModule(str(out), num_workers=0, eval_batch_size=1)
    module.setup("fit")
    assert module.class_names == CLASSES
    assert len(module.train_dataset) == 3 and len(module.val_dataset) == 1
    _, masks = next(iter(module.eval_dataloader("val")))
    assert masks[0].numpy()[0:4, 0:6].tolist() == [[3] * 6] * 4
    shapes = sorted(tuple(mask.shape) for _, (mask,) in module.eval_dataloader("train"))
    assert shapes == sorted([DRAWN_SIZE, STROKES_SIZE, OVERLAP_SIZE])


@pytest.fixture
def flat_export(tmp_path: Path) -> Path:
    """No labels.txt, no subfolder: kitchen (imagePath) and garden (imageData PNG)."""
    root = tmp_path / "labelme"
    kitchen = [
        shape("zebra", [[0, 0], [3, 3]], "rectangle"),
        shape("ant", [[5, 0], [7, 2]], "rectangle"),
        shape("__ignore__", [[0, 5], [2, 6]], "rectangle"),
    ]
    write_label_file(root / "kitchen.json", kitchen, (8, 10), "kitchen.png")
    garden = [
        shape("cat", [[0, 0], [6, 6]], "rectangle"),
        shape("_background_", [[2, 2], [4, 4]], "rectangle"),
    ]
    write_label_file(root / "garden.json", garden, (8, 10), "garden.png", GARDEN_PNG, True)
    # A different file at imagePath: labelme shows the embedded image, so the import takes it.
    (root / "garden.png").write_bytes(image_bytes((8, 11), "PNG"))
    return root


GARDEN_PNG = image_bytes((8, 10), "PNG")
FLAT_CLASSES = ["background", "ant", "cat", "zebra"]


def test_without_labels_txt_the_labels_are_sorted_and_no_split_is_made(
    flat_export: Path, tmp_path: Path
):
    out = tmp_path / "out"
    summary = import_labelme(flat_export, out)

    assert summary.images == {NO_SPLIT: 2} and summary.skipped == []
    assert summary.classes == FLAT_CLASSES
    assert read_class_file(out / "classes.txt")[0] == FLAT_CLASSES
    kitchen = np.zeros((8, 10), dtype=np.uint8)
    kitchen[0:4, 0:4] = 3
    kitchen[0:3, 5:8] = 1
    kitchen[5:7, 0:3] = IGNORE_INDEX
    np.testing.assert_array_equal(read_mask(out / "masks/kitchen.png", 4), kitchen)
    garden = np.zeros((8, 10), dtype=np.uint8)
    garden[0:7, 0:7] = 2
    garden[2:5, 2:5] = 0
    np.testing.assert_array_equal(read_mask(out / "masks/garden.png", 4), garden)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["garden.png", "kitchen.png"]
    assert (out / "images/garden.png").read_bytes() == GARDEN_PNG

    # data=folder splits it by hash: the two names fall on either side at val_fraction=0.5.
    assert in_val("kitchen", 0.5) and not in_val("garden", 0.5)
    listing = list_folder_pairs(out, val_fraction=0.5)
    assert listing.hashed and listing.problems == []
    assert [Path(image).name for image, _ in listing.splits["val"]] == ["kitchen.png"]


def test_import_command_reports_every_skip(
    split_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    out = tmp_path / "out"
    cfg = import_config(split_export, out)
    assert import_command(cfg) == EXIT_PARTIAL
    report = capsys.readouterr().out
    assert "  train: 3 images\n  val: 1 images\n" in report
    assert "classes (5):\n  0 background\n  1 cat\n  2 dog\n  3 road\n  4 tree\n" in report
    assert f"skipped (5):\n  {split_export / 'train/broken.json'}: cannot read the json" in report
    assert f"{split_export / 'train/horse.json'}: label 'horse' is not in labels.txt" in report
    assert f"python scripts/train.py data=folder data.root={out}" in report
    assert (out / "masks/train/drawn.png").is_file() and (out / "classes.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelme", "out"]


def import_config(source: Path, out: Path):
    """configs/import_data.yaml as the command line ``format=labelme input= output=`` gives it."""
    overrides = ["format=labelme", f"input={source}", f"output={out}", "progress=false"]
    return compose_config("import_data", overrides)


def one_file_export(tmp_path: Path, saved: dict, image: bytes | None = None) -> Path:
    """labels.txt and a single json ``a.json`` (with ``a.png`` when ``image``)."""
    root = tmp_path / "labelme"
    root.mkdir()
    (root / "labels.txt").write_text(LABELS_TXT)
    if image is not None:
        (root / "a.png").write_bytes(image)
    (root / "a.json").write_text(json.dumps(saved))
    return root


def good_file(**changes) -> dict:
    saved = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [shape("cat", [[0, 0], [3, 3]], "rectangle")],
        "imagePath": "a.png",
        "imageData": None,
        "imageHeight": 6,
        "imageWidth": 8,
    }
    return saved | changes


GIF = io.BytesIO()
Image.new("RGB", (8, 6)).save(GIF, format="GIF")


@pytest.mark.parametrize(
    "saved, reason",
    [
        ([1, 2], "not a labelme json (no 'shapes')"),
        (good_file(shapes={"cat": 1}), "'shapes' is not a list"),
        (good_file(shapes=[shape(3, [[0, 0], [1, 1]])]), "shapes[0]: label 3 is not text"),
        (
            good_file(shapes=[shape("cat", [[0, 0], [5, 5]])]),
            "shapes[0] (cat): a polygon has 3 or more points, not 2",
        ),
        (
            good_file(shapes=[shape("cat", [[0, 0], [1, 1], [2, 2]], "rectangle")]),
            "shapes[0] (cat): a rectangle has 2 points, not 3",
        ),
        (
            good_file(shapes=[shape("cat", [[0, 0], [1, "a"], [2, 2]])]),
            "shapes[0]: points must be a list of [x, y] numbers",
        ),
        (
            good_file(shapes=[shape("cat", [[0, 0], [3, 3]], "mask")]),
            "shapes[0]: a mask shape without its mask (a base64 PNG)",
        ),
        (
            good_file(shapes=[shape("cat", [[0, 0]], "points")]),
            "shapes[0] (cat): shape_type 'points' is not one labelme draws into a mask",
        ),
        (
            good_file(shapes=[shape("cat", [[0, 0], [3, 3]], "mask", mask_png(["##", "##"]))]),
            "mask shape (cat): its PNG is 2x2 px, smaller than its box 4x4",
        ),
        (good_file(imagePath=None), "neither imageData nor imagePath"),
        (
            good_file(
                shapes=[shape("ox", [[0, 0], [1, 1], [2, 0]]), shape("elk", [[0, 0]], "point")]
            ),
            "label 'elk', 'ox' are not in labels.txt",
        ),
        (good_file(imageHeight="6"), "imageHeight '6' is not a whole number"),
        (
            good_file(imageData=base64.b64encode(GIF.getvalue()).decode()),
            "imageData holds a GIF image; data=folder reads .bmp .jpeg .jpg .png .tif .tiff",
        ),
        (good_file(imageData="bm90IGFuIGltYWdl"), "imageData is not a base64 image file"),
    ],
)
def test_a_file_labelme_would_refuse_is_skipped_with_its_reason(tmp_path: Path, saved, reason: str):
    root = one_file_export(tmp_path, saved, image_bytes((6, 8), "PNG"))
    # The command keeps nothing when no image imports; the importer itself reports the skip.
    with pytest.raises(DataError, match="no image could be imported"):
        import_command(import_config(root, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    summary = import_labelme(root, tmp_path / "out")
    assert summary.images == {NO_SPLIT: 0}
    assert [(s.path.name, s.reason[: len(reason)]) for s in summary.skipped] == [("a.json", reason)]


@pytest.mark.parametrize(
    "labels, message",
    [
        ("cat\ndog\n", r"labels\.txt: its first label must be _background_"),
        ("__ignore__\n_background_\n", r"labels\.txt: no class besides _background_"),
        ("_background_\ncat\n\ncat\n", r"labels\.txt:4: 'cat' is already a class"),
        ("_background_\ncat\n__ignore__\n", r"labels\.txt:3: '__ignore__' is already a class"),
        ("_background_\n" + "".join(f"c{i}\n" for i in range(255)), "255 classes; masks hold"),
    ],
)
def test_a_bad_labels_txt_is_one_clear_error_and_leaves_nothing(
    tmp_path: Path, labels: str, message: str
):
    root = one_file_export(tmp_path, good_file(), image_bytes((6, 8), "PNG"))
    (root / "labels.txt").write_text(labels)
    with pytest.raises(DataError, match=message):
        import_labelme(root, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelme"]


def test_no_label_anywhere_and_no_labels_txt_is_an_error(tmp_path: Path):
    root = one_file_export(tmp_path, good_file(shapes=[]), image_bytes((6, 8), "PNG"))
    (root / "labels.txt").unlink()
    with pytest.raises(DataError, match="no json holds a labelled shape, and there is no"):
        import_labelme(root, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelme"]


def test_a_label_that_cannot_be_a_class_name_is_an_error(tmp_path: Path):
    cat_one = shape("cat #1", [[0, 0], [3, 3]], "rectangle")
    root = one_file_export(tmp_path, good_file(shapes=[cat_one]), image_bytes((6, 8), "PNG"))
    (root / "labels.txt").unlink()
    with pytest.raises(
        DataError, match="a labelme label cannot be a class name: class name 'cat #1'"
    ):
        import_labelme(root, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelme"]


def test_a_folder_without_json_is_an_error(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos/a.png").write_bytes(image_bytes((6, 8), "PNG"))
    with pytest.raises(DataError, match="photos: no labelme .json file in it or its subfolders"):
        import_labelme(tmp_path / "photos", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_unless_overwrite(flat_export: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        import_labelme(flat_export, out)
    assert (out / "keep.txt").read_text() == "mine"
    import_labelme(flat_export, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "masks/garden.png").is_file()
