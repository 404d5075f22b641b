"""segnet.data.importers.import_coco: a tiny COCO export in COCO's exact format -> the folder
layout; expected masks are built independently with pycocotools' COCO API (annToMask)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from segnet.data.class_file import read_class_file
from segnet.data.classes import IGNORE_INDEX, class_colours, flat_palette
from segnet.data.images import DataError
from segnet.data.importers import import_coco, writer

# Listed out of order on purpose, with sparse ids; 40 has no instance and is still a class.
CATEGORIES = [{"id": 17, "name": "dog"}, {"id": 40, "name": "bird"}, {"id": 3, "name": "cat"}]
EXPECTED_CLASSES = ["background", "cat", "dog", "bird"]
LABEL_OF = {3: 1, 17: 2, 40: 3}
H, W = 10, 12
FIXTURES = Path(__file__).parent / "fixtures"


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[top:bottom, left:right] = 1
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict:
    # COCO's counts list: run lengths over the column-major pixels, starting with a 0-run.
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def annotation(id_: int, image_id: int, category_id: int, segmentation, iscrowd: int = 0):
    return {
        "id": id_,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "iscrowd": iscrowd,
        "area": 1.0,
        "bbox": [0, 0, 1, 1],
    }


def write_json(path: Path, images: list[dict], annotations: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
    )


@pytest.fixture
def coco_export(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    train_images = [
        {"id": 1, "file_name": "mixed.jpg", "height": H, "width": W},
        {"id": 2, "file_name": "rle.png", "height": H, "width": W},
        {"id": 3, "file_name": "empty.jpg", "height": H, "width": W},
        {"id": 4, "file_name": "missing.jpg", "height": H, "width": W},
    ]
    train_annotations = [
        # cat: a polygon covering rows 1..5, columns 1..5.
        annotation(1, 1, 3, [[1, 1, 6, 1, 6, 6, 1, 6]]),
        # dog, uncompressed RLE, overlapping the cat in rows 4..5, columns 4..5.
        annotation(2, 1, 17, uncompressed_rle(box(4, 4, 9, 10))),
        # a second cat over the first: the same category, no conflict.
        annotation(3, 1, 3, [[0, 0, 3, 0, 3, 3, 0, 3]]),
        # a crowd of cats at the bottom right.
        annotation(4, 1, 3, uncompressed_rle(box(7, 9, 10, 12)), iscrowd=1),
        annotation(5, 2, 17, compressed_rle(box(2, 3, 8, 11))),
        annotation(6, 4, 3, [[1, 1, 6, 1, 6, 6]]),
    ]
    write_json(root / "annotations" / "instances_train.json", train_images, train_annotations)
    val_images = [{"id": 10, "file_name": "val.jpg", "height": H, "width": W}]
    write_json(
        root / "annotations" / "instances_val.json",
        val_images,
        [annotation(7, 10, 17, compressed_rle(box(0, 0, 5, 12)))],
    )
    for split, images in (("train", train_images), ("val", val_images)):
        (root / split).mkdir(parents=True)
        for image in images:
            if image["file_name"] != "missing.jpg":
                Image.new("RGB", (W, H), (40, 80, 120)).save(root / split / image["file_name"])
    return root


def expected_mask(annotations: Path | COCO, image_id: int) -> np.ndarray:
    """The rules, stated with COCO's API: a pixel takes its one category's class; two
    categories or any crowd -> 255. Classes follow the categories in ascending id order."""
    coco = annotations if isinstance(annotations, COCO) else COCO(str(annotations))
    label_of = {id_: label for label, id_ in enumerate(sorted(coco.getCatIds()), start=1)}
    image = coco.loadImgs([image_id])[0]
    shape = (image["height"], image["width"])
    per_class = np.zeros((len(label_of) + 1, *shape), dtype=bool)
    crowd = np.zeros(shape, dtype=bool)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        covered = coco.annToMask(ann).astype(bool)
        if ann["iscrowd"]:
            crowd |= covered
        else:
            per_class[label_of[ann["category_id"]]] |= covered
    expected = np.argmax(per_class, axis=0).astype(np.uint8)
    expected[(per_class.sum(axis=0) > 1) | crowd] = IGNORE_INDEX
    return expected


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette() == flat_palette(class_colours(len(EXPECTED_CLASSES)))
        return np.asarray(image)


def test_masks_images_and_classes_follow_the_rules(coco_export: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = import_coco(coco_export, out)

    assert summary.images == {"train": 3, "val": 1}
    assert summary.classes == EXPECTED_CLASSES
    assert [(s.path.name, s.reason) for s in summary.skipped] == [
        ("missing.jpg", "listed in the json, file missing")
    ]
    assert read_class_file(out / "classes.txt") == (
        EXPECTED_CLASSES,
        class_colours(len(EXPECTED_CLASSES)),
    )
    train_json = coco_export / "annotations" / "instances_train.json"
    for image_id, name in ((1, "mixed"), (2, "rle"), (3, "empty")):
        mask = read_mask(out / "masks" / "train" / f"{name}.png")
        np.testing.assert_array_equal(mask, expected_mask(train_json, image_id), err_msg=name)
    mixed = read_mask(out / "masks" / "train" / "mixed.png")
    # The fixture exercises each rule at least once: overlap, crowd, both categories, background.
    assert mixed[4, 4] == IGNORE_INDEX and mixed[8, 10] == IGNORE_INDEX
    assert mixed[0, 0] == 1 and mixed[6, 6] == 2 and mixed[9, 0] == 0
    assert not read_mask(out / "masks" / "train" / "empty.png").any()
    np.testing.assert_array_equal(
        read_mask(out / "masks" / "val" / "val.png"),
        expected_mask(coco_export / "annotations" / "instances_val.json", 10),
    )
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == [
        "empty.jpg",
        "mixed.jpg",
        "rle.png",
    ]
    assert os.path.samefile(out / "images" / "train" / "rle.png", coco_export / "train" / "rle.png")
    assert not (out / "masks" / "train" / "missing.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "out"]


def test_existing_output_is_refused_unless_overwrite(coco_export: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        import_coco(coco_export, out)
    assert (out / "keep.txt").read_text() == "mine"

    import_coco(coco_export, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "classes.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "out"]


def test_a_failure_mid_import_leaves_neither_output_nor_temporary(
    coco_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_write_mask = writer.write_mask
    calls = []

    def fail_at_the_second_image(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("disk full")
        real_write_mask(*args, **kwargs)

    monkeypatch.setattr(writer, "write_mask", fail_at_the_second_image)
    with pytest.raises(OSError, match="disk full"):
        import_coco(coco_export, tmp_path / "out")
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


def test_no_annotation_files_is_one_clear_error(tmp_path: Path):
    with pytest.raises(DataError, match=r"annotations: no instances_\*\.json"):
        import_coco(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_copy_where_a_hard_link_is_impossible(
    coco_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def no_links(source, destination):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(writer.os, "link", no_links)
    import_coco(coco_export, tmp_path / "out")
    copy = tmp_path / "out" / "images" / "train" / "rle.png"
    original = coco_export / "train" / "rle.png"
    assert not os.path.samefile(copy, original)
    assert copy.read_bytes() == original.read_bytes()


def test_a_second_image_with_the_same_stem_is_skipped(coco_export: Path, tmp_path: Path):
    json_path = coco_export / "annotations" / "instances_val.json"
    dataset = json.loads(json_path.read_text())
    dataset["images"].append({"id": 11, "file_name": "val.png", "height": H, "width": W})
    json_path.write_text(json.dumps(dataset))
    Image.new("RGB", (W, H)).save(coco_export / "val" / "val.png")

    summary = import_coco(coco_export, tmp_path / "out")
    assert summary.images["val"] == 1
    assert [(s.path.name, s.reason) for s in summary.skipped][-1] == (
        "val.png",
        "a second image named val",
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["categories"].pop(), "categories differ from those of"),
        (lambda d: d["images"][0].pop("height"), "image 10 lacks height"),
        (lambda d: d["annotations"][0].update(category_id=99), "category 99"),
        (lambda d: d["annotations"][0].update(segmentation={"counts": 5}), "cannot decode"),
    ],
)
def test_bad_annotations_are_one_clear_error_and_leave_nothing(
    coco_export: Path, tmp_path: Path, change, message
):
    json_path = coco_export / "annotations" / "instances_val.json"
    dataset = json.loads(json_path.read_text())
    change(dataset)
    json_path.write_text(json.dumps(dataset))
    with pytest.raises(DataError, match=message):
        import_coco(coco_export, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


def random_instance(rng: np.random.Generator, height: int, width: int) -> list | dict:
    """Polygons (partly outside the frame, coordinates like 12.3 that sit on rounding edges)
    or RLE of speckled blobs that wrap from one column into the next."""
    kind = rng.integers(3)
    if kind == 0:
        vertices = rng.integers(3, 12)
        xs = rng.uniform(-5, width + 5, vertices).round(1)
        ys = rng.uniform(-5, height + 5, vertices).round(1)
        return [np.stack([xs, ys], 1).ravel().tolist()]
    mask = np.zeros((height, width), dtype=np.uint8)
    top, left = rng.integers(height), rng.integers(width)
    bottom, right = top + rng.integers(1, height + 1), left + rng.integers(1, width + 1)
    mask[top:bottom, left:right] = rng.random((height, width))[top:bottom, left:right] < 0.7
    return uncompressed_rle(mask) if kind == 1 else compressed_rle(mask)


def test_random_overlapping_instances_match_coco_api_pixel_for_pixel(tmp_path: Path):
    rng = np.random.default_rng(7)
    categories = [{"id": id_, "name": f"c{id_}"} for id_ in (2, 5, 9, 11, 23, 40, 41, 77, 90)]
    images, annotations = [], []
    for image_id, (height, width) in enumerate([(37, 53), (64, 48), (1, 30), (50, 1)] * 5):
        images.append(
            {"id": image_id, "file_name": f"{image_id}.jpg", "height": height, "width": width}
        )
        for _ in range(rng.integers(1, 12)):
            segmentation = random_instance(rng, height, width)
            category = categories[rng.integers(len(categories))]["id"]
            crowd = int(rng.random() < 0.1)
            annotations.append(
                annotation(len(annotations), image_id, category, segmentation, crowd)
            )
    root = tmp_path / "coco"
    json_path = root / "annotations" / "instances_train.json"
    json_path.parent.mkdir(parents=True)
    json_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (root / "train").mkdir()
    for image in images:
        (root / "train" / image["file_name"]).touch()

    import_coco(root, tmp_path / "out")

    for image in images:
        with Image.open(tmp_path / "out" / "masks" / "train" / f"{image['id']}.png") as mask:
            np.testing.assert_array_equal(
                np.asarray(mask), expected_mask(json_path, image["id"]), err_msg=str(image)
            )


def test_real_coco_masks_import_as_coco_api_reads_them(tmp_path: Path):
    # COCO's own demo results (734 real val2014 masks over 99 images, fixture README) as the
    # annotations of an export: overlaps of different categories are frequent there.
    results = json.loads(
        (FIXTURES / "coco-fakesegm" / "instances_val2014_fakesegm100_results.json").read_text()
    )
    sizes = {r["image_id"]: r["segmentation"]["size"] for r in results}
    images = [
        {"id": id_, "file_name": f"{id_:012d}.jpg", "height": h, "width": w}
        for id_, (h, w) in sorted(sizes.items())
    ]
    categories = [
        {"id": id_, "name": f"c{id_}"} for id_ in sorted({r["category_id"] for r in results})
    ]
    annotations = [
        annotation(i, r["image_id"], r["category_id"], r["segmentation"])
        for i, r in enumerate(results)
    ]
    root = tmp_path / "coco"
    json_path = root / "annotations" / "instances_val.json"
    json_path.parent.mkdir(parents=True)
    json_path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (root / "val").mkdir()
    for image in images:
        (root / "val" / image["file_name"]).touch()

    summary = import_coco(root, tmp_path / "out")

    assert summary.images == {"val": 99} and not summary.skipped
    coco = COCO(str(json_path))
    ignored = 0
    for image in images:
        with Image.open(tmp_path / "out" / "masks" / "val" / f"{image['id']:012d}.png") as mask:
            expected = expected_mask(coco, image["id"])
            np.testing.assert_array_equal(np.asarray(mask), expected, err_msg=str(image))
        ignored += int((expected == IGNORE_INDEX).sum())
    assert ignored > 0  # the overlap rule is exercised on real masks
