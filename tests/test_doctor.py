"""`lesionaug doctor`: versions, providers, GPUs, TensorRT and the engines in the cache folder."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import exported_engine  # noqa: E402

from lesionaug.cli._app import app  # noqa: E402


def test_doctor_json_on_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert envelope["schema"] == "lesionaug.result/1" and envelope["command"] == "doctor"
    data = envelope["data"]
    assert set(data) == {
        "versions",
        "platform",
        "onnxruntime_missing",
        "providers",
        "auto_provider",
        "gpus",
        "ort_devices",
        "tensorrt",
        "cache",
    }
    assert data["versions"]["lesionaug"] and data["versions"]["torch"]
    assert data["onnxruntime_missing"] is None
    rows = {row["provider"]: row for row in data["providers"]}
    assert set(rows) == {"tensorrt", "cuda", "cpu"}
    assert rows["cpu"]["usable"] and rows["cpu"]["reason"] is None
    for row in rows.values():  # every unusable provider says why
        assert row["usable"] or row["reason"]
    assert data["auto_provider"] in [name for name, row in rows.items() if row["usable"]]
    assert data["cache"] == {"path": str(tmp_path / "cache"), "exists": False, "engines": [], "tensorrt_caches": []}


def test_without_onnxruntime_doctor_says_which_extra_and_the_engine_refuses_in_one_line(tmp_path, monkeypatch):
    """onnxruntime and onnxruntime-gpu are extras (they are one module and conflict), so it can be absent."""
    from lesionaug.engine.providers import import_onnxruntime, resolve_provider
    from lesionaug.errors import EXIT_BACKEND, BackendError

    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # `import onnxruntime` now fails
    with pytest.raises(BackendError) as caught:
        import_onnxruntime()
    assert caught.value.exit_code == EXIT_BACKEND
    assert "lesionaug[cpu]" in caught.value.one_line() and "lesionaug[gpu]" in caught.value.one_line()
    with pytest.raises(BackendError):
        resolve_provider("cpu")

    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert "lesionaug[cpu]" in data["onnxruntime_missing"]
    assert data["auto_provider"] is None and not any(row["usable"] for row in data["providers"])
    human = CliRunner().invoke(app, ["doctor"])
    assert human.exit_code == 0 and "ONNX Runtime is not installed" in human.stdout


@pytest.mark.slow
def test_doctor_lists_exported_engines_and_engines_inside_the_cache(tmp_path, monkeypatch):
    built = exported_engine("pixel")
    cache = tmp_path / "cache"
    shutil.copytree(built.cache_dir, cache)  # holds the index export wrote
    shutil.copytree(built.engine_dir, cache / "engines" / "copy")
    missing = tmp_path / "gone"
    index = json.loads((cache / "engines.json").read_text())
    index[str(missing)] = {"path": str(missing), "precision": "fp16"}
    (cache / "engines.json").write_text(json.dumps(index))
    monkeypatch.setenv("LESIONAUG_CACHE", str(cache))

    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    engines = {e["path"]: e for e in json.loads(result.stdout)["data"]["cache"]["engines"]}
    exported = engines[str(built.engine_dir.resolve())]
    assert exported["exists"] and exported["precision"] == "fp32" and exported["size_bytes"] > 10_000
    assert set(exported["graphs"]) == {"text_encoder", "denoiser"}
    assert engines[str((cache / "engines" / "copy").resolve())]["exists"]
    assert engines[str(missing)]["exists"] is False

    human = CliRunner().invoke(app, ["doctor"])
    assert human.exit_code == 0
    assert f"engine {built.engine_dir.resolve()}" in human.stdout
    assert "(missing)" in human.stdout and "cpu       usable" in human.stdout
