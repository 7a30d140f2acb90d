"""`lesionaug export`: graphs, verification numbers, the engine card, and every way an export must fail."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from exported_engines import exported_engine  # noqa: E402
from tiny_models import write_tiny_pixel_model  # noqa: E402

from lesionaug.cli._app import app  # noqa: E402
from lesionaug.engine.card import EngineCard  # noqa: E402
from lesionaug.errors import ConfigError, ModelError  # noqa: E402


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory) -> Path:
    return write_tiny_pixel_model(tmp_path_factory.mktemp("pixel") / "model")


@pytest.mark.slow
def test_pixel_export_writes_a_verified_engine():
    built = exported_engine("pixel")
    card = EngineCard.read(built.engine_dir)
    raw = json.loads((built.engine_dir / "lesionaug.json").read_text())
    assert raw["format"] == "lesionaug.engine/1"
    assert set(card.graphs) == {"text_encoder", "denoiser"}
    assert (card.latent, card.channels, card.scale, card.size_multiple) == (False, 3, 1, 4)
    assert raw["model"]["base"] == "compact" and raw["precision"] == "fp32" and raw["opset"] == 18
    assert raw["exporter"]["torch"] and raw["libraries"]["diffusers"]
    for name, graph in card.graphs.items():
        assert graph["sha256"] == _sha256(built.engine_dir / graph["file"])
        check = graph["verification"]
        assert check["finite"] and check["max_abs_diff"] < 1e-4 < check["tolerance"]
    denoiser = card.graphs["denoiser"]["inputs"]
    assert list(denoiser) == ["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale"]
    # Dynamic batch; height and width declared as multiples of what the UNet needs.
    assert denoiser["sample"] == ["batch", 3, "4*height_units", "4*width_units"]
    assert card.graphs["denoiser"]["outputs"] == {"noise_pred": ["batch", 3, "4*height_units", "4*width_units"]}
    assert (built.engine_dir / "tokenizer" / "vocab.json").is_file()
    assert (built.engine_dir / "scheduler" / "scheduler_config.json").is_file()
    assert _no_leftovers(built.engine_dir.parent) == []


@pytest.mark.slow
def test_latent_export_adds_an_fp32_vae_decoder():
    built = exported_engine("latent")
    card = EngineCard.read(built.engine_dir)
    assert set(card.graphs) == {"text_encoder", "denoiser", "vae_decoder"}
    assert (card.latent, card.channels, card.scale, card.size_multiple) == (True, 4, 8, 32)
    vae = card.graphs["vae_decoder"]
    assert vae["precision"] == "fp32"
    assert vae["inputs"]["latents"] == ["batch", 4, "4*height_units", "4*width_units"]
    assert card.graphs["denoiser"]["inputs"]["controlnet_cond"] == ["batch", 3, "32*height_units", "32*width_units"]
    assert all(g["verification"]["max_abs_diff"] < 1e-4 for g in card.graphs.values())


@pytest.mark.slow
def test_engine_refuses_sizes_that_are_not_a_multiple():
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate

    engine = Engine.load(exported_engine("latent").engine_dir, "cpu")
    mask = np.zeros((64, 80), bool)
    with pytest.raises(ConfigError, match=r"width 80 is not a multiple of 32 px") as info:
        generate(engine, ["a lesion"], [mask], [0], SamplerSettings(steps=1))
    assert "64 or 96 px" in info.value.fix


def test_forced_verification_failure_exits_4_and_leaves_nothing(pixel_model, tmp_path, monkeypatch):
    import lesionaug.export.graphs as graphs

    real = graphs.run_reference
    monkeypatch.setattr(graphs, "run_reference", lambda spec, inputs: real(spec, inputs) + 0.5)
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "engine"
    result = CliRunner().invoke(app, ["export", str(pixel_model), "--out", str(out), "--json"])
    assert result.exit_code == 4, result.output
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "error" and envelope["errors"][0]["code"] == "model_unavailable"
    assert "verification failed: text_encoder.onnx differs from PyTorch by 0.5" in envelope["errors"][0]["message"]
    assert not out.exists()
    assert _no_leftovers(tmp_path) == []
    assert not (tmp_path / "cache" / "engines.json").exists()


def test_existing_engine_folder_is_refused_without_force(pixel_model, tmp_path):
    out = tmp_path / "engine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["export", str(pixel_model), "--out", str(out)])
    assert result.exit_code == 3
    assert "pass --force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: (m / "lesionaug.json").unlink(), "no lesionaug.json"),
        (lambda m: __import__("shutil").rmtree(m / "controlnet"), "missing controlnet/"),
        (lambda m: (m / "lesionaug.json").write_text('{"format": "other"}'), "format is not"),
    ],
)
def test_bad_model_folder_exits_4_with_one_line(pixel_model, tmp_path, damage, message):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(pixel_model, model)
    damage(model)
    result = CliRunner().invoke(app, ["export", str(model), "--out", str(tmp_path / "engine")])
    assert result.exit_code == 4
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "engine").exists()


def test_bad_precision_and_opset_are_usage_errors(pixel_model, tmp_path):
    from lesionaug.errors import UsageError
    from lesionaug.export.run import export_model

    with pytest.raises(UsageError, match="precision"):
        export_model(pixel_model, tmp_path / "e", precision="int8")
    with pytest.raises(UsageError, match="opset 12"):
        export_model(pixel_model, tmp_path / "e", opset=12)


def test_model_card_size_multiple_must_fit_the_unet(pixel_model, tmp_path):
    import shutil

    from lesionaug.export.run import export_model

    model = tmp_path / "model"
    shutil.copytree(pixel_model, model)
    card = json.loads((model / "lesionaug.json").read_text())
    card["size_multiple"] = 2  # the tiny pixel UNet downsamples twice: it needs 4
    (model / "lesionaug.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="UNet needs a multiple of 4 px"):
        export_model(model, tmp_path / "engine")
    assert not (tmp_path / "engine").exists() and _no_leftovers(tmp_path) == []


@pytest.mark.slow
def test_export_fails_for_sides_the_unet_cannot_take(pixel_model, tmp_path):
    """Declaring a multiple the UNet cannot take fails in torch.export, with a message, not in ORT later."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    from lesionaug.export import graphs as g
    unet = UNet2DConditionModel.from_pretrained(pixel_model / "unet").eval()
    controlnet = ControlNetModel.from_pretrained(pixel_model / "controlnet").eval()
    geometry = g.Geometry(latent=False, channels=3, scale=1, sample_multiple=2, token_length=32, hidden_size=32)
    spec = g.denoiser_spec(unet, controlnet, geometry, torch.float32)
    example = g.sample_inputs(g.DENOISER, geometry, batch=2, units=(2, 2), seed=0)
    with pytest.raises(ModelError, match="cannot be exported for every declared size") as info:
        g.export_graph(spec, example, tmp_path / "denoiser.onnx", 18)
    assert "multiple" in info.value.fix
    assert not (tmp_path / "denoiser.onnx").exists()


def test_fp16_text_encoder_is_half_precision_and_verifies(pixel_model, tmp_path):
    """The fp16 path on the cheapest graph: half weights, float32 in and out, norms in float32, no NaN."""
    import onnx

    from lesionaug.export import graphs as g
    from lesionaug.export.parts import graph_specs, load_export_parts
    from lesionaug.export.run import read_model_card, verify_graph

    parts = load_export_parts(pixel_model, read_model_card(pixel_model))
    spec, reference = graph_specs(parts, "fp16")[g.TEXT_ENCODER]
    example = g.sample_inputs(g.TEXT_ENCODER, parts.geometry, batch=2, units=(1, 1), seed=0, vocab_size=8)
    path = tmp_path / spec.filename
    g.export_graph(spec, example, path, 18)
    model = onnx.load(str(path))
    kinds = {init.data_type for init in model.graph.initializer if len(init.dims) == 2}
    assert onnx.TensorProto.FLOAT16 in kinds  # the weight matrices are half
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    check = verify_graph(g.TEXT_ENCODER, reference, path, parts, "fp16")
    assert check["finite"] and 0 < check["max_abs_diff"] < 1e-2
