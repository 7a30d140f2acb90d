"""A training run end to end: output folder, stages, checkpoints, sample grids, the model folder.

``run_training`` takes networks and already-preprocessed pairs, so tests and library users can train
on tensors without a dataset folder; ``train_model`` (below) is the dataset-folder front end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionaug import __version__
from lesionaug.dataset.labels import ATTRIBUTES, DIAGNOSES
from lesionaug.dataset.subsets import RealSubset, choose_real_subset
from lesionaug.environment import environment_record
from lesionaug.errors import BackendError, ConfigError, DatasetError
from lesionaug.errors import ConfigError as ShapeError
from lesionaug.formats import TRACKER_DIR
from lesionaug.masks.model_file import save_shape_model
from lesionaug.masks.shape_model import fit_shape_model
from lesionaug.plan.prompts import build_prompt
from lesionaug.progress import SILENT, Reporter
from lesionaug.safe_weights import refuse_pickle_weights
from lesionaug.train.checkpoints import (
    latest_checkpoint,
    load_network_weights,
    read_checkpoint_info,
    save_checkpoint,
)
from lesionaug.train.config import TrainConfig, check_resolution
from lesionaug.train.data import TrainingSet, load_training_set
from lesionaug.train.loop import TrainingStage, check_optimizer, run_stage, stage_seed
from lesionaug.train.loss_log import LossLog, check_tracker, write_loss_curve
from lesionaug.train.model_folder import (
    prepare_output,
    write_model_folder,
    write_run_marker,
)
from lesionaug.train.networks import (
    ModelParts,
    build_compact_model,
    build_controlnet,
    load_base,
    load_controlnet,
)
from lesionaug.train.sample_grids import write_sample_grid


@dataclass(frozen=True)
class Provenance:
    """What the model was trained on, recorded in ``lesionaug.json``."""

    split_fingerprint: str
    dataset_fingerprint: str
    train_ids: list[str] = field(default_factory=list)
    label_vocabulary: dict = field(default_factory=lambda: {"diagnoses": {}, "attributes": {}})
    real_subset: dict | None = None  # --real-fraction / --real-count, when the split was subsampled

    @classmethod
    def of(cls, dataset_index: Any, samples: list, real_subset: RealSubset | None) -> Provenance:
        """The provenance of training on ``samples`` of ``dataset_index`` (either generator)."""
        return cls(
            split_fingerprint=dataset_index.subset_fingerprint(samples),
            dataset_fingerprint=dataset_index.fingerprint,
            train_ids=[str(s.id) for s in samples],
            label_vocabulary=label_vocabulary(samples),
            real_subset=real_subset.to_dict() if real_subset is not None else None,
        )


def load_parts(config: TrainConfig, prompts: list[str]) -> ModelParts:
    """The compact model (seeded, vocabulary from ``prompts``) or the Stable Diffusion base."""
    import torch

    config = config.resolved()
    if config.compact:
        torch.manual_seed(stage_seed(config.seed, 0xBA5E))
        return build_compact_model(
            config.model_size,
            config.resolution,
            prompts,
            prediction_type=config.prediction_type,
            zero_terminal_snr=config.zero_terminal_snr,
            patch_size=config.patch_size,
            pooled_prompt=config.pooled_prompt,
        )
    parts = load_base(config.base, allow_pickle=config.allow_pickle)
    if config.controlnet is not None:
        parts.controlnet = load_controlnet(config.controlnet, parts, allow_pickle=config.allow_pickle)
    return parts


def stage_plans(config: TrainConfig) -> list[TrainingStage]:
    if config.compact:
        return [
            TrainingStage("base", 0, 0, config.base_steps, config.base_lr),
            TrainingStage("controlnet", 1, config.base_steps, config.steps, config.lr),
        ]
    return [TrainingStage("controlnet", 0, 0, config.steps, config.lr)]


def make_accelerator(mixed_precision: str, report_to: str | None = None, project_dir: Path | None = None) -> Any:
    """accelerate's Accelerator, with ``report_to``'s tracker logging under ``project_dir``."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, DistributedType

    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise BackendError("--mixed-precision fp16 needs a CUDA GPU", fix="use --mixed-precision bf16 or no")
    kwargs = {"log_with": report_to, "project_dir": str(project_dir)} if report_to else {}
    try:
        return Accelerator(mixed_precision=mixed_precision, **kwargs)
    except ValueError:
        # accelerate keeps one process-wide state; a single process that trains again with another
        # precision (a library caller, a test) may start it afresh. Launched multi-process runs may not.
        if AcceleratorState().distributed_type != DistributedType.NO:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(mixed_precision=mixed_precision, **kwargs)


