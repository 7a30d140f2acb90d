"""The paired gain of synthetic pairs, per test image, with intervals that count test images.

For one synthetic count, ``D[s, i]`` is seed ``s``'s +synthetic segmenter's Dice on test image ``i``
minus seed ``s``'s real-only segmenter's Dice on the same image (the same seed: the same weights'
initialisation and data order). From it:

- the gain per image, ``g_i = mean_s D[s, i]``, and the gain ``mean_i g_i`` (equal to the mean over
  seeds of the macro-Dice difference, so ``delta_vs_real`` keeps its meaning);
- a two-way percentile bootstrap 95% interval: seeds and test images resampled independently with
  replacement, the statistic the mean of ``D`` over the drawn seeds and images; it counts both the
  luck of the seeds and the choice of test images (``scipy.stats.bootstrap``, seeded);
- the paired t interval over seeds (``scipy.stats.ttest_rel(...).confidence_interval()``), which
  sees the seeds only, as the earlier reports did;
- the two-sided Wilcoxon signed-rank p-value of the per-image gains ``g_i``;
- the same per diagnosis, where the test images have labels.

``delta_ci95`` (the key earlier reports used for the t interval) is now the bootstrap interval, the
one that counts test images; ``delta_t_ci95`` keeps the seeds-only t interval beside it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_BATCH = 500  # resamples evaluated at once (bounds memory for large test splits)
CI_METHOD = (
    "a two-way percentile bootstrap over test images and seeds (9999 resamples, seeded; seeds and images "
    "resampled independently); the t interval over seeds alone is given beside it"
)


def bootstrap_interval(differences: np.ndarray, seed: int = 0) -> list[float] | None:
    """95% percentile interval of the mean of ``differences`` (seeds x images), both axes resampled.

    An axis of length 1 is not resampled (nothing to draw); None when neither axis can be.
    """
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    n_seeds, n_images = d.shape
    axes = [n for n in (n_seeds, n_images) if n >= 2]
    if not axes:
        return None

    def mean_of_draw(*drawn, axis=-1):
        seeds = drawn[0].astype(int) if n_seeds >= 2 else np.zeros(drawn[0].shape[:-1] + (1,), int)
        images = drawn[-1].astype(int) if n_images >= 2 else np.zeros(drawn[-1].shape[:-1] + (1,), int)
        return d[seeds[..., :, None], images[..., None, :]].mean(axis=(-2, -1))

    data = tuple(np.arange(n) for n in axes)
    result = stats.bootstrap(
        data, mean_of_draw, n_resamples=BOOTSTRAP_RESAMPLES, batch=BOOTSTRAP_BATCH, vectorized=True,
        paired=False, method="percentile", rng=np.random.default_rng([seed, 0xB007]),
    )
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def t_interval(augmented_macro: Sequence[float], baseline_macro: Sequence[float]) -> list[float] | None:
    """95% paired t interval of the per-seed macro-Dice differences (None with fewer than two seeds)."""
    from scipy import stats

    if len(augmented_macro) < 2:
        return None
    differences = np.asarray(augmented_macro, np.float64) - np.asarray(baseline_macro, np.float64)
    if np.all(differences == differences[0]):  # no spread: the interval is the point (scipy warns)
        return [float(differences[0]), float(differences[0])]
    interval = stats.ttest_rel(augmented_macro, baseline_macro).confidence_interval(0.95)
    return [float(interval.low), float(interval.high)]


def wilcoxon_p(gains: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of per-image gains (1.0 when no image changed)."""
    from scipy import stats

    g = np.asarray(gains, dtype=np.float64)
    if g.size == 0:
        return None
    if not np.any(g):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # few non-zero gains: scipy warns, the p-value stands
        return float(stats.wilcoxon(g).pvalue)


