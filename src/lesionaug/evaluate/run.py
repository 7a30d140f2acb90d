"""What synthetic pairs are worth: segmenters trained on real data plus 0, N1, N2 ... synthetic pairs.

The paper's protocol (arXiv 2310.02906): train segmenters on the real training split alone and with
1K, 3K, 5K synthetic pairs added, and score each on the real test split by Dice. Here every count
is trained with the same ``repeats`` seeds, so each seed's real-only segmenter is the paired
baseline of the same seed's augmented one; the gain is reported per test image, with a bootstrap
interval over test images and seeds, the t interval over seeds and a Wilcoxon p-value
(``statistics.py``). Synthetic pairs are taken in job order, so a larger count is a superset of a
smaller one. Every segmenter trains with the same MONAI augmentation (``--seg-augment``).

Nothing synthetic is ever scored; a generator that saw any test image is refused, and so is one
that saw real training pairs the segmenters do not get (``real_data.py``), unless allowed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lesionaug.dataset.files import read_mask
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.subsets import RealSubset, choose_real_subset
from lesionaug.errors import DatasetError, UsageError
from lesionaug.evaluate import plots as report_plots
from lesionaug.evaluate.memorisation import check_memorisation
from lesionaug.evaluate.metrics import macro_average, score_masks
from lesionaug.evaluate.real_data import check_generator_real_data
from lesionaug.evaluate.report import write_report
from lesionaug.evaluate.segmenter import (
    SegmenterConfig,
    load_pairs,
    resolve_device,
    train_segmenter,
)
from lesionaug.evaluate.statistics import CI_METHOD, summarise
from lesionaug.masks.features import FEATURES, feature_table
from lesionaug.masks.geometry import fit_within, resize_mask
from lesionaug.output.synthetic_pairs import check_no_leakage, read_synthetic_source
from lesionaug.progress import SILENT, Reporter

DEFAULT_COUNTS = (0, 1000, 3000, 5000)
SCORE_MAX_SIDE = 512  # truth masks larger than this are scored at this long side (memory)
GRID_ROWS = 6
REALISM_MAX_MASKS = 1000
MEMORISATION_MAX = 2000  # synthetic images checked for copies (the first, in job order)


@dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation run; validated on construction."""

    dataset: Path
    augmented: Path
    synthetic_counts: tuple[int, ...] = DEFAULT_COUNTS
    repeats: int = 3
    real_fraction: float = 1.0
    real_count: int | None = None
    seed: int = 0
    split_seed: int = 0
    masks: Path | None = None
    labels: tuple[Path, ...] = ()  # external label tables joined by image id (--labels)
    out: Path = Path("lesionaug-report")
    allow_unknown_provenance: bool = False
    allow_generator_extra_data: bool = False
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        counts = sorted({int(c) for c in self.synthetic_counts} | {0})
        if counts[0] < 0:
            raise UsageError(f"--synthetic-counts must be 0 or more, got {self.synthetic_counts}")
        object.__setattr__(self, "synthetic_counts", tuple(counts))
        if self.repeats < 1:
            raise UsageError(f"--repeats must be at least 1, got {self.repeats}")
        if not 0 < self.real_fraction <= 1:
            raise UsageError(f"--real-fraction must be in (0, 1], got {self.real_fraction}")
        if self.real_count is not None and self.real_fraction != 1.0:
            raise UsageError("--real-fraction and --real-count both choose the real training pairs",
                             fix="pass one of them")
        self.real_subset()  # validates --real-count

    def real_subset(self) -> RealSubset | None:
        """The real training pairs the segmenters get (None: the whole split)."""
        if self.real_count is not None:
            return RealSubset(count=self.real_count, seed=self.split_seed)
        return None if self.real_fraction >= 1 else RealSubset(fraction=self.real_fraction, seed=self.split_seed)

    def to_dict(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "augmented": str(self.augmented),
            "synthetic_counts": list(self.synthetic_counts),
            "repeats": self.repeats,
            "real_fraction": self.real_fraction,
            "real_count": self.real_count,
            "seed": self.seed,
            "split_seed": self.split_seed,
            "masks": str(self.masks) if self.masks else None,
            "labels": [str(p) for p in self.labels],
            "allow_unknown_provenance": self.allow_unknown_provenance,
            "allow_generator_extra_data": self.allow_generator_extra_data,
            "segmenter": self.segmenter.to_dict(),
        }


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """Segmenter seed of each repeat, derived from (master seed, repeat index)."""
    return [int(np.random.SeedSequence([seed, r]).generate_state(1)[0]) for r in range(repeats)]


