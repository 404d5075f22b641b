"""scripts/infer.py and segnet.tasks.infer: outputs, odd and broken inputs, resume, TTA, windows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image, ImageOps

from segnet.data.voc import voc_palette
from segnet.tasks.infer import _atomic, find_inputs, infer, plan_jobs

REPO = Path(__file__).resolve().parents[1]


def run_infer(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "infer.py"), *overrides, "hydra.output_subdir=null"]
        + ["hydra.run.dir=.", "hydra/job_logging=none", "hydra/hydra_logging=none"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def infer_in_process(checkpoint: Path, source: Path, out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            "infer",
            [f"ckpt_path={checkpoint}", f"input={source}", f"output_dir={out}", "num_workers=0"]
            + list(overrides),
        )
    return infer(cfg)


def labels_of(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def photo(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Every kind of input; returns {relative path: displayed (width, height)} of good ones."""
    rng = np.random.default_rng(0)
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    photo(rng, 50, 70).save(folder / "a" / "photo.jpg")
    photo(rng, 50, 70).save(folder / "b" / "photo.jpg")  # same name, other folder
    photo(rng, 33, 45).save(folder / "a" / "photo.png")  # same stem as a/photo.jpg
    photo(rng, 40, 30).convert("L").save(folder / "gray.png")
    photo(rng, 40, 30).convert("RGBA").save(folder / "rgba.png")
    photo(rng, 40, 30).convert("CMYK").save(folder / "cmyk.jpg")
    photo(rng, 40, 30).convert("P").save(folder / "palette.png")
    wide = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(wide).save(folder / "gray16.png")
    photo(rng, 1, 1).save(folder / "one_pixel.png")
    photo(rng, 200, 300).save(folder / "large.png")  # beyond max_pixels: sliding windows
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 24 high, shown rotated by 90 degrees: 24 x 40
    photo(rng, 24, 40).save(folder / "rotated.jpg", exif=exif)
    with Image.open(folder / "rotated.jpg") as rotated:
        ImageOps.exif_transpose(rotated).save(folder / "upright.png")
    # Broken files: not an image, empty, truncated, random bytes behind an image extension.
    (folder / "notes.jpg").write_text("shopping list")
    (folder / "empty.png").write_bytes(b"")
    data = (folder / "a" / "photo.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "noise.gif").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (folder / "readme.txt").write_text("not an input: no image extension")
    good = {}
    for path in sorted(folder.rglob("*")):
        try:
            with Image.open(path) as image:
                image.load()
                good[str(path.relative_to(folder))] = ImageOps.exif_transpose(image).size
        except Exception:
            continue
    return good


def test_every_kind_of_input_is_segmented_at_its_size_and_bad_ones_reported(checkpoint, tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    good = write_inputs(source)
    assert len(good) == 12
    args = [f"ckpt_path={checkpoint}", f"input={source}", f"output_dir={out}"]
    args += ["max_pixels=20000", "window=64", "batch_size=2"]
    done = run_infer(*args)
    assert done.returncode == 1, done.stderr
    report = done.stdout + done.stderr
    assert "written 12, skipped 4, existing 0" in report
    for name, reason in [
        ("notes.jpg", "cannot decode"),
        ("empty.png", "file is empty"),
        ("truncated.jpg", "truncated"),
        ("noise.gif", "cannot decode"),
    ]:
        assert f"skipped {source / name}: " in report and reason in report.split(name)[-1]
    names = {"a/photo.jpg": "a/photo.jpg", "a/photo.png": "a/photo.png"}  # stems clash
    for rel, size in good.items():
        stem = names.get(rel, str(Path(rel).with_suffix("")))
        with Image.open(out / f"{stem}.png") as mask:
            assert mask.size == size and mask.mode == "P", rel
            assert mask.getpalette()[:768] == voc_palette()
            assert np.asarray(mask).max() < 21
        with Image.open(out / "overlays" / f"{stem}.jpg") as picture:
            assert picture.format == "JPEG" and picture.height >= size[1]
    assert np.array_equal(labels_of(out / "rotated.png"), labels_of(out / "upright.png"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporaries left

    # Rerun: everything done is skipped (untouched); a deleted output is made again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    (out / "gray.png").unlink()
    again = run_infer(*args)
    assert again.returncode == 1
    assert "written 1, skipped 4, existing 11" in again.stdout
    assert (out / "gray.png").is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "gray.png")


def test_an_input_matching_nothing_is_one_clear_error(checkpoint, tmp_path):
    done = run_infer(f"ckpt_path={checkpoint}", f"input={tmp_path}/*.jpg", f"output_dir={tmp_path}")
    assert done.returncode == 2
    assert f"input '{tmp_path}/*.jpg' matches no image files" in done.stderr
    assert "Traceback" not in done.stderr


def test_flip_tta_on_a_symmetric_image_gives_a_symmetric_prediction(checkpoint, tmp_path):
    rng = np.random.default_rng(1)
    half = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1)).save(tmp_path / "sym.png")
    infer_in_process(checkpoint, tmp_path / "sym.png", tmp_path / "plain")
    infer_in_process(checkpoint, tmp_path / "sym.png", tmp_path / "flip", "tta.flip=true")
    plain, flipped = labels_of(tmp_path / "plain/sym.png"), labels_of(tmp_path / "flip/sym.png")
    assert not np.array_equal(plain, plain[:, ::-1])  # the model alone is not symmetric
    assert np.array_equal(flipped, flipped[:, ::-1])


def test_window_covering_the_image_equals_whole_image_and_probs_are_saved(checkpoint, tmp_path):
    photo(np.random.default_rng(2), 70, 90).save(tmp_path / "image.png")
    source = tmp_path / "image.png"
    infer_in_process(checkpoint, source, tmp_path / "whole", "window=null", "save_probs=true")
    infer_in_process(checkpoint, source, tmp_path / "win", "window=128", "max_pixels=0")
    whole = labels_of(tmp_path / "whole/image.png")
    assert np.array_equal(whole, labels_of(tmp_path / "win/image.png"))
    probs = np.load(tmp_path / "whole/probs/image.npy")
    assert probs.shape == (21, 70, 90) and probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=0.02)
    # float16 rounding may tie the top two classes on a rare pixel
    assert (probs.argmax(0) == whole).mean() > 0.99