def owned_networks(parts: ModelParts, config: TrainConfig) -> dict[str, Any]:
    """The networks this run changes (what a checkpoint must hold)."""
    networks = {"unet": parts.unet, "text_encoder": parts.text_encoder} if config.compact else {}
    if parts.controlnet is not None:
        networks["controlnet"] = parts.controlnet
    return networks


SHAPE_MODEL_FILE = "shape_model.npz"


def write_shape_model(out_dir: Path, data: TrainingSet, fingerprint: str, reporter: Reporter) -> str | None:
    """Fit the mask shape model on the training masks as the model sees them (cropped, at the
    training resolution) and save it beside the networks; None when the masks cannot support one."""
    masks = (m[0].numpy().astype(bool) for m in data.masks)
    try:
        model = fit_shape_model(masks, data.diagnoses, fingerprint=fingerprint)
    except ShapeError as exc:
        reporter.warn(f"no shape model in the model folder: {exc.message}")
        return None
    save_shape_model(model, out_dir / SHAPE_MODEL_FILE)
    return SHAPE_MODEL_FILE


def restore_networks(parts: ModelParts, checkpoint: Path, info: dict) -> None:
    """Load a checkpoint's weights; the ControlNet is rebuilt from the (restored) UNet first."""
    for name in ("unet", "text_encoder"):
        if name in info["networks"]:
            load_network_weights(checkpoint, name, getattr(parts, name))
    if "controlnet" in info["networks"]:
        if parts.controlnet is None:
            parts.controlnet = build_controlnet(parts)
        load_network_weights(checkpoint, "controlnet", parts.controlnet)


def run_training(
    parts: ModelParts,
    load_train: Callable[[], TrainingSet],
    load_val: Callable[[], TrainingSet],
    out_dir: Path,
    config: TrainConfig,
    provenance: Provenance,
    reporter: Reporter,
    *,
    resume: bool = False,
    force: bool = False,
) -> dict:
    """Train every stage of ``config`` (already resolved) into ``out_dir``; return a summary."""
    config = config.resolved()
    identity = {**config.identity(), "split_fingerprint": provenance.split_fingerprint}
    check_tracker(config.report_to)
    accelerator = make_accelerator(config.mixed_precision, config.report_to, Path(out_dir) / TRACKER_DIR)
    plans = stage_plans(config)
    # 1. The output folder: refuse a foreign or different run before writing anything.
    start = ResumePoint(out_dir, plans)
    prepare_output(out_dir, identity, resume=resume, force=force, before_resume=start.find)
    data = load_train()
    if len(data) < config.batch_size * accelerator.num_processes:
        raise ConfigError(f"only {len(data)} training pairs, fewer than one batch", fix="lower --batch-size")
    if accelerator.is_main_process:
        write_run_marker(
            out_dir, identity,
            {"version": __version__, "training": config.to_dict(), "environment": environment_record()},
        )
    # 2. Where to start: the newest checkpoint when resuming.
    if start.checkpoint is not None:
        restore_networks(parts, start.checkpoint, start.info)
        reporter.info(f"resuming from {start.checkpoint} (step {start.done})")
    checkpoints = CheckpointWriter(parts, load_val(), out_dir, config, accelerator)
    loss_log = LossLog(out_dir, accelerator, config.report_to, config.to_dict(),
                       start.done if start.checkpoint is not None else 0)

    # 3. Each stage by the same loop; checkpoints and sample grids at the chosen steps.
    results = []
    for stage in plans:
        if start.done >= stage.last_step:
            continue
        inside = start.checkpoint is not None and stage.first_step < start.done < stage.last_step
        resume_from = start.checkpoint if inside else None
        results.append(run_stage(
            parts, data, stage, config, accelerator, reporter, resume_from=resume_from,
            on_step=lambda step, optimizer, lr_scheduler, extra_state=None, stage=stage: checkpoints.at_step(
                stage, step, optimizer, lr_scheduler, extra_state),
            on_loss=lambda step, loss, lr, name=stage.name: loss_log.log(step, name, loss, lr),
        ))

    # 4. The model folder, lesionaug.json last.
    loss_log.close()
    curve = write_loss_curve(out_dir) if accelerator.is_main_process else None
    if accelerator.is_main_process:
        shape_model = write_shape_model(out_dir, data, provenance.split_fingerprint, reporter)
        write_model_folder(out_dir, parts, model_card(parts, config, provenance, shape_model, plans[-1].last_step))
    accelerator.wait_for_everyone()
    return training_summary(out_dir, parts, config, provenance, results, start, checkpoints.grids, curve, len(data))


