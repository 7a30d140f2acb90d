"""The paired-gain statistics against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lesionaug.evaluate.statistics import (
    bootstrap_interval,
    paired_gain,
    per_diagnosis,
    summarise,
    t_interval,
    wilcoxon_p,
)


def test_bootstrap_over_two_images_by_hand():
    # One seed, two images with gains 0 and 1. A resample draws two images with replacement:
    # (0,0) -> 0 with p 1/4, (0,1)/(1,0) -> 0.5 with p 1/2, (1,1) -> 1 with p 1/4. The 2.5th and
    # 97.5th percentiles of that distribution are 0 and 1 (each end holds a quarter of the mass).
    assert bootstrap_interval(np.array([[0.0, 1.0]])) == [0.0, 1.0]


def test_bootstrap_resamples_seeds_and_images_independently():
    # A seed effect alone (rows differ) and an image effect alone (columns differ) both give the
    # means 0, 0.5, 1 with p 1/4, 1/2, 1/4 along the resampled axis: the interval is [0, 1] either way.
    assert bootstrap_interval(np.array([[0.0, 0.0], [1.0, 1.0]])) == [0.0, 1.0]
    assert bootstrap_interval(np.array([[0.0, 1.0], [0.0, 1.0]])) == [0.0, 1.0]
    # Both axes of length 1: nothing to resample.
    assert bootstrap_interval(np.array([[0.3]])) is None


def test_the_image_interval_sees_what_the_seed_interval_cannot():
    # Two seeds that agree exactly (macro gain 0.5 each) but images that do not (gains 0 and 1):
    # the t interval over seeds has no width, the bootstrap over images spans [0, 1].
    augmented = np.array([[0.5, 1.0], [0.5, 1.0]])
    baseline = np.array([[0.5, 0.0], [0.5, 0.0]])
    gain = paired_gain(augmented, baseline)
    assert gain["t_ci95"] == [0.5, 0.5]
    assert gain["bootstrap_ci95"] == [0.0, 1.0]
    assert gain["delta"] == 0.5 and gain["gain_per_image"] == [0.0, 1.0]
    assert gain["images_better"] == 1 and gain["images_worse"] == 0


def test_paired_t_interval_by_hand():
    # differences 0.1, 0.2, 0.3: mean 0.2, sample std 0.1, t(0.975, df=2) = 4.302653;
    # half width = 4.302653 * 0.1 / sqrt(3) = 0.248414
    low, high = t_interval([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
    assert low == pytest.approx(0.2 - 0.248414, abs=1e-6) and high == pytest.approx(0.2 + 0.248414, abs=1e-6)
    assert t_interval([0.7], [0.5]) is None


def test_wilcoxon_by_hand():
    # Five positive gains of distinct size: W- = 0. Under the null each of the 2**5 sign patterns is
    # equally likely and only "all positive" reaches W+ = 15, so the exact two-sided p is 2/32.
    assert wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    assert wilcoxon_p([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6]) == pytest.approx(2 / 64)
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0  # no image changed
    assert wilcoxon_p([]) is None


def test_paired_gain_by_hand():
    # seeds x images; differences [[0.1, 0.3], [0.2, 0.3]]: per-image gains 0.15 and 0.3, mean 0.225;
    # per-seed macro differences 0.2 and 0.25.
    augmented = np.array([[0.6, 0.8], [0.7, 0.9]])
    baseline = np.array([[0.5, 0.5], [0.5, 0.6]])
    gain = paired_gain(augmented, baseline)
    assert gain["delta"] == pytest.approx(0.225)
    assert gain["gain_per_image"] == pytest.approx([0.15, 0.3])
    # t interval of (0.2, 0.25): mean 0.225, std 0.0353553, t(0.975, 1) = 12.706205, half 0.317655
    assert gain["t_ci95"] == pytest.approx([0.225 - 0.317655, 0.225 + 0.317655], abs=1e-6)
    # The bootstrap draws means of D over resampled seeds and images. Its smallest value 0.1 needs seed 0
    # twice and image 0 twice (p 1/4 * 1/4 = 6.25%); its largest 0.3 needs image 1 twice (p 1/4). Both
    # ends hold more than 2.5% of the draws, so the interval is [0.1, 0.3].
    assert gain["bootstrap_ci95"] == pytest.approx([0.1, 0.3])
    assert gain["p_wilcoxon"] == pytest.approx(0.5)  # two positive gains: 2 * (1/4)
    with pytest.raises(ValueError, match="seeds x images"):
        paired_gain(augmented, baseline[:, :1])


def test_per_diagnosis_by_hand():
    # One seed, four images: mel, mel, nv, unlabelled. Gains 0.2, 0.0, -0.1, 0.3.
    augmented = np.array([[0.7, 0.5, 0.4, 0.9]])
    baseline = np.array([[0.5, 0.5, 0.5, 0.6]])
    groups = per_diagnosis(augmented, baseline, ["mel", "mel", "nv", None])
    assert list(groups) == ["mel", "nv", "unlabelled"]
    assert groups["mel"]["n_images"] == 2 and groups["mel"]["delta"] == pytest.approx(0.1)
    assert groups["mel"]["dice_real_only"] == pytest.approx(0.5) and groups["mel"]["dice_with_synthetic"] == 0.6
    assert groups["mel"]["bootstrap_ci95"] == pytest.approx([0.0, 0.2])  # two images: means 0, 0.1, 0.2
    assert groups["nv"]["delta"] == pytest.approx(-0.1) and groups["nv"]["bootstrap_ci95"] is None
    assert per_diagnosis(augmented, baseline, [None] * 4) is None


def _run(count, repeat, seed, per_image):
    return {"synthetic_count": count, "repeat": repeat, "seed": seed, "dice": float(np.mean(per_image)),
            "jaccard": float(np.mean(per_image)) - 0.1, "threshold_jaccard": 0.0, "dice_per_image": per_image}


def test_summary_pairs_each_seed_with_its_own_baseline():
    runs = [
        _run(0, 0, 11, [0.4, 0.6]),
        _run(0, 1, 12, [0.6, 0.8]),
        _run(9, 1, 12, [0.8, 0.8]),
        _run(9, 0, 11, [0.5, 0.6]),
    ]
    base, gain = summarise(runs, [0, 9], ["mel", "nv"])
    assert base["dice_mean"] == pytest.approx(0.6) and base["dice_std"] == pytest.approx(math.sqrt(0.02))
    assert base["delta_ci95"] is None and base["per_diagnosis"] is None
    # Seed 11: differences (0.1, 0.0); seed 12: (0.2, 0.0). Per image: 0.15 and 0.0; mean 0.075.
    assert gain["delta_vs_real"] == pytest.approx(0.075) and gain["gain_per_image"] == pytest.approx([0.15, 0.0])
    assert gain["images_better"] == 1 and gain["images_worse"] == 0
    assert gain["per_diagnosis"]["mel"]["delta"] == pytest.approx(0.15)
    assert gain["delta_ci95"] == gain["delta_bootstrap_ci95"]
    assert gain["jaccard_mean"] == pytest.approx(0.575)
