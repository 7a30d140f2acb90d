"""What synthetic pairs are worth: segmenters trained on real data plus 0, N1, N2 ... synthetic pairs.

The paper's protocol (arXiv 2310.02906): train segmenters on the real training split alone and with
1K, 3K, 5K synthetic pairs added, and score each on the real test split by Dice. Here every count
is trained with the same ``repeats`` seeds, so each seed's real-only segmenter is the paired
baseline of the same seed's augmented one, and the gain is reported with a t interval over seeds.
Synthetic pairs are taken in job order, so a larger count is a superset of a smaller one.
Nothing synthetic is ever scored, and a generator that saw any test image is refused.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lesionaug.dataset.files import read_mask
from lesionaug.dataset.index import load_dataset
from lesionaug.errors import ConfigError, DatasetError
from lesionaug.evaluate import plots as report_plots
from lesionaug.evaluate.metrics import macro_average, score_masks
from lesionaug.evaluate.report import write_report
from lesionaug.evaluate.segmenter import (
    SegmenterConfig,
    load_pairs,
    resolve_device,
    train_segmenter,
)
from lesionaug.masks.features import FEATURES, feature_table
from lesionaug.masks.geometry import fit_within, resize_mask
from lesionaug.output.synthetic_pairs import check_no_leakage, read_synthetic_source
from lesionaug.progress import SILENT, Reporter

DEFAULT_COUNTS = (0, 1000, 3000, 5000)
SCORE_MAX_SIDE = 512  # truth masks larger than this are scored at this long side (memory)
GRID_ROWS = 6
REALISM_MAX_MASKS = 1000
CI_METHOD = "a two-sided 95% t interval (n-1 degrees of freedom) over the per-seed paired differences"


@dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation run; validated on construction."""

    dataset: Path
    augmented: Path
    synthetic_counts: tuple[int, ...] = DEFAULT_COUNTS
    repeats: int = 3
    real_fraction: float = 1.0
    seed: int = 0
    split_seed: int = 0
    masks: Path | None = None
    out: Path = Path("lesionaug-report")
    allow_unknown_provenance: bool = False
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        counts = sorted({int(c) for c in self.synthetic_counts} | {0})
        if counts[0] < 0:
            raise ConfigError(f"synthetic counts must be 0 or more, got {self.synthetic_counts}")
        object.__setattr__(self, "synthetic_counts", tuple(counts))
        if self.repeats < 1:
            raise ConfigError(f"repeats must be at least 1, got {self.repeats}")
        if not 0 < self.real_fraction <= 1:
            raise ConfigError(f"real fraction must be in (0, 1], got {self.real_fraction}")

    def to_dict(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "augmented": str(self.augmented),
            "synthetic_counts": list(self.synthetic_counts),
            "repeats": self.repeats,
            "real_fraction": self.real_fraction,
            "seed": self.seed,
            "split_seed": self.split_seed,
            "masks": str(self.masks) if self.masks else None,
            "allow_unknown_provenance": self.allow_unknown_provenance,
            "segmenter": self.segmenter.to_dict(),
        }


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """Segmenter seed of each repeat, derived from (master seed, repeat index)."""
    return [int(np.random.SeedSequence([seed, r]).generate_state(1)[0]) for r in range(repeats)]


def subsample(items: list, fraction: float, seed: int) -> list:
    """A deterministic subset of ``ceil(fraction * n)`` items (at least one), in their original order."""
    if fraction >= 1 or not items:
        return list(items)
    keep = max(1, math.ceil(fraction * len(items)))
    chosen = np.random.default_rng(np.random.SeedSequence([seed, 0x5EA1])).permutation(len(items))[:keep]
    return [items[i] for i in sorted(chosen)]


def paired_summary(values: list[float], baseline: list[float]) -> tuple[float, list[float] | None]:
    """Mean paired difference and its 95% t interval (None with fewer than two pairs)."""
    from scipy import stats

    diffs = np.asarray(values) - np.asarray(baseline)
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return mean, None
    half = float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return mean, [mean - half, mean + half]


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _load_truths(samples, reporter: Reporter) -> list[np.ndarray]:
    truths = []
    with reporter.task("reading test masks", total=len(samples)) as task:
        for sample in samples:
            mask = read_mask(sample.mask)
            h, w = mask.shape
            truths.append(resize_mask(mask, fit_within((w, h), SCORE_MAX_SIDE)))
            task.advance()
    return truths


