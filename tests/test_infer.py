"""scripts/infer.py and segnet.tasks.infer: outputs, odd and broken inputs, resume, TTA, windows,
names that never collide, full disks, interruptions, output folders holding the inputs."""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image, ImageOps

from segnet.data.classes import voc_palette
from segnet.tasks import infer as infer_module
from segnet.tasks.cli import Terminated, guarded
from segnet.tasks.infer import infer, infer_command
from segnet.tasks.infer_inputs import find_inputs, plan_jobs, recorded_source

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


def run_infer(*overrides: str, cwd: Path = REPO, **options) -> subprocess.CompletedProcess:
    """scripts/infer.py with the shipped config (no Hydra overrides of the test's own)."""
    command = [sys.executable, str(REPO / "scripts" / "infer.py"), *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, **options)


def config(checkpoint: Path, source: Path, out: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "infer",
            [f"ckpt_path={checkpoint}", f"input={source}", f"output_dir={out}", "num_workers=0"]
            + list(overrides),
        )


def infer_in_process(checkpoint: Path, source: Path, out: Path, *overrides: str):
    return infer(config(checkpoint, source, out, *overrides))


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


@pytest.fixture
def open_tmp():
    """A folder any user may enter (pytest's tmp_path is private to its owner); removed after."""
    folder = Path(tempfile.mkdtemp(prefix="segnet-infer-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def unprivileged() -> dict:
    """subprocess options that run as nobody, where this process is root and nobody may run
    this interpreter (a virtualenv under /root may not be); else none (the file set of the
    working directory is still checked)."""
    if os.geteuid() != 0:
        return {}
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    try:
        subprocess.run([sys.executable, "-c", ""], check=True, capture_output=True, **user)
    except (OSError, subprocess.CalledProcessError):
        return {}
    return user


def test_every_kind_of_input_is_segmented_at_its_size_and_bad_ones_reported(checkpoint, open_tmp):
    source, out, cwd = open_tmp / "in", open_tmp / "out", open_tmp / "cwd"
    good = write_inputs(source)
    assert len(good) == 12
    # The run starts in a read-only working directory, as an unprivileged user where the
    # tests run as root (root ignores permission bits): nothing may be written outside out/.
    cwd.mkdir(mode=0o555)
    out.mkdir()
    user = unprivileged()
    if user:
        os.chown(out, NOBODY, NOBODY)
    ckpt = open_tmp / "tiny.ckpt"
    os.link(checkpoint, ckpt)
    args = [f"ckpt_path={ckpt}", f"input={source}", f"output_dir={out}"]
    args += ["max_pixels=20000", "window=64", "batch_size=2"]
    done = run_infer(*args, cwd=cwd, **user)
    assert done.returncode == 1, done.stderr
    assert list(cwd.iterdir()) == []
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
    again = infer_in_process(ckpt, source, out, *args[3:])
    assert (again.written, len(again.skipped), again.existing) == (1, 4, 11)
    assert (out / "gray.png").is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "gray.png")


def test_an_input_matching_nothing_is_one_clear_error(checkpoint, tmp_path, capsys):
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    for pattern, message in [
        (f"{tmp_path}/*.png", f"input '{tmp_path}/*.png' matches no image files"),
        (f"{tmp_path}/x.png", f"input '{tmp_path}/x.png' does not exist"),
        (f"{tmp_path}/broken.jpg", f"input '{tmp_path}/broken.jpg' is a broken link (to "),
        (f"{tmp_path}/*.jpg", f"{tmp_path}/broken.jpg: broken link (to {tmp_path}/gone.jpg)"),
    ]:
        assert guarded(infer_command, config(checkpoint, pattern, tmp_path / "out")) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


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


def test_inputs_from_a_glob_keep_their_folders_and_follow_symlinked_folders(tmp_path):
    for rel in ["x/1.jpg", "x/deep/2.PNG", "y/3.jpg", "x/.hidden/4.jpg", "x/skip.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "x" / "linked").symlink_to(tmp_path / "y")  # a folder elsewhere
    (tmp_path / "x" / "deep" / "loop").symlink_to(tmp_path / "x")  # back to an ancestor
    (tmp_path / "x" / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("a symlink loop was followed forever"))
    signal.alarm(60)
    try:
        found = find_inputs(f"{tmp_path}/x/**/*")
        folder = find_inputs(str(tmp_path / "x"))
    finally:
        signal.alarm(0)
    # glob's own rules: "**" and "*" skip names starting with a dot; a folder takes them all
    assert [str(rel) for _, rel in found.files] == ["1.jpg", "deep/2.PNG", "linked/3.jpg"]
    assert [str(rel) for _, rel in folder.files] == [
        ".hidden/4.jpg",
        "1.jpg",
        "deep/2.PNG",
        "linked/3.jpg",
    ]
    for inputs in (found, folder):
        assert inputs.unusable == [
            (f"{tmp_path}/x/broken.jpg", f"broken link (to {tmp_path}/gone.jpg)")
        ]
        assert inputs.notes == [f"{tmp_path}/x/deep/loop links back to {tmp_path}/x: not followed"]
    jobs = plan_jobs(folder.files, tmp_path / "o", save_probs=True)
    assert jobs[2].mask == tmp_path / "o/deep/2.png"
    assert jobs[2].overlay == tmp_path / "o/overlays/deep/2.jpg"
    assert jobs[2].probs == tmp_path / "o/probs/deep/2.npy"
    with pytest.raises(FileNotFoundError, match="matches no image files"):
        find_inputs(str(tmp_path / "y" / "*.png"))


TRICKY_NAMES = ["a", "a.jpg", "a.png", "a.jpg.png", "a.png.png", "a.jpg~2.png", "A.PNG", "a.tif"]
TRICKY_NAMES += ["overlays", "probs", "a.jpg~2", "b.jpeg", ".png", "a.npy.png"]


def tricky_name_sets(count: int, seed: int = 0):
    """Random sets of relative paths built from names that collide once extensions are
    stripped or added, folders named like files included; each set a possible folder tree."""
    rng = random.Random(seed)
    while count:
        rels = set()
        for _ in range(rng.randint(1, 10)):
            folders = [rng.choice([*TRICKY_NAMES, "in"]) for _ in range(rng.choice([0, 0, 1, 2]))]
            rels.add("/".join([*folders, rng.choice(TRICKY_NAMES[1:8])]))
        files = sorted(rels)
        if any(other.startswith(f"{rel}/") for rel in files for other in files):
            continue  # a file cannot also be a folder
        count -= 1
        yield [Path(rel) for rel in files]


def test_output_names_are_one_to_one_and_never_an_input_for_any_set_of_inputs(tmp_path):
    for rels in tricky_name_sets(400):  # the folder-needed case failed first at set 155
        for out, inputs in [
            (tmp_path / "out", tmp_path / "in"),  # apart
            (tmp_path / "in", tmp_path / "in"),  # output_dir is the input folder
            (tmp_path, tmp_path / "in"),  # output_dir above it
            (tmp_path / "in" / "probs", tmp_path / "in"),  # or inside it
        ]:
            jobs = plan_jobs([(inputs / rel, rel) for rel in rels], out, save_probs=True)
            written = [path for job in jobs for path in job.outputs]
            assert len(set(written)) == len(written), rels
            sources = {inputs / rel for rel in rels}
            assert not sources & set(written), rels
            # no output where another output or an input needs a folder
            folders = {parent for path in [*written, *sources] for parent in path.parents}
            assert not folders & set(written), rels
    plain = plan_jobs([(tmp_path / "in/d/photo.jpg", Path("d/photo.jpg"))], tmp_path, False)
    assert plain[0].mask == tmp_path / "d/photo.png"  # an unambiguous name loses its extension


def test_inputs_whose_names_collide_without_extensions_each_get_their_own_mask(
    checkpoint, tmp_path
):
    sizes = {"a.jpg": (50, 40), "a.png": (20, 30), "a.jpg.png": (33, 22)}  # (width, height)
    rng = np.random.default_rng(4)
    (tmp_path / "in").mkdir()
    for name, (width, height) in sizes.items():
        photo(rng, height, width).save(tmp_path / "in" / name)
    summary = infer_in_process(checkpoint, tmp_path / "in", tmp_path / "out")
    assert (summary.written, summary.skipped) == (3, [])
    masks = sorted((tmp_path / "out").glob("*.png"))
    assert len(masks) == 3
    for mask in masks:
        with Image.open(mask) as image:
            assert image.size == sizes[recorded_source(mask)], mask.name
    again = infer_in_process(checkpoint, tmp_path / "in", tmp_path / "out")
    assert (again.written, again.existing) == (0, 3)


_FULL_DISK = """
import sys
from hydra import compose, initialize_config_dir
from segnet.tasks.cli import guarded
from segnet.tasks.infer import infer_command
configs, *runs = sys.argv[1:]
for run in runs:
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        cfg = compose("infer", overrides=run.split())
    print("status", guarded(infer_command, cfg), flush=True)
"""


def test_a_full_disk_skips_the_images_that_do_not_fit_and_leaves_no_partial_file(
    checkpoint, tmp_path
):
    """RLIMIT_FSIZE with SIGXFSZ ignored makes writes beyond the limit fail with EFBIG, as a full
    disk fails them with ENOSPC: Pillow's JPEG encoder then returned normally after a short
    write (a truncated overlay was renamed into place), and the sparse memory-mapped
    probabilities of a windowed image died of SIGBUS on a real full disk."""
    limit = 16 * 1024
    rng = np.random.default_rng(5)
    source = tmp_path / "in"
    source.mkdir()
    for i in range(2):  # every file of these fits: mask, overlay, probabilities (11 kB)
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(source / f"small{i}.png")
    photo(rng, 200, 200).save(source / "noise.jpg", quality=95)  # overlay 34 kB, probs 1.7 MB
    stale = tmp_path / "probs_out" / "probs" / ".noise.npy.4194304-0123abcd.tmp"  # pid > max
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run")
    common = f"ckpt_path={checkpoint} input={source} num_workers=0"
    runs = [
        f"{common} output_dir={tmp_path / 'out'}",
        f"{common} output_dir={tmp_path / 'probs_out'} save_probs=true max_pixels=1000 window=48",
    ]

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(REPO / "configs"), *runs],
        capture_output=True,
        text=True,
        preexec_fn=full_disk,
    )
    assert done.stdout.count("status 1") == 2, done.stdout + done.stderr
    assert done.stdout.count("written 2, skipped 1, existing 0") == 2
    report = f"  skipped {source / 'noise.jpg'}: cannot write outputs: "
    assert [line.startswith(report) for line in done.stderr.splitlines()].count(True) == 2
    assert "File too large" in done.stderr
    for out, names in [(tmp_path / "out", ["small0", "small1"]), (tmp_path / "probs_out", None)]:
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        expected = [f"overlays/small{i}.jpg" for i in range(2)]
        if names is None:
            expected += [f"probs/small{i}.npy" for i in range(2)]
        assert files == sorted(expected + [f"small{i}.png" for i in range(2)])  # whole sets only
        for i in range(2):
            with Image.open(out / "overlays" / f"small{i}.jpg") as overlay_picture:
                overlay_picture.load()  # complete, not truncated
    assert np.load(tmp_path / "probs_out/probs/small1.npy").shape == (21, 16, 16)


