"""`lesionaug masks` on the demo data: files, JSON data, realism against the ellipse baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from lesionaug.cli import app
from lesionaug.dataset.index import load_dataset
from lesionaug.masks.features import FEATURES
from lesionaug.masks.model_file import load_shape_model
from lesionaug.masks.training_masks import fit_and_held_out

N = 200
SIZE = 96


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def data_of(result) -> dict:
    envelope = json.loads(result.stdout.strip().splitlines()[-1])
    assert envelope["command"] == "masks"
    return envelope


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """120 demo pairs (isic2018 layout, seven diagnoses): 72 to fit on, 48 held out."""
    from lesionaug.demo.write import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("masks-cli") / "isic", n=120, size=SIZE, seed=1)


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("masks-out") / "masks"
    result = invoke("masks", str(demo), "--n", str(N), "--size", str(SIZE), "--out", str(out), "--json", "-q")
    assert result.exit_code == 0, result.output
    return out, data_of(result)["data"]


def test_json_data_carries_the_realism_report(run):
    out, data = run
    assert data["n"] == N and data["out"] == str(out)
    for key in ("shape_model", "ellipse_baseline"):
        report = data["realism"][key]
        assert 0.0 <= report["c2st_accuracy"] <= 1.0
        assert set(report["ks"]) == set(FEATURES)
        assert all(0.0 <= v <= 1.0 for v in report["ks"].values())
    assert data["realism"]["n_real"] == 48 and data["realism"]["held_out"] == "val+test"


def test_shape_model_beats_the_ellipse_baseline_on_demo_data(run):
    _, data = run
    model = data["realism"]["shape_model"]["c2st_accuracy"]
    ellipses = data["realism"]["ellipse_baseline"]["c2st_accuracy"]
    # Measured: about 0.59 vs 0.81 (0.5 = indistinguishable from the held-out masks).
    assert model < ellipses - 0.1, (model, ellipses)
    assert model < 0.7


def test_writes_n_binary_one_component_pngs_and_the_model(run, demo):
    out, data = run
    files = sorted(out.glob("SYN_*.png"))
    assert len(files) == N and files[0].name == "SYN_0000001.png"
    for path in files[:: N // 20]:
        with Image.open(path) as im:
            assert im.mode == "L" and im.size == (SIZE, SIZE)
            pixels = np.asarray(im)
        assert set(np.unique(pixels)) <= {0, 255}
        assert ndimage.label(pixels > 0)[1] == 1
    model = load_shape_model(out / "shape_model.npz")
    index = load_dataset(demo)
    fit_on, _, _ = fit_and_held_out(index)
    assert model.fingerprint == index.subset_fingerprint(fit_on)
    assert data["model_file"] == str(out / "shape_model.npz")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_same_seed_same_masks_whatever_n(run, demo, tmp_path):
    out, _ = run
    result = invoke("masks", str(demo), "--n", "5", "--size", str(SIZE), "--out", str(tmp_path / "again"), "-q", "--json")
    assert result.exit_code == 0
    for k in range(1, 6):
        name = f"SYN_{k:07d}.png"
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()


def test_human_output_is_a_table(demo, tmp_path):
    result = invoke("masks", str(demo), "--n", "12", "--size", "64x48", "--out", str(tmp_path / "m"), "-q")
    assert result.exit_code == 0, result.output
    assert "C2ST accuracy" in result.stdout and "ellipses KS" in result.stdout
    with Image.open(tmp_path / "m" / "SYN_0000012.png") as im:
        assert im.size == (64, 48)


def test_real_mask_source(demo, tmp_path):
    result = invoke("masks", str(demo), "--n", "8", "--size", "64", "--mask-source", "real", "--out", str(tmp_path / "r"), "-q", "--json")
    assert result.exit_code == 0, result.output
    assert data_of(result)["data"]["mask_source"] == "real"
    for path in (tmp_path / "r").glob("SYN_*.png"):
        assert ndimage.label(np.asarray(Image.open(path)) > 0)[1] == 1


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--size", "big"], 2, "'big' is not a size"),
        (["--mask-source", "ellipse"], 2, "'ellipse' is not one of"),
        (["--n", "0"], 2, "--n must be"),
    ],
)
def test_bad_options_fail_in_one_line(demo, tmp_path, args, code, message):
    result = invoke("masks", str(demo), "--out", str(tmp_path / "x"), *args, "--json")
    assert result.exit_code == code
    envelope = data_of(result)
    assert envelope["status"] == "error" and message in envelope["errors"][0]["message"]
    assert not (tmp_path / "x").exists()


def test_refuses_to_write_inside_the_dataset(demo):
    result = invoke("masks", str(demo), "--n", "3", "--out", str(demo / "masks"), "--json")
    assert result.exit_code == 3
    assert "inside the dataset" in data_of(result)["errors"][0]["message"]


def test_missing_dataset(tmp_path):
    result = invoke("masks", str(tmp_path / "nope"), "--n", "3", "--out", str(tmp_path / "o"), "--json")
    assert result.exit_code == 3
