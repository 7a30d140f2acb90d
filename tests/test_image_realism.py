"""Image realism: the sRGB -> Lab conversion, colour distances and the classifier two-sample test."""

from __future__ import annotations

import numpy as np
import pytest

from lesionaug.evaluate.image_realism import (
    ColourSample,
    RealismConfig,
    colour_distances,
    colour_spread,
    lab_to_srgb,
    srgb_to_lab,
    two_sample_test,
)

FAST = RealismConfig(folds=4, image_size=16, epochs=12, batch_size=16, seed=0)


def test_white_black_and_the_primaries_have_their_known_lab_values():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8))
    assert lab[0] == pytest.approx([100.0, 0.0, 0.0], abs=1e-6)  # the D65 white
    assert lab[1] == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    # Reference values of sRGB primaries under D65 (Lindbloom's calculator, 2-degree observer).
    assert lab[2] == pytest.approx([53.2408, 80.0925, 67.2032], abs=2e-3)
    assert lab[3] == pytest.approx([87.7347, -86.1827, 83.1793], abs=2e-3)
    assert lab[4] == pytest.approx([32.2970, 79.1875, -107.8602], abs=2e-3)


def test_a_mid_grey_is_neutral_and_floats_equal_bytes():
    grey = srgb_to_lab(np.array([119, 119, 119], np.uint8))
    assert grey[1:] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert grey[0] == pytest.approx(50.0, abs=0.5)  # sRGB 119 is about L* 50
    assert srgb_to_lab(np.array([1.0, 0.0, 0.0])) == pytest.approx(srgb_to_lab(np.array([255, 0, 0], np.uint8)))


def test_lab_to_srgb_inverts_srgb_to_lab_on_every_byte_value_and_clips_out_of_gamut_colours():
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    assert (lab_to_srgb(srgb_to_lab(cube)) == cube).all()  # dark colours too (the linear part of the curve)
    assert (lab_to_srgb(np.array([[100.0, 0, 0], [0.0, 0, 0]])) == [[255, 255, 255], [0, 0, 0]]).all()
    assert lab_to_srgb(np.array([50.0, 200.0, 0.0]))[0] == 255  # far past sRGB's red: clipped, not wrapped
    beyond = lab_to_srgb(np.array([[120.0, 0, 0], [-10.0, 0, 0]]))  # brighter than white, darker than black
    assert (beyond == [[255, 255, 255], [0, 0, 0]]).all()
    with pytest.raises(ValueError, match="last axis"):
        lab_to_srgb(np.zeros((4, 2)))


def test_colour_distances_see_a_shift_inside_the_lesion_only():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    real, generated = ColourSample(), ColourSample()
    skin = np.full((8, 8, 3), (200, 150, 130), np.uint8)
    real_image, generated_image = skin.copy(), skin.copy()
    real_image[mask] = (90, 60, 40)
    generated_image[mask] = (90, 60, 40)
    generated_image[mask, 2] = 90  # a bluer lesion: b* falls, L* and a* change a little
    real.add(real_image, mask)
    generated.add(generated_image, mask)
    distances = colour_distances(real, generated)
    shift = srgb_to_lab(np.array([90, 60, 40], np.uint8)) - srgb_to_lab(np.array([90, 60, 90], np.uint8))
    # One colour against one colour: the Wasserstein distance is the size of the shift, per channel.
    assert [distances["inside"][c] for c in "Lab"] == pytest.approx(np.abs(shift), abs=1e-4)
    assert distances["outside"] == {"L": 0.0, "a": 0.0, "b": 0.0}


def test_colour_spread_sees_generated_images_that_all_have_the_same_colour():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    real, varied, uniform = ColourSample(), ColourSample(), ColourSample()
    skins = [(230, 180, 160), (200, 150, 130), (150, 100, 80), (110, 70, 50)]  # light to dark skin
    for skin in skins:
        image = np.full((8, 8, 3), skin, np.uint8)
        image[mask] = (90, 60, 40)
        real.add(image, mask)
        varied.add(image, mask)
        average = np.full((8, 8, 3), (172, 125, 105), np.uint8)  # every generated image: one middle skin
        average[mask] = (90, 60, 40)
        uniform.add(average, mask)
    same = colour_spread(real, varied)
    collapsed = colour_spread(real, uniform)
    skin_lab = srgb_to_lab(np.array(skins, np.uint8))
    for c, channel in enumerate("Lab"):
        # The spread is the standard deviation of the per-image means (ddof 1), in Lab units.
        assert same["outside"][channel]["real"] == pytest.approx(skin_lab[:, c].std(ddof=1), abs=1e-9)
        assert same["outside"][channel]["ratio"] == pytest.approx(1.0)
        assert collapsed["outside"][channel]["generated"] == pytest.approx(0.0, abs=1e-9)
        assert collapsed["outside"][channel]["ratio"] == pytest.approx(0.0, abs=1e-9)
        # Every lesion has one colour in both sets: no spread to compare, so no ratio.
        assert collapsed["inside"][channel] == {"real": 0.0, "generated": 0.0, "ratio": None}


def test_colour_spread_needs_two_images_with_the_region():
    real, generated = ColourSample(), ColourSample()
    empty = np.zeros((8, 8), bool)
    for value in (50, 200):
        real.add(np.full((8, 8, 3), value, np.uint8), empty)
    generated.add(np.full((8, 8, 3), 90, np.uint8), empty)
    spread = colour_spread(real, generated)
    assert spread["inside"]["L"] == {"real": None, "generated": None, "ratio": None}  # no lesion pixels at all
    assert spread["outside"]["L"]["real"] > 0 and spread["outside"]["L"]["generated"] is None
    assert spread["outside"]["L"]["ratio"] is None


def _noise_images(rng: np.random.Generator, n: int, blob: bool) -> list[np.ndarray]:
    images = []
    for _ in range(n):
        image = rng.integers(60, 200, (24, 24, 3)).astype(np.uint8)
        if blob:
            image[6:18, 6:18] = (250, 40, 40)  # a red square no image of the other sample has
        images.append(image)
    return images


def test_two_samples_of_one_distribution_are_indistinguishable():
    rng = np.random.default_rng(1)
    result = two_sample_test(_noise_images(rng, 48, False), _noise_images(rng, 48, False), FAST)
    assert result.n_per_sample == 48 and len(result.fold_accuracies) == 4
    assert result.accuracy == pytest.approx(0.5, abs=0.12)
    assert result.accuracy == pytest.approx(np.mean(result.fold_accuracies))


def test_clearly_different_images_are_told_apart_and_the_test_repeats_exactly():
    rng = np.random.default_rng(2)
    first, second = _noise_images(rng, 32, False), _noise_images(rng, 32, True)
    result = two_sample_test(first, second, FAST)
    assert result.accuracy == pytest.approx(1.0, abs=0.05)
    assert two_sample_test(first, second, FAST) == result  # seeded: the same folds, weights and accuracy


def test_too_small_samples_give_no_accuracy():
    one = [np.zeros((8, 8, 3), np.uint8)]
    assert two_sample_test(one, one * 5, FAST).accuracy is None
