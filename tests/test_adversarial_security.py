"""Crafted inputs against the security guarantees: paths that leave their folder, tampered files and
engines, pickle weights.

Every path read from a manifest, run record or engine card stays inside its folder; ``merge`` hashes
each shard file against its manifest before linking; an engine's graphs are hashed against its card
when it loads; networks are read from safetensors only unless ``--allow-pickle``. Each case here is a
file an attacker (or a careless copy) could hand lesionaug, and each must be refused with one line and
its exit code, with nothing written outside the folders given.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from augment_runs import augment, invoke, trained_run, tree_digest

from lesionaug.errors import ConfigError
from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output.manifest import MANIFEST_KEYS, read_manifest
from lesionaug.safe_paths import resolve_inside

# ---- the one path rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel, why",
    [
        ("../../../somewhere/file", "climbs out with '..'"),
        ("train/../../x.png", "climbs out with '..'"),
        ("train\\..\\..\\x.png", "climbs out with '..'"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\Windows\\x", "is an absolute path"),
        ("", "is not a file name"),
        (None, "is not a file name"),
        ("a\0b", "NUL"),
        (".", "names the folder itself"),
    ],
)
def test_a_path_that_leaves_its_folder_is_refused_by_its_text(tmp_path, rel, why):
    with pytest.raises(ConfigError, match="manifest line 7") as info:
        resolve_inside(tmp_path, rel, source=tmp_path / MANIFEST_NAME, where="manifest line 7")
    assert why in info.value.message
    assert info.value.path == str(tmp_path / MANIFEST_NAME) and info.value.exit_code == 3


def test_symlinks_may_stay_inside_but_never_lead_out(tmp_path):
    folder, outside = tmp_path / "folder", tmp_path / "outside"
    (folder / "train").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    (folder / "train" / "a.png").write_bytes(b"a")
    os.symlink(folder / "train" / "a.png", folder / "train" / "alias.png")  # inside: fine
    os.symlink(outside / "secret.png", folder / "train" / "out.png")  # a file leading out
    os.symlink(outside, folder / "escape")  # a folder leading out
    source = folder / MANIFEST_NAME
    assert resolve_inside(folder, "train/a.png", source=source, where="w") == (folder / "train" / "a.png").resolve()
    assert resolve_inside(folder, "train/alias.png", source=source, where="w") == (folder / "train" / "a.png").resolve()
    assert resolve_inside(folder, "train/new.png", source=source, where="w").name == "new.png"  # need not exist
    for rel in ("train/out.png", "escape/secret.png", "escape/not-yet.png"):
        with pytest.raises(ConfigError, match="through a symlink"):
            resolve_inside(folder, rel, source=source, where="w")


def test_a_manifest_line_naming_a_path_outside_is_refused_with_its_line_number(tmp_path):
    lines = [{"id": f"SYN_{k}", "index": k, "image": f"train/{k}.jpg", "mask": f"train/{k}.png"} for k in range(3)]
    lines[1]["mask"] = "../../../somewhere/file"
    text = "".join(json.dumps({**dict.fromkeys(MANIFEST_KEYS), **line}) + "\n" for line in lines)
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(ConfigError) as info:
        read_manifest(tmp_path / MANIFEST_NAME)
    assert "manifest line 2 (mask) names '../../../somewhere/file'" in info.value.message


# ---- merge, verify, resume and evaluate on crafted augmented folders ------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Both shards of one small plan (originals included), made once; tests edit copies."""
    run = trained_run()
    root = tmp_path_factory.mktemp("secure-shards")
    for i in (0, 1):
        result = augment(run.dataset, root / f"s{i}", "--n", "4", "--batch-size", "2", "--shard", f"{i}/2")
        assert result.exit_code == 0, result.stderr
    return root


def _edit_line(folder: Path, number: int, **changes) -> None:
    manifest = folder / MANIFEST_NAME
    lines = manifest.read_text().splitlines(keepends=True)
    lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **changes}) + "\n"
    manifest.write_text("".join(lines))


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "somewhere" / "file"
    victim.parent.mkdir(parents=True)
    victim.write_text("outside every folder merge was given")
    return victim


