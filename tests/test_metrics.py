"""Metrics: hand-worked tiny masks, the official ISIC scorer on random masks, SSIM against skimage."""

from __future__ import annotations

import numpy as np
import pytest

from lesionaug.evaluate.metrics import (
    METRIC_NAMES,
    Confusion,
    MaskScores,
    binary_confusion,
    macro_average,
    score_masks,
    structural_similarity,
)


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


def test_confusion_counts_on_a_hand_worked_4x4():
    truth = _mask(["##..", "##..", "....", "...."])
    pred = _mask([".##.", ".##.", "....", "...."])
    # truth has 4 positives (cols 0-1, rows 0-1); prediction covers cols 1-2, rows 0-1.
    # overlap: col 1 rows 0-1 -> TP 2; prediction outside truth: col 2 -> FP 2;
    # truth missed: col 0 -> FN 2; the rest of 16 pixels -> TN 10.
    assert binary_confusion(truth, pred) == Confusion(tp=2, tn=10, fp=2, fn=2)

    scores = score_masks(truth, pred)
    assert scores.jaccard == pytest.approx(2 / 6)  # TP / (TP + FP + FN) = 2 / 6
    assert scores.threshold_jaccard == 0.0  # 0.333 < 0.65
    assert scores.dice == pytest.approx(4 / 8)  # 2TP / (2TP + FP + FN) = 4 / 8
    assert scores.sensitivity == pytest.approx(2 / 4)  # TP / (TP + FN)
    assert scores.specificity == pytest.approx(10 / 12)  # TN / (TN + FP)
    assert scores.accuracy == pytest.approx(12 / 16)  # (TP + TN) / 16


def test_threshold_jaccard_keeps_values_at_or_above_065():
    truth = _mask(["####", "####", "....", "...."])
    pred = _mask(["####", "###.", "....", "...."])
    # TP 7, FN 1, FP 0 -> J = 7/8 = 0.875 >= 0.65, so the thresholded J equals J.
    scores = score_masks(truth, pred)
    assert scores.jaccard == pytest.approx(0.875)
    assert scores.threshold_jaccard == pytest.approx(0.875)


def test_degenerate_cases_follow_the_official_conventions():
    empty = np.zeros((3, 3), dtype=bool)
    full = np.ones((3, 3), dtype=bool)

    # Empty truth, empty prediction: a perfect answer, every metric 1.
    assert score_masks(empty, empty) == MaskScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)

    # Empty truth, full prediction: TP 0, FP 9 -> J = Dice = 0; no positives, so sensitivity 1;
    # TN 0 of 9 negatives -> specificity 0; accuracy 0.
    s = score_masks(empty, full)
    assert (s.jaccard, s.dice, s.sensitivity, s.specificity, s.accuracy) == (0.0, 0.0, 1.0, 0.0, 0.0)

    # Full truth, full prediction: TP 9; no negatives, so specificity 1.
    s = score_masks(full, full)
    assert (s.jaccard, s.dice, s.sensitivity, s.specificity) == (1.0, 1.0, 1.0, 1.0)


def test_macro_average_is_the_unweighted_mean_per_image():
    a = MaskScores(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    b = MaskScores(0.5, 1 / 3, 0.0, 0.5, 0.75, 0.5)
    mean = macro_average([a, b])
    assert mean.dice == pytest.approx(0.75)
    assert mean.jaccard == pytest.approx(2 / 3)
    assert mean.threshold_jaccard == pytest.approx(0.5)
    with pytest.raises(ValueError):
        macro_average([])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        binary_confusion(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def _random_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A truth blob and a shifted, noisy prediction, with occasional empty or full masks."""
    h, w = int(rng.integers(4, 40)), int(rng.integers(4, 40))
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, max(h, w))
    truth = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    pred = np.roll(truth, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
    pred ^= rng.random((h, w)) < rng.uniform(0, 0.2)
    kind = rng.integers(0, 8)
    if kind == 0:
        truth[:] = False
    elif kind == 1:
        pred[:] = False
    elif kind == 2:
        truth[:] = True
    elif kind == 3:
        truth[:] = False
        pred[:] = False
    return truth, pred


def test_every_metric_matches_isic_challenge_scoring_on_random_masks():
    confusion = pytest.importorskip("isic_challenge_scoring.confusion")
    official = pytest.importorskip("isic_challenge_scoring.metrics")
    rng = np.random.default_rng(2018)
    ours_all, theirs_all = [], []
    for _ in range(300):
        truth, pred = _random_pair(rng)
        cm = confusion.create_binary_confusion_matrix(truth, pred)
        theirs = {
            "dice": official.binary_dice(cm),
            "jaccard": official.binary_jaccard(cm),
            "threshold_jaccard": official.binary_threshold_jaccard(cm),
            "sensitivity": official.binary_sensitivity(cm),
            "specificity": official.binary_specificity(cm),
            "accuracy": official.binary_accuracy(cm),
        }
        ours = score_masks(truth, pred)
        for name in METRIC_NAMES:
            assert getattr(ours, name) == pytest.approx(float(theirs[name]), abs=1e-12), name
        ours_all.append(ours)
        theirs_all.append(theirs)
    macro = macro_average(ours_all)
    for name in METRIC_NAMES:
        assert getattr(macro, name) == pytest.approx(np.mean([t[name] for t in theirs_all]), abs=1e-12)


@pytest.mark.parametrize("shape", [(48, 64, 3), (33, 29), (7, 7, 3)])
def test_ssim_matches_skimage_defaults(shape):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.integers(-60, 61, shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    kwargs = {"channel_axis": -1} if len(shape) == 3 else {}
    expected = skimage_metrics.structural_similarity(a, b, **kwargs)
    assert structural_similarity(a, b) == pytest.approx(expected, abs=1e-3)
    assert structural_similarity(a, a) == pytest.approx(1.0)


def test_ssim_float_images_need_a_data_range():
    a = np.zeros((8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="data_range"):
        structural_similarity(a, a)
    assert structural_similarity(a, a, data_range=1.0) == pytest.approx(1.0)