def test_ctrl_c_prints_the_summary_so_far_and_leaves_only_whole_outputs(checkpoint, tmp_path):
    rng = np.random.default_rng(6)
    (tmp_path / "in").mkdir()
    for i in range(40):
        photo(rng, 128, 128).save(tmp_path / "in" / f"{i:02d}.png")
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts" / "infer.py"), f"ckpt_path={checkpoint}"]
    command += [f"input={tmp_path / 'in'}", f"output_dir={out}", "batch_size=1"]
    # Its own session: Ctrl-C in a terminal reaches the whole group, DataLoader workers too.
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    written = int(stdout.split("written ")[1].split(",")[0])
    assert "(interrupted: finished images are kept" in stdout and 1 <= written < 40
    assert "interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr
    masks = sorted(p.stem for p in out.glob("*.png"))
    assert len(masks) == written  # counted = there
    assert sorted(p.stem for p in out.glob("overlays/*.jpg")) == masks  # complete pairs
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_sigterm_stops_with_143_after_the_writes_under_way(
    checkpoint, tmp_path, monkeypatch, capsys
):
    rng = np.random.default_rng(7)
    (tmp_path / "in").mkdir()
    for i in range(6):
        photo(rng, 40, 40 + i).save(tmp_path / "in" / f"{i}.png")  # sizes differ: one per batch
    out, predict, calls = tmp_path / "out", infer_module.predict_streaming, []

    def stopped_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            while not list(out.glob("*.png")):  # let a write finish first
                time.sleep(0.01)
            raise Terminated()
        return predict(*args, **kwargs)

    monkeypatch.setattr(infer_module, "predict_streaming", stopped_at_the_third)
    cfg = config(checkpoint, tmp_path / "in", out, "save_probs=true")
    assert guarded(infer_command, cfg) == 143
    report = capsys.readouterr()
    written = int(report.out.split("written ")[1].split(",")[0])
    assert 1 <= written <= 2 and "(interrupted" in report.out
    assert "stopped (SIGTERM)" in report.err
    masks = sorted(p.stem for p in out.glob("*.png"))
    assert len(masks) == written
    assert sorted(p.stem for p in out.glob("overlays/*.jpg")) == masks
    assert sorted(p.stem for p in out.glob("probs/*.npy")) == masks
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_an_unusable_output_folder_is_one_line_before_any_work(checkpoint, tmp_path, capsys):
    photo(np.random.default_rng(8), 8, 8).save(tmp_path / "x.png")
    (tmp_path / "file").write_text("x")
    (tmp_path / "out" / "overlays").parent.mkdir()
    (tmp_path / "out" / "overlays").write_text("x")
    for out, problem in [
        (tmp_path / "file" / "sub", f"{tmp_path / 'file'} is a file, not a folder"),
        (tmp_path / "out", f"{tmp_path / 'out' / 'overlays'} is a file, not a folder"),
    ]:
        assert guarded(infer_command, config(checkpoint, tmp_path / "x.png", out)) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: output_dir=") and problem in err and err.count("\n") == 1


