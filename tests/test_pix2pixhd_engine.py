"""Pix2PixHD through export and augment: generator.onnx equals PyTorch, a GAN engine writes a verified,
resumable augmented folder with null sampler fields in its manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from augment_runs import output_digest
from typer.testing import CliRunner

from lesionaug.cli._app import app
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.labels import Labels
from lesionaug.engine.gan_runtime import GanEngine, is_gan_engine, load_generator_engine
from lesionaug.export.pix2pixhd import load_generator
from lesionaug.export.run import export_model
from lesionaug.formats import MANIFEST_NAME
from lesionaug.plan.label_channels import label_vector
from lesionaug.train.pix2pixhd_config import Pix2PixHDConfig
from lesionaug.train.pix2pixhd_networks import label_map
from lesionaug.train.pix2pixhd_run import train_pix2pixhd


@pytest.fixture(scope="module")
def gan(demo_isic2018, tmp_path_factory):
    """A tiny Pix2PixHD model (2 steps at 64 px) and its engine."""
    root = tmp_path_factory.mktemp("gan")
    config = Pix2PixHDConfig(model_size="tiny", resolution=64, steps=2, batch_size=2, num_samples=2)
    train_pix2pixhd(load_dataset(demo_isic2018), root / "model", config)
    export_model(root / "model", root / "engine")
    return demo_isic2018, root / "model", root / "engine"


def invoke(*args):
    result = CliRunner().invoke(app, [*map(str, args)])
    return result


def test_engine_card_records_the_generator_and_its_verification(gan):
    _, _, engine_dir = gan
    card = json.loads((engine_dir / "lesionaug.json").read_text())
    assert card["generator"] == "pix2pixhd" and card["model"]["generator"] == "pix2pixhd"
    assert list(card["graphs"]) == ["generator"] and card["noise_input"] is False
    check = card["graphs"]["generator"]["verification"]
    assert check["max_abs_diff"] <= check["tolerance"] and check["input_shapes"]["label_map"][-1] == 64
    assert is_gan_engine(engine_dir) and isinstance(load_generator_engine(engine_dir, "cpu"), GanEngine)


def test_exported_graph_equals_pytorch_on_a_real_mask_and_labels(gan):
    _, model_dir, engine_dir = gan
    generator, _ = load_generator(model_dir, json.loads((model_dir / "lesionaug.json").read_text()))
    yy, xx = np.mgrid[:64, :64]
    mask = (yy - 30) ** 2 + (xx - 34) ** 2 < 15**2
    labels = Labels(diagnosis="mel", attributes=("streaks",))
    engine = GanEngine.load(engine_dir, "cpu")
    got = engine.generate_from_labels([labels], [mask])
    with torch.no_grad():
        x = label_map(torch.from_numpy(mask[None, None].astype(np.float32)), torch.tensor([label_vector(labels)]))
        expected = ((generator(x)[0].permute(1, 2, 0).numpy().astype(np.float64) + 1) * 127.5).round().clip(0, 255)
    assert got.shape == (1, 64, 64, 3) and got.dtype == np.uint8
    assert np.abs(got[0].astype(np.int16) - expected.astype(np.int16)).max() <= 1  # rounding at a .5 edge at most
    # The labels reach the image: another diagnosis gives another image.
    other = engine.generate_from_labels([Labels(diagnosis="nv")], [mask])
    assert not np.array_equal(got, other)


def test_augment_with_a_gan_engine_is_verified_and_resumes_byte_identically(gan, tmp_path):
    dataset, _, engine_dir = gan
    args = ("--n", "6", "--batch-size", "2", "--size", "64", "--model", engine_dir, "--quiet")
    reference = tmp_path / "reference"
    assert invoke("augment", dataset, "--out", reference, *args).exit_code == 0
    assert invoke("verify", reference, "-q").exit_code == 0
    lines = [json.loads(line) for line in (reference / MANIFEST_NAME).read_text().splitlines()]
    assert len(lines) == 6
    assert all(e["scheduler"] is None and e["steps"] is None and e["guidance"] is None for e in lines)
    record = json.loads((reference / "lesionaug-run.json").read_text())
    assert record["generator"] == "pix2pixhd"
    # A run that stopped after 3 pairs: the rest of the manifest and their files gone; the same command resumes.
    resumed = tmp_path / "resumed"
    assert invoke("augment", dataset, "--out", resumed, *args).exit_code == 0
    kept = (resumed / MANIFEST_NAME).read_text().splitlines()[:3]
    for entry in lines[3:]:
        (resumed / entry["image"]).unlink()
        (resumed / entry["mask"]).unlink()
    (resumed / MANIFEST_NAME).write_text("".join(line + "\n" for line in kept))
    result = invoke("augment", dataset, "--out", resumed, *args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["n_skipped_existing"] == 3
    assert output_digest(resumed) == output_digest(reference)


def test_augment_takes_a_pix2pixhd_model_folder_through_the_cache(gan, tmp_path):
    dataset, model_dir, _ = gan
    out = tmp_path / "from-model"
    result = invoke("augment", dataset, "--out", out, "--n", "2", "--size", "64", "--model", model_dir, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["model_source"] in ("exported", "cached") and data["n_generated"] == 2
    assert invoke("verify", out, "-q").exit_code == 0


def test_a_tampered_gan_engine_is_refused_when_it_loads(gan, tmp_path):
    import shutil

    from lesionaug.errors import ModelError

    _, _, engine_dir = gan
    copy = tmp_path / "engine"
    shutil.copytree(engine_dir, copy)
    graph = copy / json.loads((copy / "lesionaug.json").read_text())["graphs"]["generator"]["file"]
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one weight byte flipped; the card still names the old sha256
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        GanEngine.load(copy, "cpu")
