"""scripts/infer.py and segnet.tasks.infer: which files are inputs (globs, folders, symlinks,
broken links, frames), and output names that never collide, with each other or with an input,
wherever output_dir is."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import infer_config, infer_in_process, photo
from PIL import Image

from segnet.tasks.cli import guarded
from segnet.tasks.infer import infer_command
from segnet.tasks.infer_inputs import find_inputs, plan_jobs, recorded_source


def test_an_input_matching_nothing_is_one_clear_error(checkpoint, tmp_path, capsys):
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    for pattern, message in [
        (f"{tmp_path}/*.png", f"input '{tmp_path}/*.png' matches no image files"),
        (f"{tmp_path}/x.png", f"input '{tmp_path}/x.png' does not exist"),
        (f"{tmp_path}/broken.jpg", f"input '{tmp_path}/broken.jpg' is a broken link (to "),
        (f"{tmp_path}/*.jpg", f"{tmp_path}/broken.jpg: broken link (to {tmp_path}/gone.jpg)"),
    ]:
        assert guarded(infer_command, infer_config(checkpoint, pattern, tmp_path / "out")) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


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
