"""How realistic are sampled masks? Two-sample tests against held-out real masks.

Per shape feature, the two-sample Kolmogorov-Smirnov statistic (0 = same distribution). Jointly,
a classifier two-sample test (C2ST, Lopez-Paz & Oquab 2017): a k-nearest-neighbour classifier on
standardised features learns to tell sampled from real masks; its cross-validated accuracy on
balanced classes is 0.5 when they are indistinguishable and 1.0 when trivially separable. A naive
baseline of random ellipses is measured the same way, for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lesionaug.masks.features import FEATURES, feature_table
from lesionaug.masks.geometry import rasterise_one_region

C2ST_NEIGHBOURS = 5
C2ST_FOLDS = 5
C2ST_REPEATS = 10


def sample_ellipse_mask(
    seed: int, size: tuple[int, int], area_range: tuple[float, float]
) -> np.ndarray:
    """The naive baseline: an ellipse with area uniform over ``area_range`` (as a fraction of the
    image), axis ratio uniform in [1, 2], any orientation, centre uniform in the middle half."""
    rng = np.random.default_rng(seed)
    w, h = size
    lo, hi = area_range
    area = rng.uniform(lo, hi) * w * h
    ratio = rng.uniform(1.0, 2.0)
    major = np.sqrt(area * ratio / np.pi)
    minor = major / ratio
    angle = rng.uniform(0.0, np.pi)
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    t = np.linspace(0.0, 2 * np.pi, 128, endpoint=False)
    ex, ey = major * np.cos(t), minor * np.sin(t)
    vertices = np.stack(
        [cx + ex * np.cos(angle) - ey * np.sin(angle), cy + ex * np.sin(angle) + ey * np.cos(angle)], 1
    )
    return rasterise_one_region(vertices, (w, h))


def ks_statistics(real: np.ndarray, synthetic: np.ndarray) -> dict[str, float]:
    """Two-sample Kolmogorov-Smirnov statistic per feature (columns of the feature tables)."""
    from scipy.stats import ks_2samp

    out = {}
    for j, name in enumerate(FEATURES):
        a, b = real[:, j], synthetic[:, j]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        out[name] = float(ks_2samp(a, b).statistic) if a.size and b.size else float("nan")
    return out


def c2st_accuracy(
    real: np.ndarray,
    synthetic: np.ndarray,
    seed: int = 0,
    neighbours: int = C2ST_NEIGHBOURS,
    folds: int = C2ST_FOLDS,
    repeats: int = C2ST_REPEATS,
) -> tuple[float, float]:
    """Mean and standard deviation over repeats of the k-NN C2ST's cross-validated accuracy.

    Each repeat draws equal numbers of real and synthetic rows (the smaller count), splits them
    into stratified folds, standardises with the training folds' statistics, and scores the
    held-out fold by majority vote of the k nearest training rows.
    """
    real = real[np.all(np.isfinite(real), axis=1)]
    synthetic = synthetic[np.all(np.isfinite(synthetic), axis=1)]
    n = min(len(real), len(synthetic))
    if n < 2:
        raise ValueError(f"C2ST needs at least 2 rows per class, got {len(real)} and {len(synthetic)}")
    folds = max(2, min(folds, n))
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(repeats):
        x = np.concatenate(
            [real[rng.choice(len(real), n, replace=False)], synthetic[rng.choice(len(synthetic), n, replace=False)]]
        )
        y = np.concatenate([np.zeros(n, int), np.ones(n, int)])
        fold = np.concatenate([rng.permutation(np.arange(n) % folds), rng.permutation(np.arange(n) % folds)])
        correct = 0
        for f in range(folds):
            train, test = fold != f, fold == f
            correct += int(np.sum(_knn_predict(x[train], y[train], x[test], neighbours) == y[test]))
        scores.append(correct / (2 * n))
    return float(np.mean(scores)), float(np.std(scores))


def _knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int) -> np.ndarray:
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    a, b = (x_train - mean) / std, (x_test - mean) / std
    dist = ((b[:, None, :] - a[None, :, :]) ** 2).sum(axis=2)
    k = max(1, min(k, len(a)))
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    votes = y_train[nearest].mean(axis=1)
    # Ties (even k) go to the class of the single nearest neighbour.
    return np.where(votes == 0.5, y_train[nearest[:, 0]], (votes > 0.5).astype(int))


def compare_features(real: np.ndarray, synthetic: np.ndarray, seed: int = 0) -> dict:
    accuracy, spread = c2st_accuracy(real, synthetic, seed=seed)
    return {
        "c2st_accuracy": accuracy,
        "c2st_std": spread,
        "ks": ks_statistics(real, synthetic),
        "n": len(synthetic),
    }


def realism_report(
    real_masks: Sequence[np.ndarray],
    sampled_masks: Sequence[np.ndarray],
    ellipse_masks: Sequence[np.ndarray],
    seed: int = 0,
) -> dict:
    """KS statistics and C2ST accuracy of sampled masks and of the ellipse baseline vs real ones."""
    real = feature_table(real_masks)
    return realism_from_features(real, feature_table(sampled_masks), feature_table(ellipse_masks), seed)


def realism_from_features(real: np.ndarray, sampled: np.ndarray, ellipses: np.ndarray, seed: int = 0) -> dict:
    return {
        "n_real": len(real),
        "features": list(FEATURES),
        "classifier": f"{C2ST_NEIGHBOURS}-NN, {C2ST_FOLDS}-fold CV, {C2ST_REPEATS} repeats, balanced classes",
        "real_means": dict(zip(FEATURES, np.nanmean(real, axis=0).tolist())),
        "shape_model": compare_features(real, sampled, seed),
        "ellipse_baseline": compare_features(real, ellipses, seed),
    }
