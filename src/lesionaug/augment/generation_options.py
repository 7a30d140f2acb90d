"""The generation half of ``augment``'s options: output, model, sampler, writer and fault handling.

Validated once, here, before anything expensive runs; ``AugmentOptions.generation`` holds one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from lesionaug.engine.sampler import (
    DEFAULT_GUIDANCE,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    SamplerSettings,
)
from lesionaug.errors import ConfigError, UsageError

PROVIDERS = ("auto", "tensorrt", "cuda", "cpu")
IMAGE_FORMAT_CHOICES = ("png", "jpg")
MODEL_SIZE_CHOICES = ("tiny", "small", "base")
MAX_BATCH = 256


@dataclass(frozen=True)
class GenerationOptions:
    """How ``augment`` generates and writes; every field maps to one command-line option."""

    out: Path | None = None  # default: a sibling <dataset>-augmented
    model: Path | None = None  # engine or model folder; None: the dataset's cached compact model
    provider: str = "auto"
    scheduler: str = DEFAULT_SCHEDULER
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    control_scale: float = 1.0
    batch_size: int = 4
    image_format: str | None = None  # None: the input's own format
    synthetic_only: bool = False
    force: bool = False
    no_train: bool = False
    train_steps: int | None = None
    model_size: str | None = None
    workers: int | None = None  # writer threads; None: one per core (at most 8)
    durable: bool = True  # fsync every file before it is renamed into place

    def __post_init__(self) -> None:
        self.sampler_settings()  # validates scheduler, steps, guidance and control scale
        if self.provider not in PROVIDERS:
            raise UsageError(f"unknown provider {self.provider!r}", fix=f"use one of {', '.join(PROVIDERS)}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_BATCH:
            raise ConfigError(f"--batch-size must be 1..{MAX_BATCH}, got {self.batch_size}", fix="use --batch-size 4")
        if self.image_format is not None and self.image_format not in IMAGE_FORMAT_CHOICES:
            raise UsageError(
                f"unknown image format {self.image_format!r}", fix=f"use --image-format {' or '.join(IMAGE_FORMAT_CHOICES)}"
            )
        if self.train_steps is not None and (not isinstance(self.train_steps, int) or self.train_steps < 1):
            raise ConfigError(f"--train-steps must be a positive integer, got {self.train_steps}")
        if self.model_size is not None and self.model_size not in MODEL_SIZE_CHOICES:
            raise UsageError(f"unknown model size {self.model_size!r}", fix=f"use one of {', '.join(MODEL_SIZE_CHOICES)}")
        if self.workers is not None and (not isinstance(self.workers, int) or not 1 <= self.workers <= 64):
            raise ConfigError(f"--workers must be 1..64, got {self.workers}")
        if self.model is not None and (self.train_steps is not None or self.model_size is not None):
            raise UsageError(
                "--train-steps and --model-size choose the model trained when --model is not given",
                fix="drop them, or drop --model",
            )

    def sampler_settings(self) -> SamplerSettings:
        return SamplerSettings(
            scheduler=self.scheduler, steps=int(self.steps), guidance=float(self.guidance),
            control_scale=float(self.control_scale),
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("out", "model"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data
