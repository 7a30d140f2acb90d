"""Image quality of a generator, the paper's way, plus mask fidelity and (optionally) FID/KID.

SSIM (arXiv 2310.02906's protocol): for each real mask of a split, generate an image with that mask
and the sample's own labels, and compare it with the real image resized to the generation size.
Mask fidelity: a segmenter trained on the real training split segments each generated image; its
Dice against the mask the image was generated from says whether the generator obeys the visual
prompt. Read it between two references: the same segmenter on the real images (the ceiling) and
on a flat image of the skin's mean colour (the floor: what it predicts without seeing a lesion).
Image realism (``image_realism.py``, skipped with ``--no-realism``): a small CNN trained from scratch to
tell the real images of the split from the generated ones (cross-validated accuracy, 0.5 = cannot),
beside the same test on real training against real split images, and Lab colour distances inside and
outside the lesion. FID and KID need a feature extractor file (``--fid-weights``); without one they are skipped.
Everything is computed batch by batch, so memory does not grow with the split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionaug.augment.model_choice import resolve_given_model
from lesionaug.dataset.files import read_image, read_mask
from lesionaug.dataset.index import load_dataset
from lesionaug.engine.card import EngineCard
from lesionaug.engine.gan_runtime import GanEngine, load_generator_engine
from lesionaug.engine.provider_options import ShapeProfile
from lesionaug.engine.sampler import SamplerSettings, generate
from lesionaug.errors import ConfigError, DatasetError, ModelError, UsageError
from lesionaug.evaluate import plots as report_plots
from lesionaug.evaluate.feature_distance import (
    ENABLE_HINT,
    FeatureDistances,
    load_feature_extractor,
)
from lesionaug.evaluate.image_realism import (
    ColourSample,
    RealismConfig,
    colour_distances,
    colour_spread,
    realism_section,
    to_classifier_input,
    two_sample_test,
)
from lesionaug.evaluate.metrics import dice_coefficient, structural_similarity
from lesionaug.evaluate.report import write_report
from lesionaug.evaluate.segmenter import SegmenterConfig, square_image, train_segmenter
from lesionaug.formats import CARD_NAME
from lesionaug.masks.geometry import resize_mask
from lesionaug.output.run_record import read_run_record
from lesionaug.plan.prompts import DEFAULT_TEMPLATE, build_prompt, check_template
from lesionaug.progress import SILENT, Reporter
from lesionaug.seeds import NOISE_STREAM, derive_seed

SPLITS = ("train", "val", "test")
GRID_ROWS = 6
COMPARE_GRID_ROWS = 4  # masks of compare's grid (the same masks through each generator)


@dataclass(frozen=True)
class QualityConfig:
    """One quality measurement; validated on construction."""

    dataset: Path
    model: Path
    split: str = "test"
    provider: str = "auto"
    engine_device: int = 0  # the GPU the generator runs on (CUDA device index)
    steps: int = 20
    scheduler: str = "dpm++"
    guidance: float = 7.5
    size: int | None = None  # generation size; None: the model's training resolution
    batch_size: int = 4
    limit: int | None = None  # at most this many samples of the split (the first by id)
    seed: int = 0
    split_seed: int = 0
    masks: Path | None = None
    labels: tuple[Path, ...] = ()  # external label tables joined by image id (--labels)
    fid_weights: Path | None = None
    fidelity: bool = True
    realism: RealismConfig | None = field(default_factory=RealismConfig)  # None: --no-realism
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    out: Path = Path("lesionaug-report")

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise UsageError(f"unknown split {self.split!r}", fix=f"use --split {' or '.join(SPLITS)}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.engine_device < 0:
            raise UsageError(f"--engine-device must be a GPU index >= 0, got {self.engine_device}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, got {self.limit}")
        if self.size is not None and self.size < 8:
            raise UsageError(f"--size must be at least 8 px (SSIM's 7x7 window), got {self.size}")

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("segmenter", "realism")}
        data = {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
        data["labels"] = [str(p) for p in self.labels]
        data["segmenter"] = self.segmenter.to_dict()
        data["realism"] = self.realism.to_dict() if self.realism is not None else None
        return data


def _summary(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "median": float(np.median(array)),
        "n": int(array.size),
    }


@dataclass
class QualityInputs:
    """What the measurement needs, checked before anything expensive runs."""

    samples: list  # the split's usable samples, by id
    train: list  # the training split's, for the fidelity segmenter
    extractor: object | None  # FID/KID features, when weights were given
    resolved: object  # the model or engine resolved from --model
    engine: object
    size: int
    template: str
    notes: list[str]


@dataclass
class Measurements:
    rows: list[dict] = field(default_factory=list)  # one per image
    grid: list[tuple] = field(default_factory=list)  # (mask, generated, real) for the report's grid
    distances: FeatureDistances | None = None
    prior: np.ndarray | None = None  # the segmenter's mask for a lesion-free image
    # Image realism: real and generated images at the classifier's size, and their Lab pixels.
    realism_real: list = field(default_factory=list)
    realism_generated: list = field(default_factory=list)
    colour_real: ColourSample | None = None
    colour_generated: ColourSample | None = None
    realism_size: int = 64
    realism: dict | None = None  # the report's image_realism data, once measured
    seconds: float = 0.0


def run_quality(config: QualityConfig, reporter: Reporter = SILENT) -> dict:
    """Generate for every real mask of the split, measure, write the report; return the ``--json`` data."""
    # 1. Check inputs, cheapest first: settings, dataset, feature extractor, then the engine.
    settings = SamplerSettings(scheduler=config.scheduler, steps=config.steps, guidance=config.guidance)
    inputs = check_quality_inputs(config, settings, reporter)
    # 2. The fidelity segmenter, trained on the real training split.
    segmenter = None
    if config.fidelity:
        segmenter = train_segmenter([(s.image, s.mask) for s in inputs.train], config.segmenter, reporter)
    # 3. Generate batch by batch and measure as images arrive.
    measured = Measurements(distances=FeatureDistances(inputs.extractor, len(inputs.samples)) if inputs.extractor else None)
    if config.realism is not None:
        measured.colour_real = ColourSample(config.realism.max_pixels)
        measured.colour_generated = ColourSample(config.realism.max_pixels)
        measured.realism_size = config.realism.image_size
    started = time.perf_counter()
    with reporter.task(f"generating {config.split} images", total=len(inputs.samples)) as task:
        for start in range(0, len(inputs.samples), config.batch_size):
            batch = inputs.samples[start : start + config.batch_size]
            measure_batch(batch, start, inputs, segmenter, settings, config.seed, measured)
            task.advance(len(batch))
    measured.seconds = time.perf_counter() - started
    # 4. Image realism: the two-sample tests and the colour distances.
    if config.realism is not None:
        measured.realism = measure_realism(config.realism, inputs, measured, reporter)
    # 5. Summaries, FID/KID, plots and the report.
    section = quality_section(config, inputs, measured)
    plots = quality_plots(measured, config.fidelity)
    if measured.realism is not None:
        plots["image_realism"] = report_plots.image_realism(measured.realism)
    path = write_report(config.out, "quality", section, plots, timings=quality_timings(measured))
    keys = ("ssim", "mask_fidelity", "segmenter_on_real", "segmenter_prior", "fid", "image_realism", "n", "size",
            "engine", "notes")  # fmt: skip
    sampler = {"scheduler": config.scheduler, "steps": config.steps, "guidance": config.guidance}
    return {**{k: section[k] for k in keys}, "sampler": sampler, "report": str(path)}


def check_quality_inputs(config: QualityConfig, settings: SamplerSettings, reporter: Reporter) -> QualityInputs:
    index = load_dataset(config.dataset, config.masks, config.split_seed, labels=config.labels, reporter=reporter)
    index.check()
    samples = sorted(index.usable(config.split), key=lambda s: s.id)[: config.limit]
    train = index.usable("train")
    if not samples:
        raise DatasetError(
            f"the {config.split} split has no usable samples",
            path=config.dataset,
            fix="choose another --split (lesionaug info DATASET shows the splits)",
        )
    if config.fidelity and not train:
        raise DatasetError(
            "mask fidelity needs a real training split to train its segmenter",
            path=config.dataset,
            fix="pass --no-fidelity, or a dataset with a training split",
        )
    extractor = load_feature_extractor(config.fid_weights) if config.fid_weights else None
    resolved = resolve_given_model(config.model, "fp32", reporter)  # a model folder is exported once, cached
    card = EngineCard.read(resolved.engine_dir)
    size = config.size or _model_resolution(card)
    per_job = 2 if settings.classifier_free_guidance else 1
    profile = ShapeProfile.for_run(len(samples), config.batch_size, size, size, per_call=card.max_batch // per_job)
    engine = load_generator_engine(resolved.engine_dir, config.provider, device=config.engine_device,
                                   profile=profile, guided=settings.classifier_free_guidance, reporter=reporter)
    engine.check_size(size, size)
    model_card = engine.card.model
    notes = []
    seen = sorted({s.id for s in samples} & set(model_card.get("train_ids") or []))
    if seen:
        notes.append(
            f"the generator was trained on {len(seen)} of these {len(samples)} images: "
            "their SSIM measures memorisation, not generalisation"
        )
        reporter.warn(notes[-1])
    template = model_card.get("prompt_template") or DEFAULT_TEMPLATE
    try:
        check_template(template)
    except UsageError as exc:  # the template was read from the engine's card: a bad file, not a bad option
        raise ModelError(f"its model card's prompt template: {exc.message}", path=card.path / CARD_NAME,
                         fix="re-export the engine from a model trained by this version of lesionaug") from None
    return QualityInputs(samples, train, extractor, resolved, engine, size, template, notes)


def measure_batch(batch, start: int, inputs: QualityInputs, segmenter, settings, seed: int, measured: Measurements) -> None:
    """Generate one batch from its real masks and add a row per image to ``measured``."""
    size = inputs.size
    masks = [resize_mask(read_mask(s.mask), (size, size)) for s in batch]
    reals = [square_image(read_image(s.image), size) for s in batch]
    prompts = [build_prompt(s.labels, inputs.template) for s in batch]
    seeds = [derive_seed(seed, start + k, NOISE_STREAM) for k in range(len(batch))]
    if isinstance(inputs.engine, GanEngine):  # Pix2PixHD: the mask and the sample's own labels, one pass
        images = inputs.engine.generate_from_labels([s.labels for s in batch], masks)
    else:
        images = generate(inputs.engine, prompts, masks, seeds, settings, SILENT)
    fidelity = segmenter.predict(list(images)) if segmenter is not None else [None] * len(batch)
    on_real = segmenter.predict(reals) if segmenter is not None else [None] * len(batch)
    if segmenter is not None and measured.prior is None:
        # What the segmenter predicts with no lesion to see: a flat image of the skin's mean colour.
        flat = np.broadcast_to(np.mean(reals, axis=(0, 1, 2)).round().astype(np.uint8), reals[0].shape)
        measured.prior = segmenter.predict([np.ascontiguousarray(flat)])[0]
    prior = measured.prior
    for k, sample in enumerate(batch):
        measured.rows.append(
            {
                "id": sample.id,
                "prompt": prompts[k],
                "noise_seed": seeds[k],
                "ssim": structural_similarity(images[k], reals[k]),
                "fidelity_dice": None if fidelity[k] is None else dice_coefficient(masks[k], fidelity[k]),
                "real_dice": None if on_real[k] is None else dice_coefficient(masks[k], on_real[k]),
                "prior_dice": None if prior is None else dice_coefficient(masks[k], prior),
            }
        )
        if len(measured.grid) < GRID_ROWS:
            measured.grid.append((masks[k], images[k], reals[k]))
    if measured.colour_real is not None:
        side = measured.realism_size
        for k in range(len(batch)):
            measured.colour_real.add(reals[k], masks[k])
            measured.colour_generated.add(images[k], masks[k])
            measured.realism_real.append(to_classifier_input(reals[k], side))
            measured.realism_generated.append(to_classifier_input(images[k], side))
    if measured.distances is not None:
        measured.distances.update(reals, real=True)
        measured.distances.update(list(images), real=False)


def quality_section(config: QualityConfig, inputs: QualityInputs, measured: Measurements) -> dict:
    """The report's ``quality`` section: summaries, FID/KID when measured, and every image's row."""
    rows = measured.rows

    def summary(key: str) -> dict:
        return _summary([r[key] for r in rows if r[key] is not None])

    if measured.distances is not None:
        fid = {"status": "ok", "weights": str(config.fid_weights), **measured.distances.compute()}
    else:
        fid = {"status": "skipped", "message": f"skipped: {ENABLE_HINT}"}
    resolved = inputs.resolved
    return {
        "config": config.to_dict(),
        "engine": str(resolved.engine_dir),
        "model_source": resolved.source,
        "model_hash": resolved.model_hash,
        "engine_hash": resolved.engine_hash,
        "provider": inputs.engine.provider,
        "split": config.split,
        "n": len(rows),
        "size": inputs.size,
        "steps": config.steps,
        "ssim": summary("ssim"),
        "mask_fidelity": summary("fidelity_dice"),
        "segmenter_on_real": summary("real_dice") if config.fidelity else None,
        "segmenter_prior": summary("prior_dice") if config.fidelity else None,
        "fid": fid,
        "image_realism": measured.realism,
        "notes": inputs.notes,
        "per_image": rows,
    }


def measure_realism(config: RealismConfig, inputs: QualityInputs, measured: Measurements, reporter: Reporter) -> dict:
    """C2ST of the split's real images against the generated ones, the same test on real training
    against real split images (the reference), and the Lab colour distances and spreads."""
    n, train = len(measured.realism_real), inputs.train
    # The reference's training images: a seeded choice, as many as the split's, resized the same way.
    rng = np.random.default_rng(config.seed)
    chosen = sorted(rng.choice(len(train), min(n, len(train)), replace=False)) if train else []
    reference = [to_classifier_input(square_image(read_image(train[i].image), inputs.size), config.image_size)
                 for i in chosen]  # fmt: skip
    with reporter.task("image realism: two-sample tests", total=2) as task:
        generated = two_sample_test(measured.realism_real, measured.realism_generated, config)
        task.advance(1)
        real_only = two_sample_test(reference, measured.realism_real, config)
        task.advance(1)
    distances = colour_distances(measured.colour_real, measured.colour_generated)
    spread = colour_spread(measured.colour_real, measured.colour_generated)
    return realism_section(generated, real_only, distances, config, spread)


def quality_timings(measured: Measurements) -> dict:
    """timings.json, not report.json: the report's bytes do not depend on the machine's load."""
    rows, seconds = measured.rows, measured.seconds
    return {
        "seconds": round(seconds, 1),
        "images_per_second": round(len(rows) / seconds, 3) if seconds > 0 else None,
    }


def quality_plots(measured: Measurements, fidelity: bool) -> dict:
    rows = measured.rows
    distributions = {"SSIM against the real image": [r["ssim"] for r in rows]}
    if fidelity:
        distributions["mask fidelity Dice"] = [r["fidelity_dice"] for r in rows]
        distributions["segmenter Dice on the real images"] = [r["real_dice"] for r in rows]
    return {
        "quality_distributions": report_plots.distributions(distributions, xlabel="per-image value"),
        "quality_grid": report_plots.triplet_grid(measured.grid, ("mask", "generated image", "real image of that mask")),
    }


def _model_resolution(card: EngineCard) -> int:
    """The model's training resolution, rounded down to a size its graphs accept."""
    resolution = card.model.get("resolution")
    if not isinstance(resolution, int) or resolution <= 0:
        raise ConfigError(
            "the engine's card has no training resolution", path=card.path, fix="pass --size, e.g. --size 512"
        )
    multiple = card.size_multiple
    return max(multiple, resolution // multiple * multiple)


def generator_quality_config(config, name: str, engine: Path, sampler: dict) -> QualityConfig:
    """``lesionaug quality`` for one generator's engine, with the sampler settings its run used."""
    return QualityConfig(
        dataset=config.dataset, model=engine, split=config.quality_split, provider=config.provider,
        steps=int(sampler.get("steps") or 20), scheduler=str(sampler.get("scheduler") or "dpm++"),
        guidance=float(sampler.get("guidance") or 7.5), limit=config.quality_limit, seed=config.seed,
        split_seed=config.split_seed, masks=config.masks, labels=config.labels, segmenter=config.segmenter,
        out=Path(config.out) / "quality" / name,
    )


def measure_generators(config, generators: dict[str, dict], grids: dict[str, list], reporter: Reporter) -> None:
    """``compare``'s quality: each generator's SSIM and mask fidelity on the same real masks, with one
    fidelity segmenter for all; ``config`` is a ``compare.CompareConfig``. Fills ``generators[NAME]["quality"]``
    and ``grids[NAME]`` (the first ``COMPARE_GRID_ROWS`` rows: mask, generated image, real image)."""
    segmenter = None
    for name, folder in config.augmented:
        record = read_run_record(folder) or {}
        engine = (record.get("model") or {}).get("engine_dir")
        if not engine or not Path(engine).is_dir():
            generators[name]["quality"] = {"status": "skipped",
                                           "message": "the augmented folder's run record names no engine found here"}
            continue
        qconfig = generator_quality_config(config, name, Path(engine), record.get("sampler") or {})
        settings = SamplerSettings(scheduler=qconfig.scheduler, steps=qconfig.steps, guidance=qconfig.guidance)
        inputs = check_quality_inputs(qconfig, settings, reporter)
        if segmenter is None:
            segmenter = train_segmenter([(s.image, s.mask) for s in inputs.train], config.segmenter, reporter)
        measured = Measurements()
        with reporter.task(f"quality of {name}", total=len(inputs.samples)) as task:
            for start in range(0, len(inputs.samples), qconfig.batch_size):
                batch = inputs.samples[start : start + qconfig.batch_size]
                measure_batch(batch, start, inputs, segmenter, settings, config.seed, measured)
                task.advance(len(batch))
        section = quality_section(qconfig, inputs, measured)
        generators[name]["quality"] = {"status": "ok", **{k: section[k] for k in (
            "ssim", "mask_fidelity", "segmenter_on_real", "segmenter_prior", "n", "size", "engine", "split")}}
        grids[name] = measured.grid[:COMPARE_GRID_ROWS]
