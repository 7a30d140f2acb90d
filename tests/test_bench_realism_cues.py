"""benchmarks/bench_realism_cues.py: the reduced views and the prompt-steering summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_realism_cues.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_realism_cues", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dermoscopy(rng, skin, vignette: bool) -> np.ndarray:
    image = np.clip(rng.normal(skin, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
    if vignette:
        y, x = np.mgrid[:32, :32]
        image[(y - 15.5) ** 2 + (x - 15.5) ** 2 > 15**2] = 0
    return image


def test_each_view_removes_its_cue(bench):
    rng = np.random.default_rng(0)
    real = [_dermoscopy(rng, (200, 150, 130), vignette=True) for _ in range(3)]
    generated = [_dermoscopy(rng, (170, 120, 100), vignette=False) for _ in range(3)]
    views = bench.views(real, generated, real, seed=0)
    assert set(views) == set(bench.VIEWS)
    # Imposing a real field of view blacks out the generated images' corners, as the real ones are.
    imposed = views["field_of_view_imposed"][1]
    assert all((image[0, 0] == 0).all() and (image[16, 16] > 0).all() for image in imposed)
    assert all((image[0, 0] > 0).any() for image in generated)
    # The centre is the middle half of each side; grey has equal channels; the mean colour is flat.
    assert views["centre"][0][0].shape == (16, 16, 3)
    grey = views["centre_grey"][1][0]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    flat = views["mean_colour"][0][0]
    assert (flat == flat[0, 0]).all() and np.abs(flat[0, 0].astype(int) - real[0].reshape(-1, 3).mean(0)).max() <= 0.5
    assert views["centre_blurred"][1][0].std() < views["centre"][1][0].std()  # the noise texture is gone


def test_steering_separates_a_generator_that_reads_its_prompt_from_one_that_does_not(bench):
    mask = np.zeros((32, 32), bool)
    mask[10:22, 10:22] = True

    def pair(lesion):
        image = np.full((32, 32, 3), (200, 150, 130), np.uint8)
        image[mask] = lesion
        return bench.region_means(image, mask)

    colours = {"mel": (60, 40, 30), "nv": (150, 100, 70)}  # a dark melanoma, a light naevus
    real = {d: [pair(c) for _ in range(3)] for d, c in colours.items()}
    follows = {d: [pair(c) for _ in range(2)] for d, c in colours.items()}
    inert = {d: [pair((105, 70, 50)) for _ in range(2)] for d in colours}
    live, dead = bench.steering(real, follows), bench.steering(real, inert)
    real_spread = live["lesion"]["spread_of_group_means_lab"]["real"]
    assert real_spread[0] > 10  # the two diagnoses' lesions differ in lightness
    assert live["lesion"]["spread_of_group_means_lab"]["generated"] == pytest.approx(real_spread, abs=1e-3)
    assert dead["lesion"]["spread_of_group_means_lab"]["generated"] == pytest.approx([0, 0, 0], abs=1e-9)
    assert dead["groups"] == {"mel": {"real": 3, "generated": 2}, "nv": {"real": 3, "generated": 2}}