def test_a_bad_model_file_is_one_line_and_creates_no_output_folder(tmp_path, capsys):
    photo(np.random.default_rng(8), 8, 8).save(tmp_path / "x.png")
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    assert (
        guarded(infer_command, config(tmp_path / "bad.ckpt", tmp_path / "x.png", tmp_path / "out"))
        == 2
    )
    assert "bad.ckpt is not a PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_alpha_is_one_line_before_anything_is_read_or_written(tmp_path, capsys):
    photo(np.random.default_rng(8), 8, 8).save(tmp_path / "x.png")
    missing = tmp_path / "no.ckpt"  # never read: alpha is checked first
    cfg = config(missing, tmp_path / "x.png", tmp_path / "out", "alpha=2")
    assert guarded(infer_command, cfg) == 2
    assert (
        capsys.readouterr().err
        == "error: alpha=2 must be in [0, 1] (the overlay's colour weight)\n"
    )
    assert not (tmp_path / "out").exists()


def test_output_dir_may_be_the_input_folder_or_above_it(checkpoint, tmp_path):
    photos, rng = tmp_path / "photos", np.random.default_rng(9)
    (photos / "sub").mkdir(parents=True)
    sizes = {"cat.jpg": (50, 40), "cat.png": (30, 20), "dog.jpg": (24, 36), "sub/x.png": (9, 7)}
    for name, (width, height) in sizes.items():
        photo(rng, height, width).save(photos / name)
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    for out in (photos, tmp_path):
        summary = infer_in_process(checkpoint, photos, out)
        assert (summary.written, summary.skipped) == (4, [])
        assert {p: p.read_bytes() for p in before} == before  # no input replaced
        made = {}
        for mask in out.rglob("*.png"):
            if (out == photos or not mask.is_relative_to(photos)) and recorded_source(mask):
                with Image.open(mask) as image:
                    made[recorded_source(mask)] = image.size
        assert made == sizes
        again = infer_in_process(checkpoint, photos, out)  # its own outputs are not inputs
        assert (again.written, again.existing, again.skipped) == (0, 4, [])


