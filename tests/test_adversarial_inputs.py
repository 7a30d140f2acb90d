"""Crafted inputs, kept in one place: symlinks out of the dataset and looped, a relative file
symlink, a 16-bit soft mask, a camera JPEG turned by its EXIF tag, and a huge ``--n``.

Each test reproduces a case of issue 15 that went wrong before: the symlink was hard-linked and
dangled in the output, ``info`` walked ``/`` through a folder link, a 16-bit soft mask was clipped
into a binary one, a rotated JPEG was a "size mismatch", and ``--n 9999999`` planned for hours.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import layout_fixtures as fx
import numpy as np
import pytest
from file_traps import damage
from PIL import Image, ImageOps
from typer.testing import CliRunner

from lesionaug.cli import app
from lesionaug.dataset.files import mask_pixel_problem, probe_file, read_image, read_mask
from lesionaug.dataset.index import load_dataset
from lesionaug.output import disk_space
from lesionaug.output.folder import link_originals, list_originals
from lesionaug.plan import jobs as plan_jobs


def invoke(*args) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    lines = result.stdout.strip().splitlines()
    envelope = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return result.exit_code, envelope, result.stderr


def paired(root: Path, n: int = 6) -> Path:
    """A ``write_paired`` dataset (images/ and masks/ in lesions/lesions/); returns that base folder."""
    fx.write_paired(root, n=n, labels=True)
    return root / "lesions" / "lesions"


# ---- symlinks -------------------------------------------------------------------------------------


def test_a_relative_file_symlink_is_placed_as_its_target_not_as_a_dangling_link(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "x.jpg").write_bytes(b"the real bytes")
    data = tmp_path / "data" / "isic"
    (data / "images").mkdir(parents=True)
    os.symlink("../../../pool/x.jpg", data / "images" / "x.jpg")  # relative: right only at this depth
    out = tmp_path / "out" / "one" / "more" / "level"
    rels = list_originals(data, exclude=set())
    assert rels == ["images/x.jpg"]
    items = link_originals([(data / rel, rel) for rel in rels], out)
    placed = out / "images" / "x.jpg"
    assert not placed.is_symlink() and placed.read_bytes() == b"the real bytes"
    assert os.path.samefile(placed, pool / "x.jpg")  # a hard link to the target itself
    assert items[0]["size"] == len(b"the real bytes")
    # An output a broken run left with the dangling link is repaired by the next run.
    placed.unlink()
    os.symlink("../../../pool/x.jpg", placed)
    assert not placed.exists()
    link_originals([(data / rel, rel) for rel in rels], out)
    assert not placed.is_symlink() and placed.read_bytes() == b"the real bytes"


def test_a_folder_symlink_out_of_the_dataset_is_reported_and_not_followed(tmp_path):
    base = paired(tmp_path / "ds")
    outside = tmp_path / "elsewhere"
    fx.write_image(outside / "stranger.jpg", seed=9)
    (outside / "deeper").mkdir()
    fx.write_image(outside / "deeper" / "other.jpg", seed=8)
    os.symlink(outside, base / "images" / "escape")
    os.symlink("/", base / "masks" / "root")  # the case that made `info` walk /proc and /sys
    started = time.perf_counter()
    idx = load_dataset(tmp_path / "ds")
    assert time.perf_counter() - started < 10
    outside_problems = sorted(Path(p.path).name for p in idx.problems if p.code == "symlink_outside")
    assert outside_problems == ["escape", "root"]
    assert idx.damaged == []
    assert {s.id for s in idx.samples} == {f"img{k:02d}" for k in range(6)}  # nothing from outside
    idx.check()  # a reported problem, not a damaged file
    # info says so and exits 0; --strict refuses.
    code, envelope, _ = invoke("info", tmp_path / "ds", "--json", "-q")
    assert code == 0
    assert sorted(p["code"] for p in envelope["data"]["problems"]) == ["symlink_outside", "symlink_outside"]
    code, envelope, _ = invoke("info", tmp_path / "ds", "--strict", "--json", "-q")
    assert code == 3 and "symlink_outside" in envelope["errors"][0]["message"]
    # The originals an augmented copy would link skip them too.
    rels = list_originals(tmp_path / "ds", exclude=set())
    assert not any(part in ("escape", "root") for rel in rels for part in rel.split("/"))
    assert len(rels) == 13  # 6 images, 6 masks, labels.csv


def test_a_folder_symlink_loop_is_a_reported_problem_not_a_fatal_error(tmp_path):
    fx.write_paired(tmp_path, n=3)
    loop = damage(tmp_path, "symlink_loop")  # images/again -> ..
    self_loop = tmp_path / "lesions" / "lesions" / "masks" / "itself"
    os.symlink("itself", self_loop)  # a link to itself: ELOOP when followed
    idx = load_dataset(tmp_path)
    assert sorted((p.code, Path(p.path).name) for p in idx.problems) == [
        ("symlink_loop", "again"),
        ("symlink_loop", "itself"),
    ]
    assert str(loop) in {p.path for p in idx.problems}
    assert idx.damaged == [] and len(idx.usable()) == 3
    idx.check()
    code, envelope, _ = invoke("info", tmp_path, "--json", "-q")
    assert code == 0 and envelope["status"] == "ok"
    assert [p["code"] for p in envelope["data"]["problems"]] == ["symlink_loop", "symlink_loop"]
    # The originals are listed once, without walking round the loop.
    assert sorted(list_originals(tmp_path, exclude=set())) == sorted(
        f"lesions/lesions/{kind}/img{k:02d}{suffix}"
        for k in range(3)
        for kind, suffix in (("images", ".jpg"), ("masks", "_segmentation.png"))
    )


# ---- masks of every bit depth -------------------------------------------------------------------


def _ramp(size=(24, 18)) -> np.ndarray:
    """Values 0..1 rising from left to right: a soft mask."""
    w, h = size
    return np.tile(np.linspace(0.0, 1.0, w), (h, 1))


def test_a_16_bit_soft_mask_is_flagged_like_its_8_bit_twin(tmp_path):
    ramp = _ramp()
    Image.fromarray(np.round(ramp * 255).astype(np.uint8), "L").save(tmp_path / "soft8.png")
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "soft16.png")
    assert Image.open(tmp_path / "soft16.png").mode == "I;16"
    eight, sixteen = mask_pixel_problem(tmp_path / "soft8.png"), mask_pixel_problem(tmp_path / "soft16.png")
    assert eight is not None and eight[0] == "non_binary_mask"
    assert sixteen == eight  # the same check, the same message, whatever the bit depth
    # The same threshold too: half of full scale, not 127 of 65535.
    assert np.array_equal(read_mask(tmp_path / "soft16.png"), read_mask(tmp_path / "soft8.png"))
    assert read_mask(tmp_path / "soft16.png").mean() == pytest.approx(0.5, abs=0.05)


def test_16_bit_masks_binarise_at_half_their_range(tmp_path):
    values = np.array([[0, 20000, 32767, 32768, 50000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "levels.png")
    # 20000/65535 is 78/255 and 32767 is 127.5: background; 32768 and up: foreground.
    assert read_mask(tmp_path / "levels.png").tolist() == [[False, False, False, True, True, True]]
    binary = (fx.blob() * 65535).astype(np.uint16)
    Image.fromarray(binary).save(tmp_path / "binary16.png")
    assert np.array_equal(read_mask(tmp_path / "binary16.png"), fx.blob())
    assert mask_pixel_problem(tmp_path / "binary16.png") is None
    zero_one = fx.blob().astype(np.uint16)  # 0/1 masks keep the 0/1 rule
    Image.fromarray(zero_one).save(tmp_path / "01.png")
    assert np.array_equal(read_mask(tmp_path / "01.png"), fx.blob())


def test_info_reports_a_16_bit_soft_mask_in_a_dataset(tmp_path):
    base = paired(tmp_path, n=4)
    soft = np.round(_ramp() * 65535).astype(np.uint16)
    Image.fromarray(soft).save(base / "masks" / "img02_segmentation.png")
    code, envelope, _ = invoke("info", tmp_path, "--json", "-q")
    assert code == 0
    problems = [(p["code"], Path(p["path"]).name) for p in envelope["data"]["problems"]]
    assert problems == [("non_binary_mask", "img02_segmentation.png")]


# ---- EXIF orientation ---------------------------------------------------------------------------


def _sideways_jpeg(path: Path, upright: np.ndarray, orientation: int = 6) -> None:
    """``upright`` stored turned so that EXIF ``orientation`` turns it back, as cameras write it."""
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # undone by ROTATE_270 (tag 6)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def test_a_camera_jpeg_turned_by_its_exif_tag_is_read_upright_and_matches_its_mask(tmp_path):
    base = paired(tmp_path, n=4)
    w, h = fx.SIZE  # 24 wide, 18 high: red rises to the right, green downwards
    yy, xx = np.mgrid[0:h, 0:w]
    upright = np.stack([40 + 7 * xx, 40 + 9 * yy, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    image = base / "images" / "img01.jpg"
    _sideways_jpeg(image, upright)
    assert Image.open(image).size == (18, 24)  # stored sideways
    probe = probe_file(image)
    assert (probe.size, probe.orientation) == ((24, 18), 6)
    pixels = read_image(image)
    assert pixels.shape == (18, 24, 3)
    assert np.array_equal(pixels, np.asarray(ImageOps.exif_transpose(Image.open(image)).convert("RGB")))
    assert np.abs(pixels.astype(int) - upright).mean() < 4  # JPEG loss only: it is the right way up
    idx = load_dataset(tmp_path)
    assert not [p for p in idx.problems if p.code == "size_mismatch"]
    assert "img01" in {s.id for s in idx.usable()}
    assert {s.id: s.size for s in idx.samples}["img01"] == (24, 18)
    code, envelope, _ = invoke("info", tmp_path, "--json", "-q")
    assert code == 0 and envelope["data"]["problems"] == []
    assert envelope["data"]["exif_oriented"] == [{"path": str(image), "orientation": 6}]
    human = CliRunner().invoke(app, ["info", str(tmp_path)], catch_exceptions=False)
    assert human.exit_code == 0 and "EXIF orientation" in human.stdout


def test_the_mask_check_runs_on_the_oriented_image(tmp_path):
    base = paired(tmp_path, n=4)
    stored_upright = np.full((fx.SIZE[1], fx.SIZE[0], 3), 128, np.uint8)
    # Tag 6 on an image stored 24x18 shows it 18x24: now it really differs from its 24x18 mask.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored_upright).save(base / "images" / "img02.jpg", format="JPEG", exif=exif.tobytes())
    idx = load_dataset(tmp_path)
    mismatch = [p for p in idx.problems if p.code == "size_mismatch"]
    assert [p.sample_id for p in mismatch] == ["img02"]
    assert "18x24" in mismatch[0].message


# ---- a huge --n ---------------------------------------------------------------------------------


@pytest.fixture
def counted_jobs(monkeypatch):
    """Fails the test once more than 1,000 jobs are made: a refusal must come before planning."""
    made = {"n": 0}
    real = plan_jobs.make_job

    def make_job(*args, **kwargs):
        made["n"] += 1
        if made["n"] > 1000:
            raise AssertionError("planned more than 1,000 jobs before refusing")
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_jobs, "make_job", make_job)
    return made


def test_a_huge_n_is_refused_for_disk_space_before_planning(tmp_path, monkeypatch, counted_jobs):
    paired(tmp_path / "ds", n=8)
    fitted = []
    monkeypatch.setattr("lesionaug.augment.preparation.fit_dataset_shape_model", lambda *a, **k: fitted.append(1))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100 << 30, 90 << 30, 10 << 30))
    out = tmp_path / "out"
    started = time.perf_counter()
    code, envelope, _ = invoke(
        "augment", tmp_path / "ds", "--n", 9999999, "--size", 64, "--out", out, "--model", tmp_path / "none", "--json"
    )
    assert time.perf_counter() - started < 30
    assert code == 3
    assert "not enough free disk space" in envelope["errors"][0]["message"]
    assert counted_jobs["n"] == 0 and fitted == [] and not out.exists()


def test_a_huge_n_is_refused_for_memory_before_planning(tmp_path, monkeypatch, counted_jobs):
    paired(tmp_path / "ds", n=8)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 60, 0, 1 << 60))
    monkeypatch.setattr(disk_space, "available_memory", lambda: 4 << 30)
    out = tmp_path / "out"
    code, envelope, _ = invoke(
        "augment", tmp_path / "ds", "--n", 9999999, "--size", 64, "--out", out, "--model", tmp_path / "none", "--json"
    )
    assert code == 3
    message = envelope["errors"][0]["message"]
    # 9,999,999 pairs x 8 KiB = 78,125.0 MiB (less 8 KiB), + 512 MiB margin = 78,637.0 MiB, 4,096 MiB available.
    assert message == (
        "not enough memory: 9,999,999 pairs written by one run keep about 78637.0 MiB in memory, "
        "4096.0 MiB available"
    )
    assert counted_jobs["n"] == 0 and not out.exists()
    # A dry run lists every job: its own memory check comes before planning too.
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 9999999, "--size", 64, "--dry-run", "--json")
    assert code == 3 and "9,999,999 jobs listed by a dry run" in envelope["errors"][0]["message"]
    assert counted_jobs["n"] == 0


# ---- end to end: augment on a dataset with a symlinked original and a mismatched training pair ------


@pytest.mark.slow
def test_augment_places_symlinked_originals_reports_skipped_pairs_and_reruns(tmp_path):
    from augment_runs import augment, trained_run

    from lesionaug.demo.write import write_demo_dataset

    engine = trained_run().engine_dir
    data = write_demo_dataset(tmp_path / "data" / "isic", n=24, layout="isic2018", size=64, seed=0)
    images = data / "ISIC2018_Task1-2_Training_Input"
    masks = data / "ISIC2018_Task1_Training_GroundTruth"
    linked = sorted(images.glob("ISIC_*.jpg"))[0]
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.move(linked, pool / linked.name)
    os.symlink(f"../../../pool/{linked.name}", linked)  # relative, right only at the dataset's depth
    mismatched = sorted(masks.glob("ISIC_*_segmentation.png"))[1]
    Image.open(mismatched).resize((32, 32)).save(mismatched)  # a training pair the index leaves out
    out = tmp_path / "elsewhere" / "at" / "another" / "depth"

    first = augment(data, out, "--n", "2", engine=engine)
    assert first.exit_code == 0, first.stderr
    result = first.envelope["data"]
    assert (result["n_generated"], result["n_training_skipped"], result["training_skipped"]) == (
        2, 1, {"size_mismatch": 1}
    )
    assert result["link"] == "hard"
    placed = out / linked.relative_to(data)
    assert not placed.is_symlink() and placed.read_bytes() == (pool / linked.name).read_bytes()
    assert os.path.samefile(placed, pool / linked.name)  # a hard link to the link's target

    again = augment(data, out, "--n", "2", engine=engine)  # the rerun used to fail the same way
    assert again.exit_code == 0, again.stderr
    assert again.envelope["data"]["n_skipped_existing"] == 2

    # The same output rerun with --link copy: its originals become copies (editing them edits
    # nothing else); without -q the left-out pair is said on stderr, in one line.
    loud = CliRunner().invoke(
        app, ["augment", str(data), "--out", str(out), "--model", str(engine), "--n", "2", "--link", "copy",
              "--size", "64", "--steps", "2", "--guidance", "1.0", "--json"], catch_exceptions=False,
    )
    assert loud.exit_code == 0, loud.stderr
    said = " ".join(loud.stderr.split())  # Rich wraps a long line at the console's width
    assert said.count("left out") == 1 and "warning: 1 training pair(s) left out (size_mismatch 1)" in said
    assert not os.path.samefile(placed, pool / linked.name) and placed.read_bytes() == (pool / linked.name).read_bytes()
    other = sorted(images.glob("ISIC_*.jpg"))[1]
    assert not os.path.samefile(other, out / other.relative_to(data))
    verify = invoke("verify", out, "--json", "-q")
    assert verify[0] == 0 and verify[1]["data"]["ok"] is True


def test_link_reflink_is_refused_before_anything_is_generated(tmp_path, monkeypatch):
    from lesionaug import atomic_files

    class NoClones:  # ext4 and tmpfs answer FICLONE like this
        @staticmethod
        def ioctl(fd, request, arg):
            raise OSError(95, "Operation not supported")

    monkeypatch.setattr(atomic_files, "fcntl", NoClones)
    paired(tmp_path / "ds", n=8)
    out = tmp_path / "out"
    code, envelope, _ = invoke(
        "augment", tmp_path / "ds", "--n", 2, "--size", 64, "--out", out, "--model", tmp_path / "none",
        "--link", "reflink", "--json",
    )
    assert code == 3
    assert "--link reflink: the output's filesystem cannot clone" in envelope["errors"][0]["message"]
    assert not out.exists()  # the folder it made for the run is gone again
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 2, "--size", 64, "--link", "soft", "--json")
    assert code == 2 and "'soft' is not one of 'hard', 'copy', 'reflink'" in envelope["errors"][0]["message"]


def test_an_original_named_like_a_synthetic_pair_is_never_replaced(tmp_path, counted_jobs):
    base = paired(tmp_path / "ds", n=8)
    fx.write_image(base / "images" / "SYN_0000002.jpg", seed=3)
    fx.write_mask(base / "masks" / "SYN_0000002_segmentation.png", fx.blob(seed=3))
    common = ("--size", 64, "--model", tmp_path / "none", "--json")
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 3, "--out", tmp_path / "a", *common)
    assert code == 3
    assert envelope["errors"][0]["message"] == (
        "synthetic pair SYN_0000002 would replace the original lesions/lesions/images/SYN_0000002.jpg"
    )
    # Shard 0/2 of 3 jobs holds SYN_0000001 and SYN_0000003: no collision, so it gets as far as the model.
    code, envelope, _ = invoke("augment", tmp_path / "ds", "--n", 3, "--shard", "0/2", "--out", tmp_path / "b", *common)
    assert "would replace" not in envelope["errors"][0]["message"]
    assert counted_jobs["n"] < 10  # the check looks up the jobs the originals name, it does not walk the plan
