"""From ``AugmentOptions`` to a ``GenerationPlan``: index the dataset, fit the label sampler and
the shape model on its training split, and lay out the jobs. No generator model is involved, so
``augment --dry-run`` runs this alone and ``preview_plan`` says what would be generated.

``index_dataset`` and ``plan_from_index`` are the two halves: ``run_augment`` checks disk space and
memory from the counts between them, before any planning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from lesionaug.augment.model_template import with_model_template
from lesionaug.augment.options import AugmentOptions
from lesionaug.augment.output_size import with_dataset_size
from lesionaug.dataset.index import DatasetIndex, Sample, load_dataset
from lesionaug.dataset.subsets import choose_real_subset
from lesionaug.masks.geometry import fit_within
from lesionaug.masks.sampling import sample_mask
from lesionaug.masks.shape_model import POOLED, ShapeModel
from lesionaug.masks.training_masks import fit_dataset_shape_model, mask_fitting_samples
from lesionaug.output.disk_space import PREVIEW_BYTES_PER_JOB, check_memory
from lesionaug.plan.jobs import GenerationPlan, build_plan, selected_indices
from lesionaug.plan.prompts import LabelSampler, fit_label_sampler
from lesionaug.progress import SILENT, Reporter

PREVIEW_SIDE = 128  # mask statistics of a dry run are measured on masks this size (long side)


@dataclass(frozen=True, eq=False)
class PreparedPlan:
    """A plan with what it was made from: the dataset index, its training split and fitted models."""

    index: DatasetIndex
    train: list[Sample]
    label_sampler: LabelSampler
    shape_model: ShapeModel
    plan: GenerationPlan


def index_dataset(options: AugmentOptions, reporter: Reporter = SILENT) -> DatasetIndex:
    """The dataset indexed and checked; one line on stderr when training pairs are left out, and why."""
    index = load_dataset(
        options.dataset, masks=options.masks, split_seed=options.split_seed, labels=options.labels, reporter=reporter
    )
    index.check()
    skipped = index.left_out("train")
    if skipped:
        reasons = ", ".join(f"{code} {n}" for code, n in skipped.items())
        reporter.warn(
            f"{sum(skipped.values())} training pair(s) left out ({reasons}); `lesionaug info {index.root}` lists them"
        )
    return index


def training_skipped(index: DatasetIndex) -> dict:
    """The ``--json`` keys that say which training pairs were left out: a count, and counts by reason."""
    skipped = index.left_out("train")
    return {"n_training_skipped": sum(skipped.values()), "training_skipped": skipped}


def plan_from_index(options: AugmentOptions, index: DatasetIndex, reporter: Reporter = SILENT) -> PreparedPlan:
    """Fit the samplers on the training split (``options.real_subset`` of it when given) and lay out the (shard's) jobs, lazily."""
    train = choose_real_subset(mask_fitting_samples(index), options.real_subset, root=index.root)
    # 1. Labels first: a wrong --diagnosis fails before the masks are read.
    sampler = fit_label_sampler(s.labels for s in train)
    sampler.check(options.plan.labels)
    # 2. The shape model of the training masks.
    shape_model = fit_dataset_shape_model(index, train, reporter=reporter)
    # 3. The jobs (made on demand, so n costs nothing here).
    plan = build_plan(options.plan, sampler, index.fingerprint, shape_model.fingerprint, shard=options.shard)
    return PreparedPlan(index, train, sampler, shape_model, plan)


def prepare_plan(options: AugmentOptions, reporter: Reporter = SILENT) -> PreparedPlan:
    """Index the dataset, fit the samplers on its training split and build the (shard's) plan.

    A dry run lists every job, so its memory is checked from the job count before planning.
    """
    index = index_dataset(options, reporter)
    options = with_dataset_size(options, index)
    options = with_model_template(options, reporter)
    if options.dry_run:
        check_memory(
            len(selected_indices(options.plan.n, options.shard)), PREVIEW_BYTES_PER_JOB, "jobs listed by a dry run",
            fix="lower --n, or preview one shard with --shard i/N",
        )
    return plan_from_index(options, index, reporter)


def preview_plan(prepared: PreparedPlan, reporter: Reporter = SILENT, preview_side: int = PREVIEW_SIDE) -> dict:
    """Label counts and statistics of the jobs' masks, sampled at a small preview size."""
    plan, model = prepared.plan, prepared.shape_model
    size = fit_within(plan.config.size, preview_side)
    areas, clipped = [], 0
    groups: Counter[str] = Counter()
    with reporter.task("sampling preview masks", total=len(plan.jobs)) as task:
        for job in plan.jobs:
            mask = sample_mask(model, job.mask_seed, job.diagnosis, size, job.mask_source)
            areas.append(float(mask.mean()))
            clipped += bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
            groups[model.group_for(job.diagnosis).name if job.mask_source == "model" else "real"] += 1
            task.advance()
    area = np.asarray(areas)
    mask_stats = {
        "preview_size": list(size),
        "area_fraction": _summary(area),
        "clipped_fraction": clipped / max(len(areas), 1),
        "shape_groups": {("pooled" if k == POOLED else k): v for k, v in sorted(groups.items())},
        "training_area_range": list(model.area_range),
    }
    return {
        "plan_hash": plan.plan_hash,
        "layout": prepared.index.layout,
        "dataset_fingerprint": plan.dataset_fingerprint,
        "train_fingerprint": plan.train_fingerprint,
        "n": plan.config.n,
        "n_jobs": len(plan.jobs),
        "shard": plan.shard.describe() if plan.shard else None,
        "training_samples": len(prepared.train),
        **training_skipped(prepared.index),
        "label_counts": plan.label_counts(),
        "training_diagnoses": prepared.label_sampler.diagnosis_counts(),
        "mask_statistics": mask_stats,
        "config": plan.config.to_dict(),
        "jobs": [job.to_dict() for job in plan.jobs],
    }


def _summary(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"mean": None, "min": None, "median": None, "max": None}
    return {
        "mean": float(values.mean()),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }
