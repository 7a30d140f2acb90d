"""Writer units: atomic files, encodings, the pair writer pool, label rows, linked originals, the lock."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from lesionaug.atomic_files import (
    clone_file,
    link_or_copy,
    place_file,
    remove_temporaries,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
)
from lesionaug.dataset.label_write import render_rows
from lesionaug.dataset.labels import Labels
from lesionaug.errors import ConfigError
from lesionaug.formats import LOCK_NAME, TMP_MARK
from lesionaug.output.folder import (
    LabelTarget,
    check_link_mode,
    link_originals,
    list_originals,
    write_label_files,
)
from lesionaug.output.lock import OutputLock
from lesionaug.output.manifest import (
    MANIFEST_KEYS,
    ManifestAppender,
    read_manifest,
    write_manifest_sorted,
)
from lesionaug.output.pair_writer import (
    GenerationStamp,
    PairLayout,
    PairRecord,
    PairWriter,
    encode_image,
    encode_mask,
)
from lesionaug.output.run_record import check_output_folder, write_run_record

STAMP = GenerationStamp("dpm++", 20, 3.0, 1.0, "m" * 64, "e" * 64)


def _pair(seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    return image, mask


def _record(k: int) -> PairRecord:
    return PairRecord(f"SYN_{k + 1:07d}", k, "a dermoscopic image of melanoma", {"diagnosis": "mel"}, 100 + k, "model", 200 + k)


# ---- atomic files -------------------------------------------------------------------------------


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    write_bytes_atomic(target, b"old")
    write_bytes_atomic(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    write_bytes_atomic(target, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_bytes_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert not any(TMP_MARK in p.name for p in tmp_path.iterdir())


def test_killed_writer_leaves_old_file_and_a_removable_temporary(tmp_path):
    # A process killed between writing the temporary and renaming it: the target keeps its old bytes.
    target = tmp_path / "img.png"
    write_bytes_atomic(target, b"complete")
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "import lesionaug.atomic_files as af\n"
        "os.replace = lambda a, b: os.kill(os.getpid(), 9)\n"
        f"af.write_bytes_atomic(Path({str(target)!r}), b'x' * 100000)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    assert target.read_bytes() == b"complete"
    assert remove_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["img.png"]


def test_link_or_copy_links_and_replacing_never_touches_the_source(tmp_path):
    src = tmp_path / "in" / "x.jpg"
    src.parent.mkdir()
    src.write_bytes(b"original")
    dst = tmp_path / "out" / "x.jpg"
    dst.parent.mkdir()
    assert link_or_copy(src, dst) == "link"
    assert os.path.samefile(src, dst)
    write_bytes_atomic(dst, b"rewritten")  # a new inode, the input keeps its bytes
    assert src.read_bytes() == b"original"
    assert dst.read_bytes() == b"rewritten"


def test_link_or_copy_falls_back_to_copy(tmp_path, monkeypatch):
    src = tmp_path / "x.jpg"
    src.write_bytes(b"data")

    def no_links(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    assert link_or_copy(src, tmp_path / "y.jpg") == "copy"
    assert (tmp_path / "y.jpg").read_bytes() == b"data"
    assert not os.path.samefile(src, tmp_path / "y.jpg")


def _source(tmp_path, data=b"original"):
    src = tmp_path / "in" / "x.jpg"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(data)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    (tmp_path / "out").mkdir(exist_ok=True)
    return src, tmp_path / "out" / "x.jpg"


def test_place_file_copy_is_a_separate_file_with_the_sources_times(tmp_path):
    src, dst = _source(tmp_path)
    assert place_file(src, dst, "copy") == "copy"
    assert dst.read_bytes() == b"original" and not os.path.samefile(src, dst)
    assert dst.stat().st_mtime_ns == 1_600_000_000_000_000_000
    with open(dst, "r+b") as fh:  # editing the copy in place leaves the input alone
        fh.write(b"EDITED")
    assert src.read_bytes() == b"original"
    with pytest.raises(ValueError, match="how must be one of"):
        place_file(src, dst, "symlink")


def test_place_file_reflink_never_falls_back_to_a_copy(tmp_path, monkeypatch):
    from lesionaug import atomic_files

    src, dst = _source(tmp_path)
    dst.write_bytes(b"kept")

    class NoClones:
        @staticmethod
        def ioctl(fd, request, arg):
            assert request == atomic_files.FICLONE
            raise OSError(95, "Operation not supported")

    monkeypatch.setattr(atomic_files, "fcntl", NoClones)
    with pytest.raises(OSError, match="not supported"):
        place_file(src, dst, "reflink")
    assert dst.read_bytes() == b"kept" and sorted(p.name for p in dst.parent.iterdir()) == ["x.jpg"]


def test_place_file_reflink_clones_through_ficlone(tmp_path, monkeypatch):
    from lesionaug import atomic_files

    src, dst = _source(tmp_path)
    calls = []

    class Clones:  # what the kernel does on btrfs or XFS: the destination gets the source's content
        @staticmethod
        def ioctl(fd, request, arg):
            calls.append(request)
            os.write(fd, os.pread(arg, 1 << 20, 0))

    monkeypatch.setattr(atomic_files, "fcntl", Clones)
    assert place_file(src, dst, "reflink") == "reflink"
    assert calls == [0x40049409] and dst.read_bytes() == b"original" and not os.path.samefile(src, dst)
    assert dst.stat().st_mtime_ns == src.stat().st_mtime_ns


def test_clone_file_on_this_filesystem_clones_or_fails_cleanly(tmp_path):
    src, dst = _source(tmp_path, b"x" * 10000)
    try:
        clone_file(src, dst)
    except OSError:
        assert not dst.exists()  # ext4, tmpfs, overlayfs: no reflinks, nothing left behind
    else:
        assert dst.read_bytes() == src.read_bytes() and not os.path.samefile(src, dst)


def test_link_originals_follows_the_link_mode_and_switches_between_modes(tmp_path, monkeypatch):
    from lesionaug.output import folder

    src, _ = _source(tmp_path)
    out = tmp_path / "aug"
    link_originals([(src, "a/x.jpg")], out)  # the default: a hard link
    assert os.path.samefile(src, out / "a" / "x.jpg")
    placed = []
    real = folder.place_file
    monkeypatch.setattr(folder, "place_file", lambda s, d, how: placed.append(how) or real(s, d, how))
    link_originals([(src, "a/x.jpg")], out)
    assert placed == []  # already the same inode
    items = link_originals([(src, "a/x.jpg")], out, how="copy")  # a rerun with --link copy replaces it
    assert placed == ["copy"] and not os.path.samefile(src, out / "a" / "x.jpg")
    assert items == [{"path": "a/x.jpg", "size": 8, "sha256": sha256_bytes(b"original")}]
    link_originals([(src, "a/x.jpg")], out, how="copy")
    assert placed == ["copy"]  # same size and mtime: the copy is kept
    link_originals([(src, "a/x.jpg")], out, how="hard")
    assert placed == ["copy", "hard"] and os.path.samefile(src, out / "a" / "x.jpg")


def test_check_link_mode_refuses_reflink_before_generating(tmp_path, monkeypatch):
    from lesionaug import atomic_files

    src, _ = _source(tmp_path)
    out = tmp_path / "aug"
    out.mkdir()
    check_link_mode([(src, "x.jpg")], out, "hard")
    check_link_mode([], out, "reflink")  # --synthetic-only: no originals, nothing to clone

    class NoClones:
        @staticmethod
        def ioctl(fd, request, arg):
            raise OSError(95, "Operation not supported")

    monkeypatch.setattr(atomic_files, "fcntl", NoClones)
    with pytest.raises(ConfigError, match="--link reflink: the output's filesystem cannot clone x.jpg") as err:
        check_link_mode([(src, "x.jpg")], out, "reflink")
    assert "--link copy" in err.value.fix and list(out.iterdir()) == []


# ---- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, pil_format", [("jpg", "JPEG"), ("png", "PNG"), ("bmp", "BMP")])
def test_encode_image_formats(fmt, pil_format):
    image, _ = _pair(1)
    data = encode_image(image, fmt)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == pil_format and decoded.size == (32, 32) and decoded.mode == "RGB"
    if fmt != "jpg":
        assert np.array_equal(np.asarray(decoded), image)
    assert encode_image(image, fmt) == data  # deterministic bytes


def test_jpeg_quality_95_is_close():
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_image(smooth, "jpg"))), dtype=float)
    assert np.abs(decoded - smooth).mean() < 2.0


@pytest.mark.parametrize("fmt", ["png", "bmp"])
def test_encode_mask_is_single_channel_0_255(fmt):
    _, mask = _pair(1)
    decoded = Image.open(io.BytesIO(encode_mask(mask.astype(np.uint8), fmt)))
    assert decoded.mode == "L"
    values = np.asarray(decoded)
    assert set(np.unique(values)) == {0, 255}
    assert np.array_equal(values > 0, mask)


# ---- pair writer --------------------------------------------------------------------------------


def test_pair_writer_writes_files_then_manifest_lines(tmp_path):
    layout = PairLayout("imgs/{id}{ext}", "masks/{id}_segmentation.png", "jpg", "png")
    with ManifestAppender(tmp_path / "m.jsonl") as manifest:
        writer = PairWriter(tmp_path, layout, STAMP, manifest, workers=3, max_pending=2)
        for k in range(7):
            writer.submit(_record(k), *_pair(k))
        tally = writer.close()
    assert tally.written == 7 and not tally.failed
    entries = read_manifest(tmp_path / "m.jsonl")
    assert sorted(e["index"] for e in entries) == list(range(7))
    for entry in entries:
        assert list(entry) == list(MANIFEST_KEYS)
        assert entry["image"] == f"imgs/{entry['id']}.jpg"
        assert entry["mask"] == f"masks/{entry['id']}_segmentation.png"
        assert sha256_file(tmp_path / entry["image"]) == entry["sha256"]["image"]
        assert sha256_file(tmp_path / entry["mask"]) == entry["sha256"]["mask"]
        assert entry["engine_hash"] == "e" * 64 and entry["steps"] == 20


def test_pair_writer_records_a_failed_pair_and_goes_on(tmp_path):
    layout = PairLayout("imgs/{id}{ext}", "masks/{id}.png")
    with ManifestAppender(tmp_path / "m.jsonl") as manifest:
        writer = PairWriter(tmp_path, layout, STAMP, manifest, workers=2)
        writer.submit(_record(0), *_pair(0))
        writer.submit(_record(1), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))  # not RGB
        writer.submit(_record(2), *_pair(2))
        tally = writer.close()
    assert tally.written == 2
    assert [pid for pid, _ in tally.failed] == ["SYN_0000002"]
    assert {e["index"] for e in read_manifest(tmp_path / "m.jsonl")} == {0, 2}


def test_manifest_torn_last_line_is_ignored_and_sorted_rewrite(tmp_path):
    path = tmp_path / "m.jsonl"
    layout = PairLayout("i/{id}{ext}", "m/{id}.png")
    with ManifestAppender(path, durable=False) as manifest:
        writer = PairWriter(tmp_path, layout, STAMP, manifest, workers=1)
        for k in (3, 1, 2):
            writer.submit(_record(k), *_pair(k))
        writer.close()
    with open(path, "ab") as fh:
        fh.write(b'{"id": "SYN_00')  # a power loss mid-line
    entries = read_manifest(path)
    assert len(entries) == 3
    write_manifest_sorted(path, entries)
    lines = path.read_text().splitlines()
    assert [json.loads(ln)["index"] for ln in lines] == [1, 2, 3]


def test_manifest_rejects_a_corrupt_middle_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('not json\n{"a": 1}\n')
    with pytest.raises(ConfigError, match="line 1"):
        read_manifest(path)


# ---- label rows ---------------------------------------------------------------------------------

MEL = Labels(diagnosis="mel", age=45, sex="male", site="back")
NV = Labels(diagnosis="nv")


def test_isic2018_task3_one_hot_rows_keep_the_original_bytes():
    original = b"image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\r\nISIC_0000000,0.0,1.0,0.0,0.0,0.0,0.0,0.0\r\n"
    data = render_rows("isic2018_task3", original, [("SYN_0000001", MEL), ("SYN_0000002", NV)])
    assert data.startswith(original)
    assert data[len(original):] == (
        b"SYN_0000001,1.0,0.0,0.0,0.0,0.0,0.0,0.0\r\nSYN_0000002,0.0,1.0,0.0,0.0,0.0,0.0,0.0\r\n"
    )


def test_isic2017_part3_and_ham_rows():
    part3 = b"image_id,melanoma,seborrheic_keratosis\nISIC_0000001,0.0,1.0\n"
    rows = render_rows("isic2017_part3", part3, [("S1", MEL), ("S2", Labels(diagnosis="sk")), ("S3", Labels(diagnosis="nevus"))])
    assert rows[len(part3):] == b"S1,1.0,0.0\nS2,0.0,1.0\nS3,0.0,0.0\n"
    ham = b"lesion_id,image_id,dx,dx_type,age,sex,localization\nHAM_0000118,ISIC_0027419,bkl,histo,80.0,male,scalp\n"
    rows = render_rows("ham10000_metadata", ham, [("S1", MEL), ("S2", NV)])
    assert rows[len(ham):] == b"S1,S1,mel,synthetic,45.0,male,back\nS2,S2,nv,synthetic,,unknown,unknown\n"


def test_headerless_isic2016_rows_follow_the_value_style():
    words = b"ISIC_0000000,benign\nISIC_0000001,malignant"  # no final newline
    assert render_rows("isic2016_csv", words, [("S1", Labels(diagnosis="malignant"))]) == words + b"\nS1,malignant\n"
    numbers = b"ISIC_0000000,0.0\n"
    assert render_rows("isic2016_csv", numbers, [("S1", Labels(diagnosis="benign"))]) == numbers + b"S1,0.0\n"


def test_generic_labels_csv_columns_inferred():
    original = b"image,diagnosis,pigment_network,age,sex\nimg_001,melanoma,1,50,female\n"
    labels = Labels(diagnosis="mel", attributes=("streaks",), age=30)
    data = render_rows("labels_csv", original, [("S1", labels)], key="image")
    assert data[len(original):] == b"S1,melanoma,0,30,\n"


def test_label_files_synthetic_only_hold_header_and_new_rows(tmp_path):
    original = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_0000000,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
    target = LabelTarget("labels/gt.csv", "isic2018_task3", "", original.splitlines(keepends=True)[0].encode(), original)
    entries = [{"index": 1, "id": "SYN_0000002", "labels": {"diagnosis": "nv"}},
               {"index": 0, "id": "SYN_0000001", "labels": {"diagnosis": "mel"}}]
    records = write_label_files(tmp_path, [target], entries)
    text = (tmp_path / "labels/gt.csv").read_text()
    assert text == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nSYN_0000001,1.0,0.0,0.0,0.0,0.0,0.0,0.0\nSYN_0000002,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
    assert records[0]["sha256"] == sha256_bytes(text.encode()) and records[0]["base_bytes"] == len(target.base)


# ---- originals, output folder, lock --------------------------------------------------------------


def test_link_originals_hashes_and_lists(tmp_path):
    root = tmp_path / "in"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    (root / "labels.csv").write_text("image\n")
    (root / "lesionaug-run.json").write_text("{}")
    paths = list_originals(root, exclude={"labels.csv"})
    assert paths == ["a/x.jpg"]
    items = link_originals([(root / p, p) for p in paths], tmp_path / "out")
    assert items == [{"path": "a/x.jpg", "size": 1, "sha256": sha256_bytes(b"x")}]
    assert os.path.samefile(root / "a" / "x.jpg", tmp_path / "out" / "a" / "x.jpg")


def test_output_folder_rules(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="overlaps the input"):
        check_output_folder(data / "aug", data)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not made by lesionaug"):
        check_output_folder(foreign, data)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / LOCK_NAME).write_text("{}")
    assert check_output_folder(ours, data) is None  # only a stale lock: still ours to use
    write_run_record(ours, {"status": "running"})
    assert check_output_folder(ours, data)["status"] == "running"


def test_lock_blocks_a_second_holder_and_takes_over_a_dead_one(tmp_path):
    with OutputLock(tmp_path), pytest.raises(ConfigError, match="is writing to this folder"):
        OutputLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_NAME).exists()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": proc.pid, "host": os.uname().nodename, "command": "augment"}))
    lock = OutputLock(tmp_path).acquire()
    assert lock.took_over["pid"] == proc.pid
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_only_one_of_many_threads_wins(tmp_path):
    wins, losses = [], []

    def try_lock():
        try:
            OutputLock(tmp_path).acquire()
            wins.append(1)
        except ConfigError:
            losses.append(1)

    threads = [threading.Thread(target=try_lock) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7


# ---- each demo layout: pairs written where its reader finds them, with their labels ---------------

LAYOUT_TARGETS = {
    "isic2018": ("ISIC2018_Task1-2_Training_Input/{id}{ext}", "ISIC2018_Task1_Training_GroundTruth/{id}_segmentation.png",
                 "jpg", ["ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv"]),
    "isic2017": ("ISIC-2017_Training_Data/{id}{ext}", "ISIC-2017_Training_Part1_GroundTruth/{id}_segmentation.png",
                 "jpg", ["ISIC-2017_Training_Part3_GroundTruth.csv",
                         "ISIC-2017_Training_Data/ISIC-2017_Training_Data_metadata.csv"]),
    "ham10000": ("HAM10000_images_part_1/{id}{ext}", "HAM10000_segmentations_lesion_tschandl/{id}_segmentation.png",
                 "jpg", ["HAM10000_metadata.csv"]),
    "ph2": ("PH2Dataset/PH2 Dataset images/{id}/{id}_Dermoscopic_Image/{id}{ext}",
            "PH2Dataset/PH2 Dataset images/{id}/{id}_lesion/{id}_lesion.bmp", "bmp", ["PH2Dataset/PH2_dataset.txt"]),
    "paired": ("train/images/{id}{ext}", "train/masks/{id}.png", "png", ["labels.csv"]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUT_TARGETS))
def test_pairs_written_in_each_demo_layout_read_back(tmp_path, layout):
    from lesionaug.dataset.index import load_dataset
    from lesionaug.demo.write import write_demo_dataset
    from lesionaug.output.folder import finish_output
    from lesionaug.output.layout import plan_output
    from lesionaug.output.verify import verify_output

    before = load_dataset(write_demo_dataset(tmp_path / "in", n=12, layout=layout, size=32, seed=3))
    output = plan_output(before, None, synthetic_only=False)
    image_template, mask_template, fmt, label_files = LAYOUT_TARGETS[layout]
    assert (output.layout.image_template, output.layout.mask_template) == (image_template, mask_template)
    assert output.layout.image_format == fmt
    assert [t.path for t in output.label_targets] == label_files
    out = tmp_path / "out"
    out.mkdir()
    originals = link_originals(list(output.originals), out)
    labels = [s.labels for s in before.usable("train")[:3]]
    with ManifestAppender(out / "lesionaug-manifest.jsonl") as manifest:
        writer = PairWriter(out, output.layout, STAMP, manifest, workers=2)
        for k, lab in enumerate(labels):
            writer.submit(PairRecord(f"SYN_{k + 1:07d}", k, "p", lab.to_dict(), k, "model", k), *_pair(k))
        tally = writer.close()
    record = {"status": "running", "jobs": {"n": 3, "shard": None}, "outputs": {"originals": originals}}
    finish_output(out, record, list(output.label_targets), tally.entries)
    assert verify_output(out)["ok"]
    after = load_dataset(out)
    assert after.layout == before.layout
    assert after.split_counts() == {**before.split_counts(), "train": before.split_counts()["train"] + 3}
    found = {s.id: s for s in after.samples}
    for k, lab in enumerate(labels):
        sample = found[f"SYN_{k + 1:07d}"]
        assert sample.split == "train" and sample.mask is not None and sample.size == (32, 32)
        assert sample.labels.diagnosis == lab.diagnosis
    for target in output.label_targets:  # the input's rows kept byte for byte, new rows after them
        assert (out / target.path).read_bytes().startswith(target.base[: target.record()["insert_at"]])


def test_generation_loop_regenerates_a_partly_written_batch_whole(tmp_path):
    from lesionaug.augment.loop import LoopJob, run_generation

    jobs = [LoopJob(_record(k), None) for k in range(7)]
    generated: list[list[int]] = []

    def sample_masks(batch):
        return [_pair(j.index)[1] for j in batch]

    def generate(batch, masks):
        generated.append([j.index for j in batch])
        return [_pair(j.index)[0] for j in batch]

    with ManifestAppender(tmp_path / "m.jsonl") as manifest:
        writer = PairWriter(tmp_path, PairLayout("i/{id}{ext}", "m/{id}.png"), STAMP, manifest, workers=2)
        stats = run_generation(jobs, {0, 1, 2, 5}, 3, sample_masks, generate, writer)
        writer.close()
    # Batches sit at fixed positions [0-2] [3-5] [6]: the first is complete and skipped, the second is
    # generated whole (as an uninterrupted run would) but only its missing pairs are written.
    assert generated == [[3, 4, 5], [6]]
    assert (stats.skipped_existing, stats.submitted, stats.generated) == (4, 3, 4)
    assert sorted(e["index"] for e in read_manifest(tmp_path / "m.jsonl")) == [3, 4, 6]