def _craft(case: str, shard: Path, tmp_path: Path, victim: Path) -> str:
    """Damage ``shard`` in one way; returns what the refusal must name."""
    entries = read_manifest(shard / MANIFEST_NAME)
    if case == "traversal":
        # From the shard (tmp_path/a/b/c/s1) the line names the attacker's file tmp_path/a/somewhere/file;
        # from the merge output (tmp_path/o/p/merged) the same text names the victim.
        payload = shard.parents[2] / "somewhere" / "file"
        payload.parent.mkdir(parents=True)
        payload.write_bytes((shard / entries[1]["image"]).read_bytes())
        _edit_line(shard, 2, image="../../../somewhere/file")
        return "manifest line 2 (image)"
    if case == "absolute":
        _edit_line(shard, 1, mask=str(victim))
        return "manifest line 1 (mask)"
    if case == "symlink":
        # Same bytes outside, so only the symlink rule can refuse it (the sha256 matches).
        image = shard / entries[1]["image"]
        outside = tmp_path / "outside-copy.jpg"
        shutil.copyfile(image, outside)
        image.unlink()
        os.symlink(outside, image)
        return "manifest line 2 (image)"
    if case == "tampered":
        mask = shard / entries[0]["mask"]
        data = bytearray(mask.read_bytes())
        data[-20] ^= 0xFF
        mask.write_bytes(bytes(data))
        return "manifest line 1 (mask)"
    record = json.loads((shard / RUN_NAME).read_text())
    record["outputs"]["originals"][3]["path"] = "../../../somewhere/file"
    (shard / RUN_NAME).write_text(json.dumps(record))
    return "run record originals[3]"


@pytest.mark.parametrize("case", ["traversal", "absolute", "symlink", "tampered", "record_traversal"])
def test_merge_refuses_a_crafted_shard_and_writes_nothing(shards, tmp_path, case):
    work = tmp_path / "a" / "b" / "c"
    s0, s1 = shutil.copytree(shards / "s0", work / "s0"), shutil.copytree(shards / "s1", work / "s1")
    merged = tmp_path / "o" / "p" / "merged"
    victim = _victim(tmp_path)
    crafted = s0 if case == "record_traversal" else s1
    needle = _craft(case, crafted, tmp_path, victim)
    before = tree_digest(tmp_path)
    result = invoke("merge", merged, s0, s1, "--json", "-q")
    assert result.exit_code == 3, result.stderr
    error = result.envelope["errors"][0]
    assert needle in error["message"]
    assert error["path"] == str(crafted / (RUN_NAME if case == "record_traversal" else MANIFEST_NAME))
    assert not merged.exists()
    assert tree_digest(tmp_path) == before and victim.read_text() == "outside every folder merge was given"


def test_verify_refuses_paths_outside_and_does_not_hash_them(shards, tmp_path):
    folder = shutil.copytree(shards / "s0", tmp_path / "s0")
    _edit_line(folder, 1, image="/etc/hostname")
    result = invoke("verify", folder, "--json", "-q")
    assert result.exit_code == 3
    assert "manifest line 1 (image) names '/etc/hostname', which is an absolute path" in result.envelope["errors"][0]["message"]
    record_case = shutil.copytree(shards / "s1", tmp_path / "s1")
    record = json.loads((record_case / RUN_NAME).read_text())
    record["outputs"]["label_files"][0]["path"] = "../s0/" + record["outputs"]["label_files"][0]["path"]
    (record_case / RUN_NAME).write_text(json.dumps(record))
    result = invoke("verify", record_case, "--json", "-q")
    assert result.exit_code == 3 and "run record label_files[0]" in result.envelope["errors"][0]["message"]


def test_resume_refuses_a_manifest_that_leads_out_and_removes_nothing(shards, tmp_path):
    run = trained_run()
    out = shutil.copytree(shards / "s0", tmp_path / "out")
    victim = _victim(tmp_path)
    os.symlink(victim.parent, out / "elsewhere")  # a folder symlink planted in the output
    _edit_line(out, 2, image="elsewhere/file")
    before = tree_digest(tmp_path)
    needle = "manifest line 2 (image) names 'elsewhere/file', which leads outside the folder through a symlink"
    resumed = augment(run.dataset, out, "--n", "4", "--batch-size", "2", "--shard", "0/2")
    # A smaller --n with --force removes the dropped job's files: the line must not lead it out.
    forced = augment(run.dataset, out, "--n", "2", "--batch-size", "2", "--shard", "0/2", "--force")
    for result in (resumed, forced):
        assert result.exit_code == 3, result.stderr
        assert needle in result.envelope["errors"][0]["message"]
    assert tree_digest(tmp_path) == before and victim.exists()


def test_evaluate_reads_no_synthetic_pair_from_outside_its_folder(tmp_path):
    from evaluation_fixtures import write_augmented_folder, write_model_card

    from lesionaug.output.synthetic_pairs import read_synthetic_source

    folder = tmp_path / "aug"
    write_augmented_folder(folder, 2, write_model_card(tmp_path / "model", ["train000"]))
    outside = tmp_path / "outside.png"
    shutil.copyfile(folder / "train/images/SYN_0000001.png", outside)
    _edit_line(folder, 1, image=str(outside))
    with pytest.raises(ConfigError) as info:
        read_synthetic_source(folder)
    assert "manifest line 1 (image)" in info.value.message and info.value.exit_code == 3
