"""Segmentation and image-similarity metrics, with the ISIC challenge's conventions.

Per image, from a binary confusion matrix: Jaccard, thresholded Jaccard (the ISIC 2018 Task 1
metric: 0 below 0.65), Dice, sensitivity, specificity and accuracy. The degenerate cases follow the
official scorer (``isic-challenge-scoring``): an empty truth with an empty prediction scores 1 for
Jaccard and Dice; sensitivity is 1 when the truth has no positives, specificity 1 when it has no
negatives. Scores are averaged per image, unweighted (macro average).

SSIM follows scikit-image's ``structural_similarity`` defaults (7x7 uniform window, sample
covariance, K1 0.01, K2 0.03, data range 255 for uint8, the mean over channels), written with
numpy and scipy so that scikit-image is not needed at run time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

THRESHOLD_JACCARD = 0.65
METRIC_NAMES = ("dice", "jaccard", "threshold_jaccard", "sensitivity", "specificity", "accuracy")


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of one binary prediction against its truth."""

    tp: int
    tn: int
    fp: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.tn + self.fp + self.fn


def binary_confusion(truth: np.ndarray, prediction: np.ndarray) -> Confusion:
    """Count true/false positives/negatives of two boolean masks of the same shape."""
    truth = np.asarray(truth, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape:
        raise ValueError(f"mask shapes differ: truth {truth.shape}, prediction {prediction.shape}")
    tp = int(np.count_nonzero(truth & prediction))
    fp = int(np.count_nonzero(~truth & prediction))
    fn = int(np.count_nonzero(truth & ~prediction))
    tn = int(truth.size) - tp - fp - fn
    return Confusion(tp=tp, tn=tn, fp=fp, fn=fn)


def jaccard(cm: Confusion) -> float:
    union = cm.tp + cm.fp + cm.fn
    return 1.0 if union == 0 else cm.tp / union


def threshold_jaccard(cm: Confusion, threshold: float = THRESHOLD_JACCARD) -> float:
    value = jaccard(cm)
    return value if value >= threshold else 0.0


def dice(cm: Confusion) -> float:
    denominator = 2 * cm.tp + cm.fp + cm.fn
    return 1.0 if denominator == 0 else 2 * cm.tp / denominator


def sensitivity(cm: Confusion) -> float:
    positives = cm.tp + cm.fn
    return 1.0 if positives == 0 else cm.tp / positives


def specificity(cm: Confusion) -> float:
    negatives = cm.tn + cm.fp
    return 1.0 if negatives == 0 else cm.tn / negatives


def accuracy(cm: Confusion) -> float:
    return (cm.tp + cm.tn) / cm.total if cm.total else 1.0


@dataclass(frozen=True)
class MaskScores:
    """Every ISIC Task 1 metric of one image."""

    dice: float
    jaccard: float
    threshold_jaccard: float
    sensitivity: float
    specificity: float
    accuracy: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def score_masks(truth: np.ndarray, prediction: np.ndarray) -> MaskScores:
    """All metrics of one predicted mask against its truth (both boolean HxW)."""
    cm = binary_confusion(truth, prediction)
    return MaskScores(
        dice=dice(cm),
        jaccard=jaccard(cm),
        threshold_jaccard=threshold_jaccard(cm),
        sensitivity=sensitivity(cm),
        specificity=specificity(cm),
        accuracy=accuracy(cm),
    )


def macro_average(scores: Iterable[MaskScores]) -> MaskScores:
    """The unweighted mean over images of each metric (what the ISIC leaderboard reports)."""
    rows = list(scores)
    if not rows:
        raise ValueError("no scores to average")
    means = {name: float(np.mean([getattr(row, name) for row in rows])) for name in METRIC_NAMES}
    return MaskScores(**means)


def dice_coefficient(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    return dice(binary_confusion(truth, prediction))


# --- SSIM -------------------------------------------------------------------------------------

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def structural_similarity(image_a: np.ndarray, image_b: np.ndarray, *, data_range: float | None = None) -> float:
    """Mean SSIM of two images (HxW or HxWxC, channels last), as scikit-image computes it by default.

    Local statistics use a 7x7 uniform window with the sample covariance (N/(N-1)); the SSIM map
    is cropped by the window's half-width before averaging, and colour images average the
    per-channel means. ``data_range`` defaults to 255 for uint8 (the dtype's range for integers)
    and must be given for float images.
    """
    a = np.asarray(image_a)
    b = np.asarray(image_b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} and {b.shape}")
    if data_range is None:
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError("data_range is required for float images (255 for 0-255 values, 1 for 0-1)")
        info = np.iinfo(a.dtype)
        data_range = float(info.max - info.min)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} for SSIM, got {a.shape[:2]}")
    if a.ndim == 2:
        return _ssim_channel(a.astype(np.float64), b.astype(np.float64), data_range)
    if a.ndim != 3:
        raise ValueError(f"expected HxW or HxWxC images, got shape {a.shape}")
    values = [
        _ssim_channel(a[..., c].astype(np.float64), b[..., c].astype(np.float64), data_range)
        for c in range(a.shape[-1])
    ]
    return float(np.mean(values))


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    from scipy.ndimage import uniform_filter

    n = SSIM_WINDOW**2
    covariance_norm = n / (n - 1)  # sample covariance, as skimage's use_sample_covariance=True

    def local_mean(values: np.ndarray) -> np.ndarray:
        return uniform_filter(values, size=SSIM_WINDOW)

    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x = covariance_norm * (local_mean(x * x) - mean_x * mean_x)
    var_y = covariance_norm * (local_mean(y * y) - mean_y * mean_y)
    cov_xy = covariance_norm * (local_mean(x * y) - mean_x * mean_y)

    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
    denominator = (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
    ssim_map = numerator / denominator

    # The border, where the window leaves the image, is dropped (as skimage does).
    pad = (SSIM_WINDOW - 1) // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean(dtype=np.float64))
