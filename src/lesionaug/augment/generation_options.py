"""The generation half of ``augment``'s options: output, model, sampler, writer and fault handling.

Validated once, here, before anything expensive runs; ``AugmentOptions.generation`` holds one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from lesionaug.atomic_files import LINK_MODES
from lesionaug.augment.fidelity_filter import FidelityFilter, fidelity_filter_from_options
from lesionaug.engine.provider_options import TensorrtSettings
from lesionaug.engine.providers import nvidia_gpus
from lesionaug.engine.sampler import (
    DEFAULT_GUIDANCE,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    SamplerSettings,
)
from lesionaug.errors import BackendError, UsageError

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
    link: str = "hard"  # how originals enter the output: hard (else copy), copy or reflink
    allow_pickle: bool = False  # accept pickle weights in a --model folder (unpickling can run code)
    break_lock: bool = False  # clear a stale lock the pid or host check cannot (never a held OS lock)
    device: int = 0  # the GPU a single worker runs on (CUDA device id)
    gpus: tuple[int, ...] = ()  # one worker per listed GPU over interleaved batches; () = one worker on ``device``
    trt_workspace_gb: float | None = None  # TensorRT build workspace limit; None: TensorRT's default
    fidelity_filter: FidelityFilter | None = None  # --min-fidelity, --max-attempts, --on-reject

    def __post_init__(self) -> None:
        self.sampler_settings()  # validates scheduler, steps, guidance and control scale
        if self.provider not in PROVIDERS:
            raise UsageError(f"unknown provider {self.provider!r}", fix=f"use one of {', '.join(PROVIDERS)}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be 1..{MAX_BATCH}, got {self.batch_size}", fix="use --batch-size 4")
        if self.image_format is not None and self.image_format not in IMAGE_FORMAT_CHOICES:
            raise UsageError(
                f"unknown image format {self.image_format!r}", fix=f"use --image-format {' or '.join(IMAGE_FORMAT_CHOICES)}"
            )
        if self.train_steps is not None and (not isinstance(self.train_steps, int) or self.train_steps < 1):
            raise UsageError(f"--train-steps must be a positive integer, got {self.train_steps}")
        if self.model_size is not None and self.model_size not in MODEL_SIZE_CHOICES:
            raise UsageError(f"unknown model size {self.model_size!r}", fix=f"use one of {', '.join(MODEL_SIZE_CHOICES)}")
        if self.link not in LINK_MODES:
            raise UsageError(f"unknown link mode {self.link!r}", fix=f"use --link {' or '.join(LINK_MODES)}")
        if self.workers is not None and (not isinstance(self.workers, int) or not 1 <= self.workers <= 64):
            raise UsageError(f"--workers must be 1..64, got {self.workers}")
        if not isinstance(self.device, int) or self.device < 0:
            raise UsageError(f"--device must be a GPU index >= 0, got {self.device!r}", fix="use --device 0")
        if self.gpus and (len(set(self.gpus)) != len(self.gpus) or min(self.gpus) < 0):
            raise UsageError(f"--gpus lists each GPU once, by index >= 0, got {list(self.gpus)}", fix="use --gpus 0,1")
        if self.gpus and self.device != 0:
            raise UsageError("--device and --gpus both choose the GPUs", fix="use --device N for one GPU, --gpus for several")
        if self.gpus and self.provider == "cpu":
            raise UsageError("--gpus runs one worker per GPU, and --provider cpu uses none",
                             fix="drop --gpus, or use --provider cuda or tensorrt")
        TensorrtSettings(workspace_gib=self.trt_workspace_gb)  # validates the workspace limit
        if self.model is not None and (self.train_steps is not None or self.model_size is not None):
            raise UsageError(
                "--train-steps and --model-size choose the model trained when --model is not given",
                fix="drop them, or drop --model",
            )

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> GenerationOptions:
        """Each field from the value of the same name (``augment``'s parameters); absent ones keep
        their defaults, so an option added here and on the command under one name needs no copying."""
        kwargs = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        gpus = kwargs.get("gpus")
        kwargs["gpus"] = parse_gpus(gpus) if isinstance(gpus, str) else tuple(gpus or ())
        # The one field three options make: --min-fidelity, tuned by --max-attempts and --on-reject.
        kwargs["fidelity_filter"] = fidelity_filter_from_options(
            values.get("min_fidelity"), values.get("max_attempts"), values.get("on_reject")
        )
        return cls(**kwargs)

    def sampler_settings(self) -> SamplerSettings:
        return SamplerSettings(
            scheduler=self.scheduler, steps=int(self.steps), guidance=float(self.guidance),
            control_scale=float(self.control_scale),
        )

    @property
    def worker_devices(self) -> tuple[int, ...]:
        """The device of each generation worker."""
        return self.gpus or (self.device,)

    def tensorrt_settings(self) -> TensorrtSettings:
        return TensorrtSettings(workspace_gib=self.trt_workspace_gb)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["gpus"] = list(self.gpus)
        for key in ("out", "model"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


def parse_gpus(text: str, count_gpus: Callable[[], int] = lambda: len(nvidia_gpus())) -> tuple[int, ...]:
    """``--gpus``: ``0,1,2,3`` or ``all`` (every GPU nvidia-smi lists)."""
    if text.strip().lower() == "all":
        found = count_gpus()
        if found < 1:
            raise BackendError("--gpus all found no NVIDIA GPU here (nvidia-smi lists none)",
                               fix="list the GPUs (--gpus 0,1) or run on a machine with GPUs")
        return tuple(range(found))
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise UsageError(f"malformed --gpus {text!r}", fix="use --gpus 0,1,2,3 or --gpus all")
    return tuple(int(p) for p in parts)