def run_evaluation(config: EvaluateConfig, reporter: Reporter = SILENT) -> dict:
    """Train and score every (count, seed) segmenter; write the report; return the ``--json`` data."""
    # 1. Check inputs: real splits, synthetic pairs, provenance, device -- before any training.
    index = load_dataset(config.dataset, config.masks, config.split_seed, reporter=reporter)
    index.check()
    train, test = index.usable("train"), index.usable("test")
    if not train or not test:
        raise DatasetError(
            f"the dataset needs usable training and test samples (found {len(train)} and {len(test)})",
            path=config.dataset,
            fix="check the split folders, or the masks (lesionaug info DATASET lists the problems)",
        )
    source = read_synthetic_source(config.augmented)
    provenance = check_no_leakage(source, (s.id for s in test), allow_unknown=config.allow_unknown_provenance)
    if max(config.synthetic_counts) > 0 and not source.pairs:
        raise DatasetError(
            "the augmented folder's manifest lists no synthetic pairs",
            path=config.augmented,
            fix="run `lesionaug augment` with --n above 0",
        )
    resolve_device(config.segmenter.device)
    notes = [provenance]
    counts = sorted({min(c, len(source.pairs)) for c in config.synthetic_counts})
    capped = [c for c in config.synthetic_counts if c > len(source.pairs)]
    if capped:
        notes.append(
            f"asked for {', '.join(map(str, capped))} synthetic pairs; {len(source.pairs)} exist, so capped there"
        )
        reporter.warn(notes[-1])
    real_train = subsample(train, config.real_fraction, config.seed)

    # 2. Read every image once, at the segmenter's size.
    size = config.segmenter.image_size
    real_images, real_masks = load_pairs([(s.image, s.mask) for s in real_train], size, reporter)
    synthetic = list(source.pairs[: max(counts)])
    syn_images, syn_masks = load_pairs([(p.image, p.mask) for p in synthetic], size, reporter, "synthetic pairs")
    test_images, _ = load_pairs([(s.image, s.mask) for s in test], size, reporter, "test images")
    truths = _load_truths(test, reporter)
    test_inputs = list(test_images.transpose(0, 2, 3, 1))
    sizes = [t.shape for t in truths]

    # 3. Train and score: every count with the same seeds, so the differences are paired, and with
    #    the same number of optimizer steps, so a larger training set never means more training.
    steps = training_steps(config.segmenter, len(real_images) + max(counts))
    seeds = repeat_seeds(config.seed, config.repeats)
    runs: list[dict] = []
    total = len(counts) * len(seeds)
    started = time.perf_counter()
    for count in counts:
        images = np.concatenate([real_images, syn_images[:count]])
        masks = np.concatenate([real_masks, syn_masks[:count]])
        for repeat, seed in enumerate(seeds):
            reporter.info(
                f"segmenter {len(runs) + 1}/{total}: {len(real_images)} real + {count} synthetic pairs, seed {seed}"
            )
            t0 = time.perf_counter()
            segmenter = train_segmenter((images, masks), replace(config.segmenter, seed=seed, steps=steps), reporter)
            predictions = segmenter.predict(test_inputs, output_sizes=sizes)
            macro = macro_average(score_masks(t, p) for t, p in zip(truths, predictions))
            runs.append(
                {
                    "synthetic_count": count,
                    "repeat": repeat,
                    "seed": seed,
                    **macro.to_dict(),
                    "final_loss": segmenter.history[-1],
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )

    # 4. Summarise per count against the real-only baseline.
    results = summarise(runs, counts)
    setup = {
        "real_train": len(real_train),
        "real_train_split": len(train),
        "real_fraction": config.real_fraction,
        "real_test": len(test),
        "steps_per_segmenter": steps,
        "synthetic_available": len(source.pairs),
        "repeats": config.repeats,
        "seeds": seeds,
        "device": segmenter.device,
        "layout": index.layout,
        "split_source": index.split_source,
        "seconds": round(time.perf_counter() - started, 1),
    }

    # 5. Plots and the report.
    plots = {
        "dice_vs_synthetic": report_plots.dice_vs_synthetic(
            results, runs, f"{config.segmenter.arch}, {len(real_train)} real training pairs, {config.repeats} seed(s)"
        )
    }
    if len(syn_images):
        plots["synthetic_grid"] = report_plots.triplet_grid(
            nearest_real_rows(syn_images, syn_masks, real_images, GRID_ROWS),
            ("synthetic mask", "synthetic image", "nearest real training image"),
        )
        plots["mask_realism"] = report_plots.feature_histograms(
            *mask_realism(real_masks, syn_masks), labels=("real training masks", "synthetic masks")
        )
    section = {
        "config": config.to_dict(),
        "setup": setup,
        "segmenter": config.segmenter.to_dict(),
        "results": results,
        "runs": runs,
        "ci_method": CI_METHOD,
        "notes": notes,
        "synthetic_ids": [p.id for p in synthetic],
    }
    path = write_report(config.out, "evaluate", section, plots)
    return {"results": results, "report": str(path), "setup": setup, "notes": notes}


def training_steps(config: SegmenterConfig, largest_set: int) -> int:
    """Optimizer steps of every segmenter of one evaluation: ``config.steps`` when given, else
    ``config.epochs`` passes over the largest training set compared (real plus the most synthetic)."""
    if config.steps is not None:
        return config.steps
    return config.epochs * math.ceil(largest_set / config.batch_size)


def summarise(runs: list[dict], counts: list[int]) -> list[dict]:
    """Per count: mean and std of Dice over seeds, mean Jaccard, paired Dice difference to count 0."""
    baseline = {run["seed"]: run["dice"] for run in runs if run["synthetic_count"] == 0}
    results = []
    for count in counts:
        rows = sorted((run for run in runs if run["synthetic_count"] == count), key=lambda run: run["repeat"])
        dice = [run["dice"] for run in rows]
        if count == 0:
            delta, ci = 0.0, None
        else:
            delta, ci = paired_summary(dice, [baseline[run["seed"]] for run in rows])
        results.append(
            {
                "synthetic_count": count,
                "repeats": len(rows),
                "dice_mean": float(np.mean(dice)),
                "dice_std": _std(dice),
                "jaccard_mean": float(np.mean([run["jaccard"] for run in rows])),
                "threshold_jaccard_mean": float(np.mean([run["threshold_jaccard"] for run in rows])),
                "delta_vs_real": delta,
                "delta_ci95": ci,
            }
        )
    return results


def nearest_real_rows(syn_images: np.ndarray, syn_masks: np.ndarray, real_images: np.ndarray, n: int):
    """(mask, synthetic image, nearest real image by pixel L2 at 16x16) for the first ``n`` pairs."""

    def thumbnails(batch: np.ndarray) -> np.ndarray:
        from PIL import Image

        return np.stack(
            [
                np.asarray(
                    Image.fromarray(im.transpose(1, 2, 0)).resize((16, 16), Image.Resampling.BOX), dtype=np.float32
                ).ravel()
                for im in batch
            ]
        )

    chosen = syn_images[:n]
    distances = ((thumbnails(chosen)[:, None, :] - thumbnails(real_images)[None, :, :]) ** 2).sum(-1)
    nearest = distances.argmin(axis=1)
    return [
        (syn_masks[i], chosen[i].transpose(1, 2, 0), real_images[j].transpose(1, 2, 0)) for i, j in enumerate(nearest)
    ]


def mask_realism(real_masks: np.ndarray, syn_masks: np.ndarray) -> tuple[dict, dict]:
    """Area fraction and solidity of (at most ``REALISM_MAX_MASKS``) real and synthetic masks."""
    def features(masks: np.ndarray) -> dict:
        table = feature_table(masks[:REALISM_MAX_MASKS])
        return {name: table[:, FEATURES.index(name)] for name in ("area_fraction", "solidity")}

    return features(real_masks), features(syn_masks)