def test_probabilities_of_a_windowed_image_stream_to_disk(checkpoint, tmp_path):
    photo(np.random.default_rng(3), 150, 110).save(tmp_path / "big.png")
    args = ["window=48", "max_pixels=1000", "save_probs=true"]
    summary = infer_in_process(checkpoint, tmp_path / "big.png", tmp_path / "out", *args)
    assert summary.written == 1 and not summary.skipped
    probs = np.load(tmp_path / "out/probs/big.npy")
    assert probs.shape == (21, 150, 110)
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=0.02)
    assert (probs.argmax(0) == labels_of(tmp_path / "out/big.png")).mean() > 0.99


def test_inputs_from_a_glob_keep_their_folders_and_skip_the_output_folder(tmp_path):
    for rel in ["x/1.jpg", "x/deep/2.PNG", "y/3.jpg", "x/out/old.jpg", "x/skip.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = find_inputs(f"{tmp_path}/x/**/*", exclude=tmp_path / "x" / "out")
    assert [str(rel) for _, rel in found] == ["1.jpg", "deep/2.PNG"]
    folder = find_inputs(str(tmp_path / "x"))
    assert [str(rel) for _, rel in folder] == ["1.jpg", "deep/2.PNG", "out/old.jpg"]
    jobs = plan_jobs(folder, tmp_path / "o", save_probs=True)
    assert jobs[1].mask == tmp_path / "o/deep/2.png"
    assert jobs[1].overlay == tmp_path / "o/overlays/deep/2.jpg"
    assert jobs[1].probs == tmp_path / "o/probs/deep/2.npy"
    with pytest.raises(FileNotFoundError, match="matches no image files"):
        find_inputs(str(tmp_path / "y" / "*.png"))


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary(tmp_path):
    target = tmp_path / "deep" / "mask.png"

    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half a png")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic(target, crash)
    assert list(tmp_path.rglob("*")) == [tmp_path / "deep"]
    _atomic(target, lambda tmp: tmp.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and list(target.parent.iterdir()) == [target]
