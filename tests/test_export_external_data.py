"""Export with ONNX external data, the path a Stable Diffusion sized denoiser (over 2 GB) takes: the
weights beside each graph, hashed in the card, and an engine that generates what the inline one does."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import exported_engine  # noqa: E402

pytestmark = pytest.mark.slow


def test_external_data_engine_is_hashed_and_generates_as_the_inline_one(tmp_path, monkeypatch):
    import onnx

    from lesionaug.engine import Engine
    from lesionaug.engine.card import EngineCard
    from lesionaug.engine.sampler import SamplerSettings, generate
    from lesionaug.export.run import export_model

    inline = exported_engine("pixel")
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    result = export_model(inline.model_dir, tmp_path / "engine", external_data=True)
    card = EngineCard.read(tmp_path / "engine")
    for name, graph in card.graphs.items():
        data = tmp_path / "engine" / f"{graph['file']}.data"
        assert data.is_file() and data.stat().st_size > 0
        assert graph["files"][data.name] == hashlib.sha256(data.read_bytes()).hexdigest()
        model = onnx.load(str(tmp_path / "engine" / graph["file"]), load_external_data=False)
        assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        assert result.graphs[name]["verification"]["max_abs_diff"] < 1e-4
    mask = np.zeros((32, 32), bool)
    mask[6:20, 9:27] = True
    settings = SamplerSettings("ddim", 2, 3.0)
    images = [generate(Engine.load(engine, "cpu", threads=2), ["a lesion"], [mask], [7], settings)
              for engine in (inline.engine_dir, tmp_path / "engine")]
    assert np.array_equal(images[0], images[1])
