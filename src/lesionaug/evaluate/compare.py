"""``lesionaug compare``: the paper's table for several generators' augmented folders of one dataset.

    data = run_comparison(CompareConfig(dataset, (("controlnet", a), ("pix2pixhd", b))), reporter)

Each generator is evaluated exactly as ``evaluate`` would evaluate it alone (``evaluate/run.py``'s
checks, arrays, segmenters and ``statistics.summarise``), with three things shared so that the
generators are compared on equal terms: the real training pairs and test images, the seeds, and
the optimizer steps of every segmenter (``training_steps`` of the largest training set of any
generator). The real-only segmenters are therefore the same for every generator and are trained
once. Between generators, per count, the paired difference is taken per test image and seed
(generator A's segmenter minus generator B's of the same seed), with ``statistics.paired_gain``'s
bootstrap and t intervals and Wilcoxon p-value. Each generator's ``quality`` measures (SSIM with the
paper's protocol, mask fidelity) come from ``evaluate/quality.py`` on the engine its run used, with
one fidelity segmenter for all of them (``quality.measure_generators``, passed in by the caller).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import numpy as np

from lesionaug.errors import ConfigError, UsageError
from lesionaug.evaluate import plots as report_plots
from lesionaug.evaluate.report import write_report
from lesionaug.evaluate.run import (
    DEFAULT_COUNTS,
    EvaluateConfig,
    check_inputs,
    read_arrays,
    repeat_seeds,
    train_and_score,
    training_steps,
)
from lesionaug.evaluate.segmenter import SegmenterConfig, load_pairs
from lesionaug.evaluate.statistics import CI_METHOD, paired_gain, summarise
from lesionaug.output.run_record import read_run_record
from lesionaug.progress import SILENT, Reporter



@dataclass(frozen=True)
class CompareConfig:
    """One comparison; validated on construction."""

    dataset: Path
    augmented: tuple[tuple[str, Path], ...]  # (NAME, augmented folder) per generator
    synthetic_counts: tuple[int, ...] = DEFAULT_COUNTS
    repeats: int = 3
    real_fraction: float = 1.0
    real_count: int | None = None
    seed: int = 0
    split_seed: int = 0
    masks: Path | None = None
    labels: tuple[Path, ...] = ()
    out: Path = Path("lesionaug-compare")
    allow_unknown_provenance: bool = False
    allow_generator_extra_data: bool = False
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    quality: bool = True
    quality_split: str = "test"
    quality_limit: int | None = None
    provider: str = "auto"

    def __post_init__(self) -> None:
        names = [name for name, _ in self.augmented]
        if not names:
            raise UsageError("compare needs at least one --augmented NAME=DIR", fix="e.g. --augmented gan=./gan-aug")
        if len(set(names)) != len(names):
            raise UsageError(f"generator names repeat ({', '.join(names)})", fix="give each --augmented its own NAME")
        if self.quality_limit is not None and self.quality_limit < 1:
            raise UsageError(f"--generated-limit must be at least 1, got {self.quality_limit}")
        for name in names:  # every check of evaluate's config, once per generator, before anything runs
            self.evaluate_config(name)

    def evaluate_config(self, name: str) -> EvaluateConfig:
        """What ``lesionaug evaluate`` would run for generator ``name`` alone."""
        folder = dict(self.augmented)[name]
        return EvaluateConfig(
            dataset=self.dataset, augmented=Path(folder), synthetic_counts=self.synthetic_counts,
            repeats=self.repeats, real_fraction=self.real_fraction, real_count=self.real_count, seed=self.seed,
            split_seed=self.split_seed, masks=self.masks, labels=self.labels, out=self.out,
            allow_unknown_provenance=self.allow_unknown_provenance,
            allow_generator_extra_data=self.allow_generator_extra_data, segmenter=self.segmenter,
        )

    def to_dict(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "augmented": {name: str(folder) for name, folder in self.augmented},
            "synthetic_counts": sorted({int(c) for c in self.synthetic_counts} | {0}),
            "repeats": self.repeats, "real_fraction": self.real_fraction, "real_count": self.real_count,
            "seed": self.seed, "split_seed": self.split_seed, "masks": str(self.masks) if self.masks else None,
            "labels": [str(p) for p in self.labels], "segmenter": self.segmenter.to_dict(),
            "quality": self.quality, "quality_split": self.quality_split, "quality_limit": self.quality_limit,
            "allow_unknown_provenance": self.allow_unknown_provenance,
            "allow_generator_extra_data": self.allow_generator_extra_data,
        }


# (config, {NAME: generator section}, {NAME: grid rows}, reporter): fills each section's "quality".
QualityMeasure = Callable[[CompareConfig, dict, dict, Reporter], None]


def run_comparison(config: CompareConfig, reporter: Reporter = SILENT, measure_quality: QualityMeasure | None = None) -> dict:
    """Evaluate every generator on shared real pairs, seeds and steps; compare; write one report.

    ``measure_quality`` is ``evaluate.quality.measure_generators`` (passed in by the caller, so this
    module stays off the engine and model-choice imports); needed when ``config.quality``.
    """
    if config.quality and measure_quality is None:
        raise ConfigError("quality measures were asked for but no measure was passed",
                          fix="pass evaluate.quality.measure_generators, or quality=False")
    started = time.perf_counter()
    names = [name for name, _ in config.augmented]
    # 1. Check every generator's inputs as evaluate would, before any training.
    checked = {name: check_inputs(config.evaluate_config(name), reporter) for name in names}
    first = checked[names[0]]
    # 2. Read the real and test images once, each generator's synthetic pairs beside them.
    size = config.segmenter.image_size
    synthetic = {name: list(checked[name].source.pairs[: max(checked[name].counts)]) for name in names}
    base_arrays = read_arrays(first, synthetic[names[0]], size, reporter)
    arrays = {names[0]: base_arrays}
    for name in names[1:]:
        images, masks = load_pairs([(p.image, p.mask) for p in synthetic[name]], size, reporter, f"{name} pairs")
        arrays[name] = replace(base_arrays, syn_images=images, syn_masks=masks)
    # 3. One step budget and one set of seeds for every segmenter of every generator.
    largest = max(max(checked[name].counts) for name in names)
    steps = training_steps(config.segmenter, len(base_arrays.real_images) + largest)
    seeds = repeat_seeds(config.seed, config.repeats)
    # 4. The real-only segmenters, once; then each generator's counts.
    baseline, timings, _ = train_and_score(config.evaluate_config(names[0]), [0], seeds, steps, base_arrays, reporter)
    diagnoses = [s.labels.diagnosis for s in first.test]
    generators: dict[str, dict] = {}
    all_runs: dict[str, list[dict]] = {}
    for name in names:
        counts = [c for c in checked[name].counts if c > 0]
        runs, more, _ = train_and_score(config.evaluate_config(name), counts, seeds, steps, arrays[name], reporter)
        timings["segmenters"] += more["segmenters"]
        all_runs[name] = baseline + runs
        generators[name] = {
            "augmented": str(dict(config.augmented)[name]),
            "generator": generator_kind(dict(config.augmented)[name]),
            "results": summarise(all_runs[name], [0, *counts], diagnoses, seed=config.seed),
            "runs": runs,
            "notes": checked[name].notes,
            "synthetic_ids": [p.id for p in synthetic[name]],
        }
    # 5. Paired differences between generators, per count both have.
    pairwise = pairwise_differences(all_runs, seeds, config.seed)
    # 6. Quality of each generator (SSIM, mask fidelity) on the same real masks.
    grids: dict[str, list] = {}
    if config.quality:
        measure_quality(config, generators, grids, reporter)
    setup = {
        "real_train": len(first.real_train), "real_train_split": len(first.train), "real_test": len(first.test),
        "real_fraction": config.real_fraction, "real_count": config.real_count,
        "steps_per_segmenter": steps, "repeats": config.repeats, "seeds": seeds,
        "seg_augment": config.segmenter.augment, "synthetic_share": config.segmenter.synthetic_share,
        "real_finish": config.segmenter.real_finish,
        "layout": first.index.layout,
    }
    section = {
        "config": config.to_dict(), "setup": setup, "ci_method": CI_METHOD, "baseline_runs": baseline,
        "generators": generators, "pairwise": pairwise,
        "real_train_ids": [s.id for s in first.real_train],
        "test_images": [{"id": s.id, "diagnosis": d} for s, d in zip(first.test, diagnoses)],
    }
    plots = compare_plots(generators, baseline, grids, setup)
    timings["seconds"] = round(time.perf_counter() - started, 1)
    path = write_report(config.out, "compare", section, plots, timings=timings)
    return {"generators": {n: {"quality": g.get("quality"), "results": g["results"]} for n, g in generators.items()},
            "pairwise": pairwise, "setup": setup, "report": str(path)}


def generator_kind(folder: Path) -> str | None:
    """The generator kind an augmented folder's run record names (None when unknown)."""
    record = read_run_record(folder) or {}
    if record.get("generator"):
        return str(record["generator"])
    card = ((record.get("model") or {}).get("model") or {}).get("lesionaug") or {}
    return card.get("generator", "controlnet" if card else None)