class ResumePoint:
    """The newest checkpoint in the output folder and its step (``find`` runs once the folder is
    known to hold this run); a checkpoint past the last step asked for is refused."""

    def __init__(self, out_dir: Path, plans: list[TrainingStage]):
        self.out_dir, self.plans = Path(out_dir), plans
        self.checkpoint: Path | None = None
        self.info: dict = {}
        self.done = 0

    def find(self) -> None:
        total = self.plans[-1].last_step
        self.checkpoint = latest_checkpoint(self.out_dir)
        self.info = read_checkpoint_info(self.checkpoint) if self.checkpoint is not None else {}
        self.done = int(self.info.get("step", 0))
        if self.done > total:
            raise ConfigError(
                f"the run in the output folder is already at step {self.done}, past the {total} steps asked for",
                path=self.out_dir,
                fix=f"pass --train-steps {self.done - self.plans[-1].first_step} or more to --resume it",
            )


class CheckpointWriter:
    """Called after every optimizer step: at each stage's last step and every ``checkpoint_every``
    steps it saves a checkpoint (networks, optimizer, schedule, grad scaler), a sample grid from the
    validation pairs and the loss curve; every process waits for the main one."""

    def __init__(self, parts: ModelParts, val: TrainingSet, out_dir: Path, config: TrainConfig, accelerator: Any):
        self.parts, self.val, self.out_dir, self.config, self.accelerator = parts, val, Path(out_dir), config, accelerator
        self.grids: list[str] = []

    def at_step(self, stage: TrainingStage, step: int, optimizer: Any, lr_scheduler: Any,
                extra_state: dict | None = None) -> None:
        every = self.config.checkpoint_every
        if step != stage.last_step and not (every and step % every == 0):
            return
        if self.accelerator.is_main_process:
            scaler = self.accelerator.scaler
            save_checkpoint(
                self.out_dir,
                step,
                {"stage": stage.name, "stage_step": step - stage.first_step, "version": __version__},
                owned_networks(self.parts, self.config),
                optimizer,
                lr_scheduler,
                # the grad scaler, and the weight average (--ema-decay) when there is one
                ({"grad_scaler": scaler.state_dict()} if scaler is not None else {}) | (extra_state or {}),
                keep=self.config.keep_checkpoints,
            )
            grid = write_grid(self.parts, self.val, self.out_dir / "samples" / f"step-{step}.png", self.config)
            self.grids.append(str(grid))
            write_loss_curve(self.out_dir)
        self.accelerator.wait_for_everyone()


def model_card(parts: ModelParts, config: TrainConfig, provenance: Provenance, shape_model: str | None,
               steps_done: int) -> dict:
    """The model card's fields (``lesionaug.json``): what the model is and what it was trained on."""
    return {
        "generator": "controlnet",
        "base": parts.base,
        "latent": parts.latent,
        "resolution": config.resolution,
        "size_multiple": parts.size_multiple,
        "vae_scale_factor": parts.vae_scale_factor,
        "patch_size": parts.patch_size,
        "prompt_template": config.prompt_template,
        "label_vocabulary": provenance.label_vocabulary,
        "shape_model": shape_model,
        "training": config.to_dict(),
        "split_fingerprint": provenance.split_fingerprint,
        "dataset_fingerprint": provenance.dataset_fingerprint,
        "train_ids": list(provenance.train_ids),
        **({"real_subset": provenance.real_subset} if provenance.real_subset is not None else {}),
        "steps_done": steps_done,
        "version": __version__,
        "model_size": config.model_size if config.compact else None,
    }