def test_frames_beyond_the_first_symlinked_folders_and_broken_links_are_not_silent(
    checkpoint, tmp_path
):
    source, elsewhere, rng = tmp_path / "in", tmp_path / "elsewhere", np.random.default_rng(10)
    source.mkdir()
    elsewhere.mkdir()
    frames = [photo(rng, 12, 16) for _ in range(3)]
    frames[0].save(source / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(source / "pages.tif", save_all=True, append_images=frames[1:2])
    photo(rng, 10, 10).save(elsewhere / "linked.png")
    (source / "shared").symlink_to(elsewhere)
    (source / "shared" / "again").symlink_to(source)  # a loop through two links
    (source / "broken.jpg").symlink_to(source / "deleted.jpg")
    summary = infer_in_process(checkpoint, source, tmp_path / "out")
    assert summary.written == 3 and (tmp_path / "out/shared/linked.png").is_file()
    assert summary.skipped == [
        (str(source / "broken.jpg"), f"broken link (to {source}/deleted.jpg)")
    ]
    assert f"{source / 'anim.gif'}: 3 frames, only the first was segmented" in summary.notes
    assert f"{source / 'pages.tif'}: 2 frames, only the first was segmented" in summary.notes
    assert f"{source}/shared/again links back to {source}: not followed" in summary.notes


def test_overwrite_true_rewrites_and_a_file_infer_did_not_write_is_never_counted(
    checkpoint, tmp_path
):
    rng = np.random.default_rng(11)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        photo(rng, 20, 20).save(tmp_path / "in" / name)
    out = tmp_path / "out"
    assert infer_in_process(checkpoint, tmp_path / "in", out).written == 2
    foreign = Image.new("P", (3, 3))  # someone else's picture under a.png's mask name
    foreign.save(out / "a.png")
    stamp = (out / "b.png").stat().st_mtime_ns
    kept = infer_in_process(checkpoint, tmp_path / "in", out)
    assert (kept.written, kept.existing) == (0, 1)
    assert kept.skipped == [
        (
            str(tmp_path / "in/a.png"),
            f"{out / 'a.png'} exists and is not infer's output for this image "
            "(overwrite=true replaces it)",
        )
    ]
    assert Image.open(out / "a.png").size == (3, 3)  # not replaced without overwrite=true
    redone = infer_in_process(checkpoint, tmp_path / "in", out, "overwrite=true")
    assert (redone.written, redone.existing, redone.skipped) == (2, 0, [])
    assert Image.open(out / "a.png").size == (20, 20) and recorded_source(out / "a.png") == "a.png"
    assert (out / "b.png").stat().st_mtime_ns != stamp
