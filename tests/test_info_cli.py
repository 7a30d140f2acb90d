"""`lesionaug info` and `lesionaug demo-data` through the CLI: output, JSON keys, --strict, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import layout_fixtures as fx
import numpy as np
import pytest
from file_traps import damage
from PIL import Image
from typer.testing import CliRunner

from lesionaug.cli import app

INFO_KEYS = {
    "layout",
    "root",
    "n_samples",
    "n_real",
    "n_synthetic",
    "splits",
    "labels",
    "synthetic_labels",
    "label_tables",
    "image_sizes",
    "fingerprint",
    "exif_oriented",
    "problems",
    "warnings",
}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def tree_digest(root: Path) -> str:
    """Every path, size and content under ``root`` (symlinks by target): changes if anything is written."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for dirpath, dirnames, filenames in sorted(os.walk(root, followlinks=False)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode())
            if path.is_symlink():
                h.update(os.readlink(path).encode())
            elif path.is_file():
                h.update(path.read_bytes())
    return h.hexdigest()


def test_info_prints_a_table_and_json_with_the_pinned_keys(tmp_path: Path) -> None:
    fx.write_isic2018(tmp_path)
    human = invoke("info", str(tmp_path))
    assert human.exit_code == 0, human.output
    assert "isic2018_task1" in human.stdout and "fingerprint" in human.stdout and "mel" in human.stdout

    result = invoke("info", str(tmp_path), "--json")
    assert result.exit_code == 0
    env = json.loads(result.stdout)
    assert set(env) == {"schema", "command", "status", "exit_code", "data", "errors"}
    assert (env["command"], env["status"], env["exit_code"], env["errors"]) == ("info", "ok", 0, [])
    data = env["data"]
    assert set(data) == INFO_KEYS
    assert data["layout"] == "isic2018_task1" and data["n_samples"] == 8
    assert data["splits"] == {
        "source": "folders",
        "counts": {"train": 4, "val": 2, "test": 2},
        "usable": {"train": 4, "val": 2, "test": 2},
    }
    assert data["labels"]["diagnosis"]["mel"] == 2 and data["labels"]["labelled"] == 8
    assert (data["n_real"], data["n_synthetic"], data["synthetic_labels"], data["label_tables"]) == (8, 0, None, [])
    assert data["labels"]["fraction"]["diagnosis"] == 1.0 and data["warnings"] == []
    assert data["image_sizes"]["most_common"] == [[24, 18, 8]]
    assert len(data["fingerprint"]) == 32 and data["problems"] == []


def test_info_reports_pixel_problems_as_warnings_and_strict_exits_3(tmp_path: Path) -> None:
    fx.write_paired(tmp_path, n=4)
    masks = tmp_path / "lesions" / "lesions" / "masks"
    fx.write_mask(masks / "img00_segmentation.png", np.zeros((fx.SIZE[1], fx.SIZE[0]), bool))
    soft = np.tile(np.linspace(0, 255, fx.SIZE[0], dtype=np.uint8), (fx.SIZE[1], 1))
    Image.fromarray(soft, "L").save(masks / "img01_segmentation.png")
    before = tree_digest(tmp_path)

    result = invoke("info", str(tmp_path), "--json")
    assert result.exit_code == 0
    problems = json.loads(result.stdout)["data"]["problems"]
    assert sorted(p["code"] for p in problems) == ["empty_mask", "non_binary_mask"]
    assert all(set(p) == {"code", "path", "message"} for p in problems)
    assert "2 problem(s)" in result.stderr

    strict = invoke("info", str(tmp_path), "--strict", "--json")
    assert strict.exit_code == 3
    env = json.loads(strict.stdout)
    assert env["status"] == "error" and env["errors"][0]["code"] == "bad_dataset"
    assert len(env["data"]["problems"]) == 2  # the envelope still lists every problem
    assert tree_digest(tmp_path) == before


