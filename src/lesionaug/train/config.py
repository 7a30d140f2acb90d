"""``TrainConfig``: everything that determines a training run, and the checks it must pass.

    config = TrainConfig(base="compact", model_size="tiny", steps=50)
    result = train_model(load_dataset("./isic"), "model/", config)   # lesionaug.train.run

Bases: ``compact`` builds a small pixel-space model from nothing and trains it in two stages by the
same loop (1: UNet + text encoder as text-to-image, 2: a ControlNet with that base locked); a Stable
Diffusion folder or hub id trains only the ControlNet with UNet, VAE and text encoder locked.
Only the training split is read; its fingerprint and ids go into ``lesionaug.json``. Runs go
through ``accelerate``, so ``accelerate launch -m lesionaug train ...`` trains on several GPUs
(each process takes its own slice of every global batch; the global batch is
``batch_size * processes * grad_accum``).
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, replace

from lesionaug.engine.sampler import DEFAULT_GUIDANCE
from lesionaug.errors import ConfigError, UsageError
from lesionaug.plan.prompts import DEFAULT_TEMPLATE, check_template
from lesionaug.train.networks import COMPACT_SIZES, MODEL_SIZES, PREDICTION_TYPES

MIXED_PRECISION = ("no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw8bit")  # adamw8bit: bitsandbytes' 8-bit AdamW (optional dependency, GPU)
# Why 0.1: generation guides every image at 7.5 from an empty-prompt branch that still sees the mask,
# so the ControlNet must learn "mask, no text" too; 10% is what the locked Stable Diffusion base was
# trained with, enough for guidance while 90% of steps learn the diagnosis wording. ControlNet's
# paper used 50% to make the condition carry semantics alone: raise it when prompts say little.
DEFAULT_PROMPT_DROPOUT = 0.1

@dataclass(frozen=True)
class Budget:
    """A base's defaults: training side in px, steps and learning rate of each stage, warm-up steps."""

    resolution: int
    base_steps: int  # compact stage 1 (text-to-image)
    steps: int  # the ControlNet stage
    base_lr: float
    lr: float
    warmup: int  # linear learning-rate warm-up at the start of each stage


# The compact "small" budget is the CPU default: about 3 minutes of one core for the demo data's 72
# training pairs (benchmarks/bench_compact_quality.py measured it against the earlier 128 px
# epsilon-prediction default); "tiny" is for tests, "base" for a GPU. Stage 2 starts its zero-initialised
# ControlNet outputs from nothing, so it gets the same high rate as stage 1.
BUDGETS: dict[str, Budget] = {
    "tiny": Budget(COMPACT_SIZES["tiny"]["resolution"], 40, 40, 2e-3, 2e-3, 10),
    "small": Budget(COMPACT_SIZES["small"]["resolution"], 600, 500, 2e-3, 2e-3, 20),
    "base": Budget(COMPACT_SIZES["base"]["resolution"], 20000, 10000, 2e-4, 1e-4, 500),
    "sd": Budget(512, 0, 5000, 0.0, 1e-5, 0),
}

# Options that may change when a run is resumed: they do not alter the steps already taken.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "keep_checkpoints", "sample_steps", "sample_guidance",
                               "num_samples", "gradient_checkpointing", "report_to"})