def pairwise_differences(all_runs: dict[str, list[dict]], seeds: list[int], seed: int) -> list[dict]:
    """Per pair of generators and count both ran: generator A's per-image Dice minus B's, same seed."""
    out = []
    for a, b in combinations(all_runs, 2):
        counts = sorted({r["synthetic_count"] for r in all_runs[a]} & {r["synthetic_count"] for r in all_runs[b]} - {0})
        for count in counts:
            by_seed_a = {r["seed"]: r for r in all_runs[a] if r["synthetic_count"] == count}
            by_seed_b = {r["seed"]: r for r in all_runs[b] if r["synthetic_count"] == count}
            dice_a = np.array([by_seed_a[s]["dice_per_image"] for s in seeds], dtype=np.float64)
            dice_b = np.array([by_seed_b[s]["dice_per_image"] for s in seeds], dtype=np.float64)
            gain = paired_gain(dice_a, dice_b, seed)
            out.append({
                "a": a, "b": b, "synthetic_count": count,
                "dice_a": float(dice_a.mean()), "dice_b": float(dice_b.mean()),
                "delta": gain["delta"], "delta_ci95": gain["bootstrap_ci95"], "delta_t_ci95": gain["t_ci95"],
                "p_wilcoxon": gain["p_wilcoxon"], "images_better": gain["images_better"],
                "images_worse": gain["images_worse"],
            })
    return out


def compare_plots(generators: dict[str, dict], baseline: list[dict], grids: dict[str, list], setup: dict) -> dict:
    title = (f"{setup['real_train']} real training pairs, {setup['repeats']} seed(s), "
             f"{setup['steps_per_segmenter']} steps per segmenter")
    plots = {"compare_dice": report_plots.dice_by_generator(
        {n: g["results"] for n, g in generators.items()}, baseline, title)}
    measured = {n: g["quality"] for n, g in generators.items() if (g.get("quality") or {}).get("status") == "ok"}
    if measured:
        plots["compare_quality"] = report_plots.quality_by_generator(measured)
    if grids:
        plots["compare_grid"] = report_plots.generator_grid(grids)
    return plots


__all__ = ["CompareConfig", "pairwise_differences", "run_comparison"]