def training_steps(config: SegmenterConfig, largest_set: int) -> int:
    """Optimizer steps of every segmenter of one evaluation: ``config.steps`` when given, else
    ``config.epochs`` passes over the largest training set compared (real plus the most synthetic)."""
    if config.steps is not None:
        return config.steps
    return config.epochs * math.ceil(largest_set / config.batch_size)


def _load_truths(samples, reporter: Reporter) -> list[np.ndarray]:
    truths = []
    with reporter.task("reading test masks", total=len(samples)) as task:
        for sample in samples:
            mask = read_mask(sample.mask)
            h, w = mask.shape
            truths.append(resize_mask(mask, fit_within((w, h), SCORE_MAX_SIDE)))
            task.advance()
    return truths


@dataclass(frozen=True)
class _Inputs:
    """Everything checked and read before the first segmenter trains."""

    index: object
    train: list  # the whole training split
    real_train: list  # the segmenters' real pairs
    test: list
    source: object
    counts: list[int]
    notes: list[str]
    extra_real_pairs: int | None


def check_inputs(config: EvaluateConfig, reporter: Reporter) -> _Inputs:
    """Real splits, the segmenters' real pairs, synthetic pairs, provenance, device: before any training."""
    index = load_dataset(config.dataset, config.masks, config.split_seed, labels=config.labels, reporter=reporter)
    index.check()
    train, test = index.usable("train"), index.usable("test")
    if not train or not test:
        raise DatasetError(
            f"the dataset needs usable training and test samples (found {len(train)} and {len(test)})",
            path=config.dataset,
            fix="check the split folders, or the masks (lesionaug info DATASET lists the problems)",
        )
    subset = config.real_subset()
    real_train = choose_real_subset(train, subset, root=index.root)
    source = read_synthetic_source(config.augmented)
    provenance = check_no_leakage(source, (s.id for s in test), allow_unknown=config.allow_unknown_provenance)
    real_check = check_generator_real_data(
        source, (s.id for s in real_train), subset, len(train), allow_extra=config.allow_generator_extra_data
    )
    if max(config.synthetic_counts) > 0 and not source.pairs:
        raise DatasetError(
            "the augmented folder's manifest lists no synthetic pairs",
            path=config.augmented,
            fix="run `lesionaug augment` with --n above 0",
        )
    resolve_device(config.segmenter.device)
    notes = [provenance, real_check.note]
    counts = sorted({min(c, len(source.pairs)) for c in config.synthetic_counts})
    capped = [c for c in config.synthetic_counts if c > len(source.pairs)]
    if capped:
        notes.append(
            f"asked for {', '.join(map(str, capped))} synthetic pairs; {len(source.pairs)} exist, so capped there"
        )
        reporter.warn(notes[-1])
    if real_check.extra:
        reporter.warn(real_check.note)
    extra = real_check.extra if real_check.checked else None
    return _Inputs(index, train, real_train, test, source, counts, notes, extra)


@dataclass(frozen=True)
class _Arrays:
    """Every image read once at the segmenter's size: uint8 (N,3,S,S) images, bool (N,S,S) masks."""

    real_images: np.ndarray
    real_masks: np.ndarray
    syn_images: np.ndarray
    syn_masks: np.ndarray
    test_images: np.ndarray
    truths: list[np.ndarray]  # test masks at (at most) SCORE_MAX_SIDE, what predictions are scored against