REPORT_TO = ("tensorboard", "wandb")  # accelerate's trackers


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; ``None`` means the base's default (see BUDGETS)."""

    base: str = "compact"
    model_size: str = "small"
    resolution: int | None = None
    steps: int | None = None  # ControlNet steps (the last stage)
    base_steps: int | None = None  # compact only: stage-1 (text-to-image) steps
    batch_size: int = 4
    grad_accum: int = 1
    lr: float | None = None  # ControlNet learning rate
    base_lr: float | None = None  # compact stage-1 learning rate
    lr_warmup: int | None = None  # warm-up steps at the start of each stage
    prediction_type: str | None = None  # compact only (default v_prediction); an SD base keeps its scheduler's
    zero_terminal_snr: bool | None = None  # compact only: the last noise step is pure noise (default with v)
    patch_size: int | None = None  # compact only: the UNet works on p x p pixel patches (None: the size's default)
    mixed_precision: str = "no"
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end of each stage
    keep_checkpoints: int = 2
    prompt_template: str = DEFAULT_TEMPLATE
    prompt_dropout: float = DEFAULT_PROMPT_DROPOUT
    cache_latents: bool = True
    allow_pickle: bool = False
    sample_steps: int = 20
    sample_guidance: float = DEFAULT_GUIDANCE  # the grids look like what `augment` will generate
    num_samples: int = 4
    report_to: str | None = None  # "tensorboard" or "wandb": accelerate's tracker for the loss
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% slower
    optimizer: str = "adamw"
    dihedral: bool = False  # train on the 8 flips/rotations of each pair (latents cached for each)
    pooled_prompt: bool = False  # compact only: the prompt's mean token state also joins the timestep embedding
    ema_decay: float = 0.0  # > 0: each stage saves the exponential moving average of its weights (train/ema.py)
    snr_gamma: float = 0.0  # > 0: Min-SNR-gamma loss weighting (Hang et al. 2023); 0: every noise level alike
    # Compact only: the share of each stage's first steps trained on the pairs at half the resolution
    # (coarse structure at a quarter of the cost), the rest at the full resolution. 0: all at full;
    # None: the model size's default.
    low_res_fraction: float | None = None
    controlnet: str | None = None  # start from this ControlNet folder (Stable Diffusion bases)

    def __post_init__(self) -> None:
        check_config(self)

    @property
    def compact(self) -> bool:
        return self.base == "compact"

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` replaced by the base's default."""
        budget = BUDGETS[self.model_size if self.compact else "sd"]
        return replace(
            self,
            resolution=self.resolution or budget.resolution,
            steps=self.steps if self.steps is not None else budget.steps,
            base_steps=(self.base_steps if self.base_steps is not None else budget.base_steps) if self.compact else 0,
            lr=self.lr if self.lr is not None else budget.lr,
            base_lr=(self.base_lr if self.base_lr is not None else budget.base_lr) if self.compact else None,
            lr_warmup=self.lr_warmup if self.lr_warmup is not None else budget.warmup,
            prediction_type=(self.prediction_type or "v_prediction") if self.compact else None,
            zero_terminal_snr=self._zero_terminal_snr() if self.compact else None,
            patch_size=(self.patch_size or COMPACT_SIZES[self.model_size]["patch_size"]) if self.compact else None,
            low_res_fraction=(
                (self.low_res_fraction if self.low_res_fraction is not None
                 else COMPACT_SIZES[self.model_size]["low_res_fraction"]) if self.compact else 0.0
            ),
        )

    def _zero_terminal_snr(self) -> bool:
        if self.zero_terminal_snr is not None:
            return self.zero_terminal_snr
        return (self.prediction_type or "v_prediction") == "v_prediction"

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The options that fix the trajectory of the run (compared on --resume)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}


# TrainConfig fields that `lesionaug train` takes as options: their errors name the option.
_OPTIONS = {"resolution": "--size", "steps": "--train-steps"} | {
    name: f"--{name.replace('_', '-')}"
    for name in ("batch_size", "grad_accum", "base_steps", "checkpoint_every", "lr_warmup", "seed", "lr", "base_lr",
                 "prompt_dropout")
}


def _named(field: str) -> str:
    """``--batch-size`` for a field the command line sets, the field's own name for the others."""
    return _OPTIONS.get(field, field)


def check_config(c: TrainConfig) -> None:
    """Every check of a TrainConfig's values, in one place. Each is a bad value whatever the files
    hold, so a ``UsageError`` (exit 2) naming the option."""
    positive = {"batch_size": c.batch_size, "grad_accum": c.grad_accum, "keep_checkpoints": c.keep_checkpoints}
    positive |= {"sample_steps": c.sample_steps, "num_samples": c.num_samples}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{_named(name)} must be a positive integer, not {value!r}")
    if c.resolution is not None and (not isinstance(c.resolution, int) or c.resolution < 1):
        raise UsageError(f"--size must be a positive integer, not {c.resolution!r}")
    for name in ("steps", "base_steps"):
        value = getattr(c, name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise UsageError(f"{_named(name)} must be a non-negative integer, not {value!r}")
    for name in ("checkpoint_every", "lr_warmup", "seed"):
        value = getattr(c, name)
        if (value is not None or name != "lr_warmup") and (not isinstance(value, int) or value < 0):
            raise UsageError(f"{_named(name)} must be a non-negative integer, not {value!r}")
    for name in ("lr", "base_lr"):
        value = getattr(c, name)
        if value is not None and not value > 0:
            raise UsageError(f"{_named(name)} must be positive, not {value!r}")
    if c.prediction_type is not None and c.prediction_type not in PREDICTION_TYPES:
        raise UsageError(f"unknown prediction type {c.prediction_type!r}", fix=f"use one of {', '.join(PREDICTION_TYPES)}")
    if not c.compact and (c.prediction_type is not None or c.zero_terminal_snr is not None):
        raise UsageError(
            "the prediction type and noise schedule are chosen for the compact base only",
            fix="a Stable Diffusion base trains its ControlNet with the base's own scheduler; drop --prediction-type",
        )
    if c.pooled_prompt and not c.compact:
        raise UsageError("--pooled-prompt is for the compact base",
                         fix="a Stable Diffusion base keeps its own UNet; drop --pooled-prompt")
    if c.patch_size is not None and not c.compact:
        raise UsageError("--patch-size is for the compact base", fix="a Stable Diffusion base works on its VAE's latents; drop --patch-size")
    if c.patch_size is not None and (not isinstance(c.patch_size, int) or c.patch_size < 1 or c.patch_size & (c.patch_size - 1)):
        raise UsageError(f"--patch-size must be a power of two (1, 2, 4...), not {c.patch_size!r}", fix="use --patch-size 2")
    if c.zero_terminal_snr and c.prediction_type == "epsilon":
        raise UsageError(
            "a zero terminal SNR schedule needs v-prediction (noise cannot be predicted from pure noise)",
            fix="use prediction_type v_prediction or zero_terminal_snr False",
        )
    if not 0.0 <= c.ema_decay < 1.0:
        raise UsageError(f"--ema-decay must be in [0, 1) (0: off), not {c.ema_decay}", fix="use e.g. --ema-decay 0.999")
    if c.low_res_fraction is not None and not 0.0 <= c.low_res_fraction < 1.0:
        raise UsageError(f"--low-res-fraction must be in [0, 1), not {c.low_res_fraction}",
                         fix="use e.g. --low-res-fraction 0.75 (0: every step at the full size)")
    if c.low_res_fraction and not c.compact:
        raise UsageError("--low-res-fraction is for the compact base",
                         fix="a Stable Diffusion base trains at its VAE's latent size; drop --low-res-fraction")
    if not (c.snr_gamma >= 0.0 and math.isfinite(c.snr_gamma)):
        raise UsageError(f"--snr-gamma must be 0 (off) or positive, not {c.snr_gamma}", fix="use e.g. --snr-gamma 5")
    if not 0.0 <= c.prompt_dropout < 1.0:
        raise UsageError(f"--prompt-dropout must be in [0, 1), not {c.prompt_dropout}", fix="use e.g. --prompt-dropout 0.1")
    if c.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {c.optimizer!r}", fix=f"use one of {', '.join(OPTIMIZERS)}")
    if c.controlnet is not None and c.compact:
        raise UsageError("--controlnet starts from a ControlNet of a Stable Diffusion base",
                         fix="pass --base with the Stable Diffusion folder the ControlNet was trained on")
    if c.mixed_precision not in MIXED_PRECISION:
        raise UsageError(f"unknown mixed precision {c.mixed_precision!r}", fix=f"use one of {', '.join(MIXED_PRECISION)}")
    if c.model_size not in MODEL_SIZES:
        raise UsageError(f"unknown model size {c.model_size!r}", fix=f"use one of {', '.join(MODEL_SIZES)}")
    if c.report_to is not None and c.report_to not in REPORT_TO:
        raise UsageError(f"unknown tracker {c.report_to!r}", fix=f"use --report-to {' or '.join(REPORT_TO)}")
    if not c.base:
        raise UsageError("--base must be 'compact', a Stable Diffusion folder or a hub id", fix="use --base compact")
    check_template(c.prompt_template)


def check_resolution(resolution: int, multiple: int, base: str, low_res_fraction: float = 0.0) -> None:
    if low_res_fraction and resolution % (2 * multiple):
        lower = max(2 * multiple, resolution // (2 * multiple) * 2 * multiple)
        raise ConfigError(
            f"resolution {resolution} halved for --low-res-fraction is not a multiple of {multiple}, which the "
            f"{base} model needs",
            fix=f"pass --size {lower} or {lower + 2 * multiple}",
        )
    if resolution % multiple:
        lower = max(multiple, resolution // multiple * multiple)
        raise ConfigError(
            f"resolution {resolution} is not a multiple of {multiple}, which the {base} model needs",
            fix=f"pass --size {lower} or {lower + multiple}",
        )


__all__ = ["BUDGETS", "Budget", "TrainConfig", "check_config", "check_resolution"]