def training_summary(out_dir: Path, parts: ModelParts, config: TrainConfig, provenance: Provenance, results: list,
                     start: ResumePoint, grids: list[str], curve: Path | None, train_pairs: int) -> dict:
    """``train``'s result (its ``--json`` data): the folder, the stages run, their speed and losses."""
    return {
        "model_dir": str(out_dir),
        "base": config.base,
        "latent": parts.latent,
        "model_size": config.model_size if config.compact else None,
        "resolution": config.resolution,
        "train_pairs": train_pairs,
        "steps_done": start.plans[-1].last_step,
        "resumed_from_step": start.done if start.checkpoint is not None else None,
        "stages": [
            {
                "name": r.name,
                "steps": r.steps,
                "steps_run": r.steps_run,
                "seconds": round(r.seconds, 3),
                "samples_per_second": round(r.samples_per_second, 3) if r.steps_run else None,
                "first_loss": r.losses[0] if r.losses else None,
                "final_loss": r.losses[-1] if r.losses else None,
                "losses": r.losses,
            }
            for r in results
        ],
        "sample_grids": grids,
        "loss_curve_png": str(curve) if curve else None,
        "report_to": config.report_to,
        "split_fingerprint": provenance.split_fingerprint,
    }


def write_grid(parts: ModelParts, val: TrainingSet, path: Path, config: TrainConfig) -> Path:
    index = list(range(min(len(val), config.num_samples)))
    return write_sample_grid(
        path,
        parts,
        val.control(index),
        [val.prompts[i] for i in index],
        steps=config.sample_steps,
        guidance=config.sample_guidance,
        seed=stage_seed(config.seed, 5),
    )


def usable_training_pairs(
    index: Any, batch_size: int, processes: int = 1, real_subset: RealSubset | None = None
) -> list[Any]:
    """The training split's usable pairs (only ``real_subset``'s when given); refuses when there are
    none or too few for one batch."""
    samples = index.usable("train")
    if samples:
        samples = choose_real_subset(samples, real_subset, root=index.root)
    if not samples:
        counts = ", ".join(f"{k} {v}" for k, v in index.split_counts().items())
        raise DatasetError(
            f"no usable training pairs (image + mask) in the training split ({counts})",
            path=index.root,
            fix="add masks (--masks DIR) or a train split folder",
        )
    need = batch_size * processes
    if len(samples) < need:
        raise DatasetError(
            f"only {len(samples)} training pairs, fewer than one batch of {need}",
            path=index.root,
            fix=f"pass --batch-size {max(1, len(samples) // processes)} or add training pairs",
        )
    return samples


def label_vocabulary(samples: list[Any]) -> dict:
    """The diagnoses and attributes seen in training, code -> readable name."""
    diagnoses = sorted({s.labels.diagnosis for s in samples if s.labels.diagnosis})
    attributes = sorted({a for s in samples for a in s.labels.attributes})
    return {
        "diagnoses": {d: DIAGNOSES.get(d, d) for d in diagnoses},
        "attributes": {a: ATTRIBUTES.get(a, a.replace("_", " ")) for a in attributes},
    }


def train_model(
    dataset_index: Any,
    out_dir: str | Path,
    config: TrainConfig,
    reporter: Reporter = SILENT,
    *,
    resume: bool = False,
    force: bool = False,
    real_subset: RealSubset | None = None,
) -> dict:
    """Train on the training split of ``dataset_index`` (only ``real_subset``'s pairs when given,
    the ones ``evaluate`` gives its segmenters with the same option) and write ``out_dir``."""
    # 1. Check the inputs (cheap, nothing written).
    config = config.resolved()
    check_optimizer(config.optimizer)
    if resume:  # a folder to resume holds no pickle weights (its checkpoints' own state files aside)
        refuse_pickle_weights(out_dir, config.allow_pickle)
    samples = usable_training_pairs(dataset_index, config.batch_size, real_subset=real_subset)
    prompts = [build_prompt(s.labels, config.prompt_template) for s in samples]
    # 2. Build or load the networks (no side effects) and check the resolution against them.
    parts = load_parts(config, prompts)
    check_resolution(config.resolution, parts.size_multiple, "compact" if config.compact else "Stable Diffusion",
                     config.low_res_fraction)
    # 3. Read the pairs: training split, plus validation masks for the sample grids.
    provenance = Provenance.of(dataset_index, samples, real_subset)
    val_samples = dataset_index.usable("val")[: config.num_samples] or samples[: config.num_samples]
    return run_training(
        parts,
        lambda: load_training_set(samples, config.resolution, config.prompt_template, reporter),
        lambda: load_training_set(val_samples, config.resolution, config.prompt_template),
        Path(out_dir),
        config,
        provenance,
        reporter,
        resume=resume,
        force=force,
    )