def paired_gain(augmented: np.ndarray, baseline: np.ndarray, seed: int = 0) -> dict:
    """Gain statistics of one synthetic count from per-image Dice arrays (seeds x images)."""
    augmented = np.asarray(augmented, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if augmented.shape != baseline.shape or augmented.ndim != 2:
        raise ValueError(f"per-image Dice arrays must both be seeds x images, got {augmented.shape}, {baseline.shape}")
    differences = augmented - baseline
    gains = differences.mean(axis=0)
    return {
        "delta": float(differences.mean()),
        "gain_per_image": [float(g) for g in gains],
        "bootstrap_ci95": bootstrap_interval(differences, seed),
        "t_ci95": t_interval(augmented.mean(axis=1), baseline.mean(axis=1)),
        "p_wilcoxon": wilcoxon_p(gains),
        "images_better": int(np.sum(gains > 0)),
        "images_worse": int(np.sum(gains < 0)),
    }


def per_diagnosis(
    augmented: np.ndarray, baseline: np.ndarray, diagnoses: Sequence[str | None], seed: int = 0
) -> dict[str, dict] | None:
    """The gain per diagnosis of the test images (None when no test image has a diagnosis)."""
    labels = [d or "unlabelled" for d in diagnoses]
    if all(d is None for d in diagnoses):
        return None
    augmented, baseline = np.asarray(augmented, np.float64), np.asarray(baseline, np.float64)
    out = {}
    for name in sorted(set(labels)):
        columns = [i for i, label in enumerate(labels) if label == name]
        a, b = augmented[:, columns], baseline[:, columns]
        out[name] = {
            "n_images": len(columns),
            "dice_real_only": float(b.mean()),
            "dice_with_synthetic": float(a.mean()),
            "delta": float((a - b).mean()),
            # One image's interval would count the seeds alone: given from two images on.
            "bootstrap_ci95": bootstrap_interval(a - b, seed) if len(columns) >= 2 else None,
        }
    return out


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(runs: list[dict], counts: list[int], diagnoses: Sequence[str | None], seed: int = 0) -> list[dict]:
    """One row per synthetic count: Dice mean and std over seeds, Jaccard means, and for counts above
    0 the paired gain over the same seeds' real-only segmenters, per test image (see the module doc).

    Each run is a dict with ``synthetic_count``, ``repeat``, ``seed``, the macro metrics and
    ``dice_per_image`` (the test images in one fixed order, that of ``diagnoses``).
    """
    baseline = {run["seed"]: run for run in runs if run["synthetic_count"] == 0}
    results = []
    for count in counts:
        rows = sorted((run for run in runs if run["synthetic_count"] == count), key=lambda run: run["repeat"])
        dice = [run["dice"] for run in rows]
        row = {
            "synthetic_count": count,
            "repeats": len(rows),
            "dice_mean": float(np.mean(dice)),
            "dice_std": _std(dice),
            "jaccard_mean": float(np.mean([run["jaccard"] for run in rows])),
            "threshold_jaccard_mean": float(np.mean([run["threshold_jaccard"] for run in rows])),
            "delta_vs_real": 0.0,
            "delta_ci95": None,
            "delta_bootstrap_ci95": None,
            "delta_t_ci95": None,
            "p_wilcoxon": None,
            "images_better": None,
            "images_worse": None,
            "per_diagnosis": None,
            "gain_per_image": None,  # in the order of the report's test_images
        }
        if count != 0:
            augmented = np.array([run["dice_per_image"] for run in rows], dtype=np.float64)
            real_only = np.array([baseline[run["seed"]]["dice_per_image"] for run in rows], dtype=np.float64)
            gain = paired_gain(augmented, real_only, seed)
            row.update(
                delta_vs_real=gain["delta"],
                delta_ci95=gain["bootstrap_ci95"],  # the headline interval counts test images
                delta_bootstrap_ci95=gain["bootstrap_ci95"],
                delta_t_ci95=gain["t_ci95"],
                p_wilcoxon=gain["p_wilcoxon"],
                images_better=gain["images_better"],
                images_worse=gain["images_worse"],
                per_diagnosis=per_diagnosis(augmented, real_only, diagnoses, seed),
                gain_per_image=gain["gain_per_image"],
            )
        results.append(row)
    return results


__all__ = [
    "CI_METHOD", "bootstrap_interval", "paired_gain", "per_diagnosis", "summarise", "t_interval", "wilcoxon_p",
]