def test_info_masks_option_and_split_seed(tmp_path: Path) -> None:
    fx.write_isic_archive(tmp_path / "dl", n=5, masks_dir=tmp_path / "m")
    plain = json.loads(invoke("info", str(tmp_path / "dl"), "--json").stdout)["data"]
    assert {p["code"] for p in plain["problems"]} == {"missing_mask"}
    with_masks = invoke("info", str(tmp_path / "dl"), "--masks", str(tmp_path / "m"), "--split-seed", "4", "--json")
    data = json.loads(with_masks.stdout)["data"]
    assert data["problems"] == [] and data["splits"]["source"] == "seeded(seed=4)"


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (info arguments, text the error line must contain)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    (tmp_path / "a-file.png").write_bytes(b"\x89PNG")
    with zipfile.ZipFile(tmp_path / "isic.zip", "w") as zf:
        zf.writestr("ISIC_0000000.jpg", b"x")
    cases = {
        "nonexistent": ([str(tmp_path / "missing")], "does not exist"),
        "file": ([str(tmp_path / "a-file.png")], "is a file, not a folder"),
        "archive": ([str(tmp_path / "isic.zip")], "extract it"),
        "empty": ([str(tmp_path / "empty")], "dataset folder is empty"),
        "no_layout": ([str(tmp_path / "notes")], "no known dataset layout found; looked for ph2"),
        "bad_masks": ([str(tmp_path / "notes"), "--masks", str(tmp_path / "nope")], "masks folder does not exist"),
    }
    for kind, text in [
        ("truncated", "truncated"),
        ("corrupt", "not a readable image"),
        ("too_large", "decompression bomb"),
    ]:
        fx.write_paired(tmp_path / kind, n=3)
        damage(tmp_path / kind, kind)
        cases[kind] = ([str(tmp_path / kind)], text)
    # A symlink loop is a reported problem, not a damaged file: it exits 3 only with --strict.
    fx.write_paired(tmp_path / "symlink_loop", n=3)
    damage(tmp_path / "symlink_loop", "symlink_loop")
    cases["symlink_loop"] = ([str(tmp_path / "symlink_loop"), "--strict"], "symlink points back")
    return cases


