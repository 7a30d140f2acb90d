"""`lesionaug verify` and `lesionaug merge`: differences found and listed, shards joined or refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from augment_runs import augment, invoke, output_digest, trained_run

from lesionaug.formats import MANIFEST_NAME, RUN_NAME
from lesionaug.output.manifest import read_manifest

pytestmark = pytest.mark.slow  # shares the session's trained tiny model with test_augment.py


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """An unsharded run and its two shards (same plan), plus a shard of another plan."""
    run = trained_run()
    root = tmp_path_factory.mktemp("shards")
    args = ("--n", "6", "--batch-size", "2")
    for name, extra in (("full", ()), ("s0", ("--shard", "0/2")), ("s1", ("--shard", "1/2")),
                        ("other", ("--shard", "1/2", "--seed", "5"))):
        result = augment(run.dataset, root / name, *args, *extra)
        assert result.exit_code == 0, result.stderr
    return root


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)  # real copies: editing them never touches the shared outputs
    return target


def differences(folder: Path) -> tuple[int, dict]:
    result = invoke("verify", folder, "--json", "-q")
    return result.exit_code, result.envelope


def test_verify_passes_on_a_finished_output(outputs):
    code, envelope = differences(outputs / "full")
    assert code == 0 and envelope["status"] == "ok"
    data = envelope["data"]
    assert data["ok"] is True and data["n_pairs"] == 6 and data["differences"] == []
    assert data["n_files_checked"] > 12  # pairs, originals, label files and the manifest


def test_verify_lists_changed_missing_and_extra_files(outputs, tmp_path):
    folder = copy_of(outputs / "full", tmp_path / "copy")
    entries = read_manifest(folder / MANIFEST_NAME)
    changed, missing = entries[0]["image"], entries[1]["mask"]
    (folder / changed).write_bytes((folder / changed).read_bytes() + b"\0")
    (folder / missing).unlink()
    (folder / "stray.txt").write_text("not ours")
    original = json.loads((folder / RUN_NAME).read_text())["outputs"]["originals"][0]["path"]
    (folder / original).write_bytes(b"edited original")
    code, envelope = differences(folder)
    assert code == 3 and envelope["status"] == "error" and envelope["errors"][0]["code"] == "verify_failed"
    found = {(d["kind"], d["path"]) for d in envelope["data"]["differences"]}
    assert found == {("changed", changed), ("missing", missing), ("extra", "stray.txt"), ("changed", original)}
    assert envelope["data"]["counts"] == {"missing": 1, "changed": 2, "extra": 1, "not_generated": 0}
    human = invoke("verify", folder)
    assert human.exit_code == 3 and f"missing: {missing}" in " ".join(human.stderr.split())  # Rich wraps lines


def test_verify_reports_an_unfinished_run(outputs, tmp_path):
    folder = copy_of(outputs / "full", tmp_path / "unfinished")
    lines = (folder / MANIFEST_NAME).read_text().splitlines(keepends=True)
    (folder / MANIFEST_NAME).write_text("".join(lines[:4]))
    record = json.loads((folder / RUN_NAME).read_text())
    record["status"] = "incomplete"
    record["outputs"]["manifest_sha256"] = None
    (folder / RUN_NAME).write_text(json.dumps(record))
    code, envelope = differences(folder)
    assert code == 3
    assert {d["path"] for d in envelope["data"]["differences"] if d["kind"] == "not_generated"} == {"job 4", "job 5"}


def test_verify_refuses_a_folder_that_is_not_an_output(tmp_path):
    assert invoke("verify", tmp_path).exit_code == 3
    assert invoke("verify", tmp_path / "absent").exit_code == 3


def test_shards_merged_equal_the_unsharded_run(outputs, tmp_path):
    merged = tmp_path / "merged"
    result = invoke("merge", merged, outputs / "s1", outputs / "s0", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert result.envelope["data"]["n_pairs"] == 6 and result.envelope["data"]["n_shards"] == 2
    assert output_digest(merged) == output_digest(outputs / "full")
    assert [e["index"] for e in read_manifest(merged / MANIFEST_NAME)] == list(range(6))
    assert differences(merged)[0] == 0
    record = json.loads((merged / RUN_NAME).read_text())
    assert record["jobs"]["shard"] is None and record["status"] == "complete"


@pytest.mark.parametrize(
    "shards, message",
    [
        (("s0", "other"), "different plan"),
        (("s0",), "missing from the merge"),
        (("s0", "s0", "s1"), "given twice"),
    ],
)
def test_merge_refuses_shards_that_do_not_form_one_plan(outputs, tmp_path, shards, message):
    result = invoke("merge", tmp_path / "m", *(outputs / s for s in shards), "--json", "-q")
    assert result.exit_code == 3
    assert message in result.envelope["errors"][0]["message"]
    assert not (tmp_path / "m").exists()


def test_merge_refuses_an_unfinished_shard_and_an_existing_output(outputs, tmp_path):
    unfinished = copy_of(outputs / "s1", tmp_path / "s1")
    record = json.loads((unfinished / RUN_NAME).read_text())
    (unfinished / RUN_NAME).write_text(json.dumps({**record, "status": "incomplete"}))
    result = invoke("merge", tmp_path / "m", outputs / "s0", unfinished, "--json", "-q")
    assert result.exit_code == 3 and "not finished" in result.envelope["errors"][0]["message"]
    taken = invoke("merge", outputs / "full", outputs / "s0", outputs / "s1", "--json", "-q")
    assert taken.exit_code == 3
