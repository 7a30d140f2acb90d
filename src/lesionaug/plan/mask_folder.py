"""``lesionaug masks``: sample new lesion masks from a dataset's shape model into a folder, with
the realism report against the held-out masks (shape model and ellipse baseline side by side).

Mask k is the mask job k of ``lesionaug augment`` with the same seed, size and mask source would
get: the same plan lays out both (labels drawn as in the training split, so each mask comes from
its diagnosis's shape model).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionaug.atomic_files import write_bytes_atomic
from lesionaug.dataset.index import load_dataset
from lesionaug.errors import ConfigError
from lesionaug.masks.features import FEATURES, shape_features
from lesionaug.masks.model_file import save_shape_model
from lesionaug.masks.realism import realism_from_features, sample_ellipse_mask
from lesionaug.masks.sampling import sample_mask
from lesionaug.masks.shape_model import model_summary
from lesionaug.masks.training_masks import (
    fit_and_held_out,
    fit_dataset_shape_model,
    held_out_masks,
)
from lesionaug.plan.jobs import PlanConfig, build_plan
from lesionaug.plan.prompts import fit_label_sampler
from lesionaug.progress import SILENT, Reporter
from lesionaug.seeds import derive_seed

MODEL_FILE = "shape_model.npz"
ELLIPSE_STREAM = 7  # seed stream of the ellipse baseline (apart from the jobs' streams)
WEAK_TEST_BELOW = 20


@dataclass(frozen=True)
class MasksConfig:
    """What ``lesionaug masks`` was asked to do."""

    dataset: Path
    out: Path
    n: int
    size: tuple[int, int] = (512, 512)
    seed: int = 0
    mask_source: str = "model"
    masks: Path | None = None
    split_seed: int = 0
    labels: tuple[Path, ...] = ()  # external label tables joined by image id (--labels)

    def __post_init__(self) -> None:
        # The plan config validates n, seed, size and mask source in its one place.
        self.plan_config()
        out, dataset = Path(self.out).resolve(), Path(self.dataset).resolve()
        if out == dataset or out.is_relative_to(dataset):
            raise ConfigError(
                "the output folder is inside the dataset folder", path=self.out, fix="write the masks elsewhere"
            )
        if out.exists() and not out.is_dir():
            raise ConfigError("the output path is a file", path=self.out, fix="pass a folder for --out")

    def plan_config(self) -> PlanConfig:
        return PlanConfig(n=self.n, seed=self.seed, mask_source=self.mask_source, size=self.size)


def export_masks(config: MasksConfig, reporter: Reporter = SILENT) -> dict:
    """Fit, sample, write and measure; returns the command's JSON data."""
    # 1. The dataset: masks to fit on and held-out masks to judge by.
    index = load_dataset(
        config.dataset, masks=config.masks, split_seed=config.split_seed, labels=config.labels, reporter=reporter
    )
    index.check()
    fit_on, held_out, held_out_source = fit_and_held_out(index, config.split_seed)
    if len(held_out) < WEAK_TEST_BELOW:
        reporter.warn(f"only {len(held_out)} held-out masks: the realism numbers are rough")
    # 2. The models.
    model = fit_dataset_shape_model(index, fit_on, reporter=reporter)
    sampler = fit_label_sampler(s.labels for s in fit_on)
    plan = build_plan(config.plan_config(), sampler, index.fingerprint, model.fingerprint)
    # 3. Sample and write the masks; measure each as it is made.
    out = Path(config.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    w, h = config.size
    sampled, ellipses = [], []
    with reporter.task("sampling masks", total=len(plan.jobs)) as task:
        for job in plan.jobs:
            mask = sample_mask(model, job.mask_seed, job.diagnosis, (w, h), job.mask_source)
            write_mask_png(out / f"{job.id}.png", mask)
            sampled.append(shape_features(mask))
            task.advance()
    with reporter.task("ellipse baseline", total=config.n) as task:
        for k in range(config.n):
            seed = derive_seed(config.seed, k, ELLIPSE_STREAM)
            ellipses.append(shape_features(sample_ellipse_mask(seed, (w, h), model.area_range)))
            task.advance()
    model_path = save_shape_model(model, out / MODEL_FILE)
    # 4. Realism against the held-out masks.
    real = np.array([shape_features(m) for m in held_out_masks(held_out, reporter)])
    with reporter.task("realism report", total=None):
        realism = realism_from_features(real, np.array(sampled), np.array(ellipses), seed=config.seed)
    realism["held_out"] = held_out_source
    return {
        "n": config.n,
        "out": str(out),
        "size": [w, h],
        "seed": config.seed,
        "mask_source": config.mask_source,
        "model_file": str(model_path),
        "plan_hash": plan.plan_hash,
        "masks": f"{plan.jobs[0].id}.png .. {plan.jobs[-1].id}.png",
        "label_counts": plan.label_counts(),
        "shape_model": model_summary(model),
        "realism": realism,
        "features": list(FEATURES),
    }


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """A mask as a 1-channel 8-bit PNG with values 0 and 255, written atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=np.uint8) * np.uint8(255)).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue(), durable=False)