def read_arrays(inputs: _Inputs, synthetic: list, size: int, reporter: Reporter) -> _Arrays:
    real_images, real_masks = load_pairs([(s.image, s.mask) for s in inputs.real_train], size, reporter)
    syn_images, syn_masks = load_pairs([(p.image, p.mask) for p in synthetic], size, reporter, "synthetic pairs")
    test_images, _ = load_pairs([(s.image, s.mask) for s in inputs.test], size, reporter, "test images")
    return _Arrays(real_images, real_masks, syn_images, syn_masks, test_images, _load_truths(inputs.test, reporter))


def run_evaluation(config: EvaluateConfig, reporter: Reporter = SILENT) -> dict:
    """Train and score every (count, seed) segmenter; write the report; return the ``--json`` data."""
    # 1. Check inputs: real splits and subset, synthetic pairs, provenance, device -- before any training.
    inputs = check_inputs(config, reporter)
    counts, source, real_train, test = inputs.counts, inputs.source, inputs.real_train, inputs.test

    # 2. Read every image once, at the segmenter's size.
    synthetic = list(source.pairs[: max(counts)])
    arrays = read_arrays(inputs, synthetic, config.segmenter.image_size, reporter)

    # 3. Train and score: every count with the same seeds, so the differences are paired, and with
    #    the same number of optimizer steps, so a larger training set never means more training.
    steps = training_steps(config.segmenter, len(arrays.real_images) + max(counts))
    seeds = repeat_seeds(config.seed, config.repeats)
    started = time.perf_counter()
    runs, timings, reference = train_and_score(config, counts, seeds, steps, arrays, reporter)

    # 4. Summarise per count against the real-only baseline, per test image.
    diagnoses = [s.labels.diagnosis for s in test]
    results = summarise(runs, counts, diagnoses, seed=config.seed)
    setup = {
        "real_train": len(real_train),
        "real_train_split": len(inputs.train),
        "real_fraction": config.real_fraction,
        "real_count": config.real_count,
        "real_subset_seed": config.split_seed,
        "real_test": len(test),
        "steps_per_segmenter": steps,
        "synthetic_available": len(source.pairs),
        "repeats": config.repeats,
        "seeds": seeds,
        "seg_augment": config.segmenter.augment,
        "synthetic_share": config.segmenter.synthetic_share,
        "real_finish": config.segmenter.real_finish,
        "device": reference.device,
        "layout": inputs.index.layout,
        "split_source": inputs.index.split_source,
        "generator_extra_real_pairs": inputs.extra_real_pairs,
    }

    # 5. Memorisation, plots and the report.
    memorisation, plots = report_figures(config, results, runs, reference, inputs, synthetic, arrays)
    section = {
        "config": config.to_dict(),
        "setup": setup,
        "segmenter": config.segmenter.to_dict(),
        "results": results,
        "runs": runs,
        "ci_method": CI_METHOD,
        "notes": inputs.notes,
        "real_train_ids": [s.id for s in real_train],
        "test_images": [{"id": s.id, "diagnosis": d} for s, d in zip(test, diagnoses)],
        "synthetic_ids": [p.id for p in synthetic],
        "memorisation": memorisation,
    }
    timings["seconds"] = round(time.perf_counter() - started, 1)
    path = write_report(config.out, "evaluate", section, plots, timings=timings)
    return {"results": results, "report": str(path), "setup": setup, "notes": inputs.notes, "timings": timings}