def test_every_bad_input_exits_3_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    before = tree_digest(tmp_path)
    for name, (args, text) in cases.items():
        result = invoke("info", *args, "--quiet")
        assert result.exit_code == 3, (name, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith("lesionaug info: error: ") and text in lines[0], (name, lines[0])
        assert "Traceback" not in result.output and result.stdout == ""
        with_progress = invoke("info", *args)  # progress bars may precede it, the error stays one line
        assert with_progress.exit_code == 3 and "Traceback" not in with_progress.stderr
        assert [line for line in with_progress.stderr.splitlines() if "error:" in line] == lines
        as_json = invoke("info", *args, "--json", "--quiet")
        env = json.loads(as_json.stdout)
        assert (as_json.exit_code, env["exit_code"], env["status"]) == (3, 3, "error")
        assert env["errors"][0]["code"] == "bad_dataset" and env["errors"][0]["fix"]
    assert tree_digest(tmp_path) == before


def test_unreadable_file_exits_3(tmp_path: Path, monkeypatch) -> None:
    from lesionaug.dataset import files as maskio
    fx.write_paired(tmp_path, n=3)
    real = maskio.read_file_bytes

    def deny(path, limit=None):
        if Path(path).name == "img01.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, limit)

    monkeypatch.setattr(maskio, "read_file_bytes", deny)
    result = invoke("info", str(tmp_path))
    assert result.exit_code == 3
    assert "unreadable" in result.stderr and "Permission denied" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_by_permissions_exits_3(tmp_path: Path) -> None:
    fx.write_paired(tmp_path, n=3)
    target = tmp_path / "lesions" / "lesions" / "images" / "img01.jpg"
    target.chmod(0)
    try:
        result = invoke("info", str(tmp_path))
    finally:
        target.chmod(0o644)
    assert result.exit_code == 3 and "unreadable" in result.stderr


# -------------------------------------------------------------------------------------- demo-data


def test_demo_data_writes_a_dataset_info_reads(tmp_path: Path) -> None:
    out = tmp_path / "example"
    result = invoke("demo-data", str(out), "--n", "6", "--layout", "paired", "--size", "32", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data == {
        "out": str(out), "layout": "paired", "n": 6, "size": 32, "seed": 0, "style": "light", "archive_metadata": None
    }
    info = json.loads(invoke("info", str(out), "--json").stdout)["data"]
    assert info["layout"] == "paired_split" and info["n_samples"] == 6 and info["problems"] == []
    assert not [p for p in tmp_path.iterdir() if p.name != "example"]  # no temp folder left behind

    again = invoke("demo-data", str(out), "--n", "4", "--layout", "ham10000", "--size", "32")
    assert again.exit_code == 0  # earlier demo output may be replaced
    assert json.loads(invoke("info", str(out), "--json").stdout)["data"]["layout"] == "ham10000"


def test_demo_data_isic2018_writes_its_archive_metadata_and_info_joins_it(tmp_path: Path) -> None:
    out = tmp_path / "example"
    result = invoke("demo-data", str(out), "--n", "10", "--size", "32", "--json")
    table = json.loads(result.stdout)["data"]["archive_metadata"]
    assert table == str(out / "isic_archive_metadata.csv")
    bare = json.loads(invoke("info", str(out), "--json").stdout)["data"]
    assert bare["labels"]["fraction"]["diagnosis"] == 0.0 and "--labels" in bare["warnings"][0]
    joined = json.loads(invoke("info", str(out), "--labels", table, "--json").stdout)["data"]
    assert joined["labels"]["fraction"]["diagnosis"] == 1.0 and joined["warnings"] == []
    none = invoke("demo-data", str(tmp_path / "bare"), "--n", "4", "--size", "32", "--no-archive-metadata")
    assert none.exit_code == 0 and not (tmp_path / "bare" / "isic_archive_metadata.csv").exists()
    ph2 = invoke("demo-data", str(tmp_path / "ph2"), "--n", "4", "--layout", "ph2", "--archive-metadata")
    assert ph2.exit_code == 2 and "ISIC ids" in ph2.stderr


def test_demo_data_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    before = tree_digest(tmp_path)
    result = invoke("demo-data", "--out", str(tmp_path / "mine"), "--n", "2", "--size", "32")
    assert result.exit_code == 3
    assert "not empty" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tree_digest(tmp_path) == before
    bad = invoke("demo-data", "--out", str(tmp_path / "x"), "--layout", "kaggle")
    assert bad.exit_code == 2 and "'kaggle' is not one of" in bad.stderr


def test_demo_data_style_is_recorded_and_a_bad_style_is_one_usage_line(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "deep"
    result = invoke("demo-data", "--out", str(out), "--n", "3", "--layout", "paired", "--size", "32", "--style", "deep")
    assert result.exit_code == 0, result.output
    assert "deep style" in result.stdout
    assert json.loads((out / ".lesionaug-demo.json").read_text())["style"] == "deep"
    assert "style deep" in (out / "ATTRIBUTION.txt").read_text()
    bad = invoke("demo-data", "--out", str(tmp_path / "x"), "--style", "dark", "--json")
    assert bad.exit_code == 2 and not (tmp_path / "x").exists()
    assert len(bad.stderr.strip().splitlines()) == 1 and "'dark' is not one of" in bad.stderr
    assert "Traceback" not in bad.stderr
    monkeypatch.setenv("LESIONAUG_DEMO_DATA_STYLE", "DEEP")  # as every option: the environment, any case
    from_env = invoke("demo-data", "--out", str(tmp_path / "env"), "--n", "2", "--size", "32", "--json")
    assert json.loads(from_env.stdout)["data"]["style"] == "deep"
