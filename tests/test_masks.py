"""Shape model, mask geometry, shape features and realism statistics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lesion_shapes import lesion_mask, lesion_masks
from scipy import ndimage

from lesionaug.errors import ConfigError, UsageError
from lesionaug.masks.features import FEATURES, shape_features
from lesionaug.masks.geometry import (
    fill_polygon,
    keep_one_component,
    polygon_from_radii,
    polygon_spans,
    radial_outline,
    spans_form_one_region,
    spans_to_mask,
    upsample_periodic,
)
from lesionaug.masks.model_file import load_shape_model, save_shape_model
from lesionaug.masks.realism import (
    c2st_accuracy,
    ks_statistics,
    realism_report,
    sample_ellipse_mask,
)
from lesionaug.masks.sampling import choose_source, mask_seed, sample_mask
from lesionaug.masks.shape_model import (
    POOLED,
    ShapeModelConfig,
    describe_lesion,
    fit_shape_model,
    sample_model_mask,
)

SEEDS = st.integers(min_value=0, max_value=2**63 - 1)
SIZES = st.tuples(st.integers(24, 160), st.integers(24, 160))


@pytest.fixture(scope="module")
def training():
    return lesion_masks(60, seed=3)


@pytest.fixture(scope="module")
def model(training):
    masks, diagnoses = training
    return fit_shape_model(masks, diagnoses, fingerprint="test-fingerprint")


def _is_one_region(mask: np.ndarray) -> bool:
    return ndimage.label(mask)[1] == 1 and bool(np.array_equal(ndimage.binary_fill_holes(mask), mask))


# --- geometry -------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cx=st.floats(-20, 100),
    cy=st.floats(-20, 80),
    radius=st.floats(1.5, 60),
    orientation=st.floats(0, 7),
)
def test_fill_polygon_sets_exactly_the_pixel_centres_inside(seed, cx, cy, radius, orientation):
    from matplotlib.path import Path as PolygonPath

    rng = np.random.default_rng(seed)
    log_r = np.log(radius) + 0.3 * rng.standard_normal(32) * np.exp(-np.arange(32) / 6)
    vertices = polygon_from_radii((cx, cy), log_r, orientation, n_vertices=96)
    mask = fill_polygon(vertices, (80, 60))
    yy, xx = np.mgrid[0:60, 0:80]
    inside = PolygonPath(vertices).contains_points(np.c_[xx.ravel() + 0.5, yy.ravel() + 0.5]).reshape(60, 80)
    assert np.array_equal(mask, inside)


def test_fill_polygon_of_a_square_by_hand():
    # The square [1.2, 4.7] x [0.6, 2.4] contains pixel centres x in {1.5..4.5} (cols 1-4) and
    # y in {1.5} only (row 1): 0.5 < 0.6 and 2.5 > 2.4.
    square = np.array([[1.2, 0.6], [4.7, 0.6], [4.7, 2.4], [1.2, 2.4]])
    mask = fill_polygon(square, (6, 4))
    expected = np.zeros((4, 6), bool)
    expected[1, 1:5] = True
    assert np.array_equal(mask, expected)


def test_one_span_per_overlapping_row_means_one_region():
    v = polygon_from_radii((30, 30), np.full(16, np.log(12.0)), 0.0)
    spans = polygon_spans(v, (60, 60))
    assert spans_form_one_region(spans, 60)
    assert _is_one_region(spans_to_mask(spans, (60, 60)))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 100_000), roughness=st.floats(0.0, 1.2), cx=st.floats(-10, 70), radius=st.floats(0.8, 40))
def test_span_tree_test_is_never_wrong(seed, roughness, cx, radius):
    # Rough outlines make rows with several spans, holes are impossible for a star-shaped polygon
    # but a clipped or jagged one can fall apart; whenever the span test says "one region", the
    # pixel labelling must agree.
    rng = np.random.default_rng(seed)
    log_r = np.log(radius) + roughness * rng.standard_normal(48) * np.exp(-np.arange(48) / 12)
    spans = polygon_spans(polygon_from_radii((cx, 30.0), log_r, rng.uniform(0, 6), n_vertices=192), (60, 50))
    mask = spans_to_mask(spans, (60, 50))
    if spans_form_one_region(spans, 60):
        assert _is_one_region(mask)


def test_span_tree_test_sees_holes_and_corners():
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    diagonal = np.zeros((4, 4), bool)
    diagonal[1, 1] = diagonal[2, 2] = True
    two = np.zeros((5, 9), bool)
    two[1:4, 1:3] = two[1:4, 5:8] = True
    for mask, expected in ((ring, False), (diagonal, False), (two, False), (ring | ~ring, True)):
        assert spans_form_one_region(_spans_of(mask), mask.shape[1]) is expected


def _spans_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, start, end = [], [], []
    for r, line in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(int), [0]])))
        rows += [r] * (edges.size // 2)
        start += list(edges[0::2])
        end += list(edges[1::2])
    return np.array(rows), np.array(start), np.array(end)


def test_keep_one_component_keeps_the_largest_and_fills_holes():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5:8, 5:8] = False  # a hole
    mask[15:18, 15:18] = True  # a smaller second component
    out = keep_one_component(mask)
    assert _is_one_region(out)
    assert out.sum() == 100 and not out[16, 16]


def test_radial_outline_of_a_disc_and_of_a_clipped_disc():
    yy, xx = np.mgrid[0:101, 0:101] + 0.5
    disc = (xx - 50.5) ** 2 + (yy - 50.5) ** 2 <= 30**2
    outline = radial_outline(disc, 32)
    assert np.allclose(outline.radii, 30, atol=0.8)
    assert not outline.censored.any()
    clipped = disc[:, 35:]  # cut through the disc at x = 35 (15.5 px left of its centre)
    outline = radial_outline(clipped, 32)
    assert outline.censored.any() and outline.censored[16]  # the ray pointing left (angle pi)


def test_upsampling_a_band_limited_outline_is_exact():
    theta = np.arange(16) * 2 * np.pi / 16
    values = 0.3 * np.cos(2 * theta) + 0.1 * np.sin(3 * theta)
    dense = upsample_periodic(values, 64)
    fine = np.arange(64) * 2 * np.pi / 64
    assert np.allclose(dense, 0.3 * np.cos(2 * fine) + 0.1 * np.sin(3 * fine), atol=1e-12)


def test_describe_lesion_recovers_an_ellipse_placement():
    yy, xx = np.mgrid[0:120, 0:160] + 0.5
    angle = np.deg2rad(30)
    u = (xx - 70) * np.cos(angle) + (yy - 55) * np.sin(angle)
    v = -(xx - 70) * np.sin(angle) + (yy - 55) * np.cos(angle)
    ellipse = (u / 40) ** 2 + (v / 20) ** 2 <= 1
    info = describe_lesion(ellipse)
    assert info["centre"] == pytest.approx((70 / 160, 55 / 120), abs=0.01)
    assert np.mod(info["orientation"] - angle, np.pi) == pytest.approx(0, abs=0.05) or np.mod(
        info["orientation"] - angle, np.pi
    ) == pytest.approx(np.pi, abs=0.05)
    # Around its centre an ellipse has r(t) = ab / sqrt(b^2 cos^2 t + a^2 sin^2 t), and the mean of
    # log(b^2 cos^2 + a^2 sin^2) over t is 2 log((a + b) / 2): the mean log radius is
    # log(ab / ((a + b) / 2)) = log(800 / 30), a radius of 26.67 px.
    assert np.exp(info["log_scale"] + 0.5 * np.log(160 * 120)) == pytest.approx(800 / 30, rel=0.01)
    assert not info["clipped"]


def test_describe_lesion_of_an_empty_mask_is_none():
    assert describe_lesion(np.zeros((30, 30), bool)) is None


# --- fitting and sampling -------------------------------------------------------------------


def test_one_group_per_diagnosis_with_enough_lesions(training):
    masks, diagnoses = training
    model = fit_shape_model(masks, diagnoses, config=ShapeModelConfig(min_per_diagnosis=8))
    assert set(model.groups) == {POOLED, "mel", "nv", "bkl"}
    assert model.group_for("vasc") is model.groups[POOLED]  # unseen diagnosis: the pooled model
    assert model.group_for(None) is model.groups[POOLED]
    few = fit_shape_model(masks, diagnoses, config=ShapeModelConfig(min_per_diagnosis=30))
    assert set(few.groups) == {POOLED}


def test_diagnosis_models_keep_their_sizes(model):
    # In the fixture nevi are small (area 3-20%) and melanomas large (5-45%).
    nv = np.mean([sample_mask(model, s, "nv", (96, 80)).mean() for s in range(40)])
    mel = np.mean([sample_mask(model, s, "mel", (96, 80)).mean() for s in range(40)])
    assert nv < 0.7 * mel


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=SEEDS, size=SIZES, diagnosis=st.sampled_from([None, "mel", "nv", "bkl", "vasc"]))
def test_model_masks_are_one_binary_region_within_the_data_area_range(model, seed, size, diagnosis):
    mask = sample_mask(model, seed, diagnosis, size)
    assert mask.dtype == bool and mask.shape == (size[1], size[0])
    assert _is_one_region(mask)
    lo, hi = model.group_for(diagnosis).area_range
    assert lo <= mask.mean() <= hi


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=SEEDS, size=SIZES, source=st.sampled_from(["model", "real", "mixed"]))
def test_same_seed_same_mask(model, seed, size, source):
    a = sample_mask(model, seed, "mel", size, source)
    b = sample_mask(model, seed, "mel", size, source)
    assert np.array_equal(a, b)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=SEEDS, size=SIZES)
def test_real_masks_are_one_region(model, seed, size):
    mask = sample_mask(model, seed, None, size, "real")
    assert mask.shape == (size[1], size[0]) and mask.sum() > 0
    assert _is_one_region(mask)


def test_different_seeds_give_different_masks(model):
    masks = [sample_mask(model, mask_seed(0, k), None, (64, 64)) for k in range(20)]
    distinct = {m.tobytes() for m in masks}
    assert len(distinct) == 20


def test_mixed_source_draws_both(model):
    sources = [choose_source("mixed", mask_seed(1, k)) for k in range(200)]
    assert 60 < sources.count("real") < 140
    with pytest.raises(UsageError, match="unknown mask source"):
        choose_source("ellipse", 0)


def test_real_source_of_clipped_masks_stays_clipped(model):
    # A real clipped lesion keeps touching the border: its cut edge is never pulled inside.
    clipped = [i for i, m in enumerate(model.real_masks) if m[:, 0].any() or m[:, -1].any() or m[0].any() or m[-1].any()]
    assert clipped, "fixture should contain clipped lesions"
    from lesionaug.masks.jitter import warp_mask

    rng = np.random.default_rng(0)
    for i in clipped[:5]:
        out = warp_mask(model.real_masks[i], (96, 80), rng)
        assert out[0].any() or out[-1].any() or out[:, 0].any() or out[:, -1].any()


def test_fit_needs_two_lesions():
    with pytest.raises(ConfigError, match="at least 2"):
        fit_shape_model([np.zeros((20, 20), bool), lesion_mask(np.random.default_rng(0))])


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError):
        ShapeModelConfig(n_angles=7)
    with pytest.raises(ConfigError):
        ShapeModelConfig(shape_bandwidth=-1)


def test_save_load_round_trip(model, tmp_path):
    path = save_shape_model(model, tmp_path / "shape_model.npz")
    loaded = load_shape_model(path)
    assert loaded.fingerprint == "test-fingerprint"
    assert loaded.config == model.config
    assert set(loaded.groups) == set(model.groups)
    for source in ("model", "real"):
        for seed in range(5):
            a = sample_mask(model, seed, "nv", (64, 48), source)
            b = sample_mask(loaded, seed, "nv", (64, 48), source)
            assert np.array_equal(a, b)
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "not_a_model.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ConfigError, match="cannot read shape model"):
        load_shape_model(bad)
    (tmp_path / "garbage.npz").write_bytes(b"nope")
    with pytest.raises(ConfigError):
        load_shape_model(tmp_path / "garbage.npz")


# --- shape features -------------------------------------------------------------------------


def test_shape_features_by_hand():
    full = np.ones((64, 64), bool)
    f = dict(zip(FEATURES, shape_features(full)))
    assert f["area_fraction"] == 1 and f["border_contact"] == 1 and f["solidity"] == pytest.approx(1)
    # A centred 128x64 rectangle in a 256x256 frame: eccentricity sqrt(1 - (64/128)^2) = 0.866.
    rect = np.zeros((256, 256), bool)
    rect[96:160, 64:192] = True
    f = dict(zip(FEATURES, shape_features(rect)))
    assert f["eccentricity"] == pytest.approx(np.sqrt(0.75), abs=0.01)
    assert f["solidity"] == pytest.approx(1.0)
    assert f["border_contact"] == 0 and f["centroid_x"] == pytest.approx(0.5)
    # Perimeter: 2 * (128 + 64) = 384 pixel edges, times pi/4; area 8192.
    assert f["perimeter2_area"] == pytest.approx((384 * np.pi / 4) ** 2 / 8192)
    # An L: three quarters of its 2x2 block, whose hull is the block minus a corner triangle.
    ell = np.zeros((256, 256), bool)
    ell[0:128, 0:64] = True
    ell[64:128, 64:128] = True
    f = dict(zip(FEATURES, shape_features(ell)))
    assert f["solidity"] == pytest.approx(12288 / (16384 - 0.5 * 64 * 64), rel=1e-3)


def test_empty_mask_features_are_nan():
    assert np.isnan(shape_features(np.zeros((10, 10), bool))).all()


# --- realism statistics ---------------------------------------------------------------------


def test_c2st_and_ks_on_known_distributions():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, len(FEATURES)))
    same = rng.normal(size=(200, len(FEATURES)))
    shifted = same + 3.0
    assert abs(c2st_accuracy(a, same)[0] - 0.5) < 0.08
    assert c2st_accuracy(a, shifted)[0] > 0.97
    ks = ks_statistics(a, a.copy())
    assert set(ks) == set(FEATURES) and all(v == 0 for v in ks.values())


def test_ellipse_baseline_masks_are_ellipses_in_range():
    for seed in range(10):
        mask = sample_ellipse_mask(seed, (128, 96), (0.05, 0.3))
        assert _is_one_region(mask)
        assert 0.04 <= mask.mean() <= 0.31
        assert shape_features(mask)[FEATURES.index("solidity")] > 0.95


def test_shape_model_is_more_realistic_than_ellipses_on_fixture_masks(model):
    held_out, _ = lesion_masks(80, seed=11)
    sampled = [sample_mask(model, mask_seed(0, k), ("mel", "nv", "bkl")[k % 3], (96, 80)) for k in range(120)]
    ellipses = [sample_ellipse_mask(k, (96, 80), model.area_range) for k in range(120)]
    report = realism_report(held_out, sampled, ellipses)
    assert report["shape_model"]["c2st_accuracy"] < report["ellipse_baseline"]["c2st_accuracy"] - 0.1


def test_an_unreachable_area_range_still_gives_a_non_empty_mask(model):
    # Two areas 1e-4 apart cannot be hit on a 24x24 grid (one pixel is 1.7e-3): the closest wins.
    narrow = replace(model.groups[POOLED], area_range=(0.2, 0.2001))
    mask = sample_model_mask(narrow, model.config, 7, (24, 24))
    assert mask.any() and abs(mask.mean() - 0.2) < 0.02