def train_and_score(config, counts, seeds, steps, arrays: _Arrays, reporter: Reporter):
    """Every (count, seed) segmenter trained and scored per test image; returns (runs, timings, the
    first real-only segmenter: the memorisation check's feature extractor)."""
    real_images, real_masks, truths = arrays.real_images, arrays.real_masks, arrays.truths
    syn_images, syn_masks = arrays.syn_images, arrays.syn_masks
    test_inputs = list(arrays.test_images.transpose(0, 2, 3, 1))
    sizes = [t.shape for t in truths]
    runs, timings, reference = [], {"segmenters": []}, None
    total = len(counts) * len(seeds)
    for count in counts:
        images = np.concatenate([real_images, syn_images[:count]])
        masks = np.concatenate([real_masks, syn_masks[:count]])
        for repeat, seed in enumerate(seeds):
            reporter.info(
                f"segmenter {len(runs) + 1}/{total}: {len(real_images)} real + {count} synthetic pairs, seed {seed}"
            )
            t0 = time.perf_counter()
            segmenter = train_segmenter(
                (images, masks), replace(config.segmenter, seed=seed, steps=steps), reporter, real_pairs=len(real_images)
            )
            predictions = segmenter.predict(test_inputs, output_sizes=sizes)
            scores = [score_masks(t, p) for t, p in zip(truths, predictions)]
            runs.append(
                {
                    "synthetic_count": count,
                    "repeat": repeat,
                    "seed": seed,
                    **macro_average(scores).to_dict(),
                    "final_loss": segmenter.history[-1],
                    "dice_per_image": [s.dice for s in scores],
                }
            )
            timings["segmenters"].append(round(time.perf_counter() - t0, 2))
            if reference is None:
                reference = segmenter
    return runs, timings, reference


def report_figures(config, results, runs, reference, inputs: _Inputs, synthetic: list, arrays: _Arrays):
    """The memorisation summary and every plot of the evaluate section."""
    real_train, diagnoses = inputs.real_train, [s.labels.diagnosis for s in inputs.test]
    real_images, real_masks, syn_images, syn_masks = (
        arrays.real_images, arrays.real_masks, arrays.syn_images, arrays.syn_masks
    )
    title = (f"{config.segmenter.arch}, {len(real_train)} real training pairs, {config.repeats} seed(s), "
             f"{config.segmenter.augment} augmentation")
    plots = {"dice_vs_synthetic": report_plots.dice_vs_synthetic(results, runs, title)}
    if len(results) > 1:
        plots["per_image_dice"] = report_plots.per_image_scatter(results, runs, diagnoses)
    if not len(syn_images):
        return None, plots
    checked = syn_images[:MEMORISATION_MAX]
    found = check_memorisation(reference, real_images, checked, arrays.test_images, seed=config.seed)
    memorisation = found.summary([p.id for p in synthetic], [s.id for s in real_train], GRID_ROWS)
    rows = [
        (syn_masks[i], syn_images[i].transpose(1, 2, 0), real_images[found.synthetic_nearest[i]].transpose(1, 2, 0))
        for i in found.closest(GRID_ROWS)
    ]
    captions = [f"{c['synthetic_id']} / {c['train_id']}: {c['distance']:.3f}" for c in memorisation["closest"]]
    plots["synthetic_grid"] = report_plots.triplet_grid(
        rows, ("synthetic mask", "synthetic image", "nearest real training image"), captions
    )
    plots["memorisation"] = report_plots.nearest_distance_histogram(
        found.synthetic_distance, found.test_distance, memorisation["test_5th_percentile"]
    )
    plots["mask_realism"] = report_plots.feature_histograms(
        *mask_realism(real_masks, syn_masks), labels=("real training masks", "synthetic masks")
    )
    return memorisation, plots


def mask_realism(real_masks: np.ndarray, syn_masks: np.ndarray) -> tuple[dict, dict]:
    """Area fraction and solidity of (at most ``REALISM_MAX_MASKS``) real and synthetic masks."""
    def features(masks: np.ndarray) -> dict:
        table = feature_table(masks[:REALISM_MAX_MASKS])
        return {name: table[:, FEATURES.index(name)] for name in ("area_fraction", "solidity")}

    return features(real_masks), features(syn_masks)
