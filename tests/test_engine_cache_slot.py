"""A model folder's engine in the cache belongs to its weights, not only to its card.

Two folders with the same ``lesionaug.json`` (same training config, data and steps) can hold other
weights: a GPU run retrained (not bitwise deterministic), the same command on another CPU, a library
upgrade, a hand edit. Before, the engine cache was keyed by the card alone, so ``--model`` on the
second folder silently generated with the first folder's engine.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from exported_engines import exported_engine

from lesionaug.augment import model_choice
from lesionaug.augment.model_choice import engine_for_model, engine_slot


@pytest.fixture
def model(tmp_path, monkeypatch):
    """A copy of the tiny pixel model, the cache in tmp_path, and its engine placed in its slot."""
    built = exported_engine("pixel")
    monkeypatch.setenv("LESIONAUG_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "a" / "model"
    shutil.copytree(built.model_dir, folder)
    card = json.loads((folder / "lesionaug.json").read_text())
    shutil.copytree(built.engine_dir, tmp_path / "cache" / "engines" / engine_slot(folder, card, "fp32"))
    exports = []

    def fake_export(model_dir, engine_dir, precision, reporter, allow_pickle=False):  # export is tested elsewhere
        exports.append((model_dir, engine_dir))
        shutil.copytree(built.engine_dir, engine_dir)

    monkeypatch.setattr(model_choice, "_locked_export", fake_export)
    return folder, card, exports


def _perturb_unet(folder):
    from safetensors.numpy import load_file, save_file

    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + np.float32(0.01)
    save_file(tensors, str(path))


def test_a_model_folder_with_other_weights_and_the_same_card_gets_its_own_engine(model, tmp_path):
    folder, card, exports = model
    first = engine_for_model(folder, "fp32")
    assert first.source == "cached" and exports == []
    retrained = tmp_path / "b" / "model"
    shutil.copytree(folder, retrained)
    _perturb_unet(retrained)
    assert json.loads((retrained / "lesionaug.json").read_text()) == card  # the same card...
    second = engine_for_model(retrained, "fp32")
    assert second.source == "exported" and exports == [(retrained, second.engine_dir)]  # ...its own engine
    assert second.engine_dir != first.engine_dir
    assert engine_slot(retrained, card, "fp32") != engine_slot(folder, card, "fp32")
    assert engine_slot(retrained, card, "fp16") != engine_slot(retrained, card, "fp32")


def test_the_same_weights_elsewhere_or_with_other_training_by_products_reuse_the_engine(model, tmp_path):
    folder, card, exports = model
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(folder, moved)
    for by_product in ("samples/step-9.png", "checkpoints/step-9/checkpoint.json", "loss.csv"):
        (moved / by_product).parent.mkdir(parents=True, exist_ok=True)
        (moved / by_product).write_text("not part of the engine")
    assert engine_slot(moved, card, "fp32") == engine_slot(folder, card, "fp32")
    assert engine_for_model(moved, "fp32").source == "cached" and exports == []
    # A changed tokenizer or scheduler file is part of the engine: a new slot.
    scheduler = moved / "scheduler" / "scheduler_config.json"
    config = json.loads(scheduler.read_text())
    scheduler.write_text(json.dumps({**config, "steps_offset": 1}))
    assert engine_slot(moved, card, "fp32") != engine_slot(folder, card, "fp32")
