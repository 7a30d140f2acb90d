"""``Pix2PixHDConfig``: everything that determines a Pix2PixHD training run, and its network sizes.

    config = Pix2PixHDConfig(model_size="compact", steps=400)
    result = train_pix2pixhd(load_dataset("./isic"), "model/", config)   # lesionaug.train.pix2pixhd_run

As published: Adam at 2e-4 with betas (0.5, 0.999) for generator and discriminators, the rate
constant for the first half of the steps and decayed linearly to zero over the second; LSGAN loss
plus feature matching (weight 10); the VGG perceptual loss (weight 10) only with ``vgg_weights``.
Torch-free, so the command line validates options before any heavy import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from lesionaug.errors import ModelError, UsageError

GENERATOR_KIND = "pix2pixhd"
# The model folder's networks: MODEL_DIR/generator/model.safetensors, MODEL_DIR/discriminator/model.safetensors.
GENERATOR_DIR = "generator"
DISCRIMINATOR_DIR = "discriminator"
WEIGHTS_NAME = "model.safetensors"
MIXED_PRECISION = ("no", "fp16", "bf16")
LOCAL_ENHANCER_FROM = 256  # px: at and above this side G1 runs at half resolution inside G2 (the paper's split)


@dataclass(frozen=True)
class Pix2PixHDSize:
    """Widths and depths of one Pix2PixHD configuration."""

    resolution: int  # default training side in px
    ngf: int  # G1's first-layer filters (the paper: 64)
    downsamples: int  # G1's stride-2 convolutions (the paper: 4)
    residual_blocks: int  # G1's residual blocks (the paper: 9)
    local_ngf: int  # G2's first-layer filters (the paper: 32)
    local_blocks: int  # G2's residual blocks (the paper: 3)
    ndf: int  # each discriminator's first-layer filters (the paper: 64)
    d_layers: int  # stride-2 layers of each PatchGAN (3: 70x70 receptive field)
    scales: int  # discriminators at 1, 1/2, 1/4 ... resolution (the paper: 3)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Pix2PixHDSize:
        try:
            return cls(**{k: int(data[k]) for k in cls.__dataclass_fields__})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the Pix2PixHD network config is incomplete ({exc})", fix="retrain the model") from None

    def uses_local_enhancer(self, resolution: int) -> bool:
        return resolution >= LOCAL_ENHANCER_FROM

    def size_multiple(self, resolution: int) -> int:
        """Sides must divide by this: every stride-2 layer of G1 (and G2's one) halves them exactly."""
        return 2 ** (self.downsamples + (1 if self.uses_local_enhancer(resolution) else 0))


# "tiny" for tests (seconds on a CPU), "compact" for the CPU demo (128 px in a few minutes of 2
# cores), "published" as in the paper (G1 ngf 64, 4 downsamplings, 9 blocks; G2 ngf 32, 3 blocks;
# 3 discriminators of 64 filters) at 512 px, so the local enhancer is used.
PIX2PIXHD_SIZES: dict[str, Pix2PixHDSize] = {
    "tiny": Pix2PixHDSize(32, 8, 2, 1, 4, 1, 8, 2, 2),
    "compact": Pix2PixHDSize(128, 16, 3, 3, 8, 1, 16, 3, 2),
    "published": Pix2PixHDSize(512, 64, 4, 9, 32, 3, 64, 3, 3),
}


# Steps of each size's default run: "tiny" for tests, "compact" a few minutes of 2 CPU cores on the
# demo data, "published" a GPU run (the paper trains 200 epochs; the user sets --steps to their data).
DEFAULT_STEPS = {"tiny": 20, "compact": 200, "published": 40000}
# Options that may change when a run is resumed: they do not alter the steps already taken.
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "keep_checkpoints", "num_samples"})


@dataclass(frozen=True)
class Pix2PixHDConfig:
    """Everything that determines a Pix2PixHD run; ``None`` means the size's default."""

    model_size: str = "compact"
    resolution: int | None = None
    steps: int | None = None
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    feature_matching_weight: float = 10.0
    vgg_weights: str | None = None  # a local VGG19 ImageNet weight file: adds the perceptual loss
    vgg_weight: float = 10.0
    mixed_precision: str = "no"
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    num_samples: int = 4

    def __post_init__(self) -> None:
        check_pix2pixhd_config(self)

    @property
    def size(self) -> Pix2PixHDSize:
        return PIX2PIXHD_SIZES[self.model_size]

    def resolved(self) -> Pix2PixHDConfig:
        """A copy with every ``None`` replaced by the size's default."""
        return replace(
            self,
            resolution=self.resolution or self.size.resolution,
            steps=self.steps if self.steps is not None else DEFAULT_STEPS[self.model_size],
        )

    @property
    def decay_from(self) -> int:
        """The step after which the learning rate falls linearly to zero (half of the run)."""
        return (self.steps or 0) // 2

    def losses(self) -> list[str]:
        """The losses this run trains with, named as the model card records them."""
        names = ["lsgan", "feature_matching"] if self.feature_matching_weight > 0 else ["lsgan"]
        return names + (["vgg19_perceptual"] if self.vgg_weights else [])

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The options that fix the trajectory of the run (compared on --resume)."""
        return {"generator": GENERATOR_KIND,
                **{k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}}


def check_pix2pixhd_config(c: Pix2PixHDConfig) -> None:
    """Every check of a Pix2PixHDConfig's values, in one place."""
    if c.model_size not in PIX2PIXHD_SIZES:
        raise UsageError(f"unknown Pix2PixHD size {c.model_size!r}", fix=f"use --model-size {' or '.join(PIX2PIXHD_SIZES)}")
    for name in ("batch_size", "keep_checkpoints", "num_samples"):
        value = getattr(c, name)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a positive integer, not {value!r}")
    for name in ("steps", "resolution"):
        value = getattr(c, name)
        if value is not None and (not isinstance(value, int) or value < (1 if name == "resolution" else 0)):
            raise UsageError(f"{name} must be a positive integer, not {value!r}")
    for name in ("checkpoint_every", "seed"):
        value = getattr(c, name)
        if not isinstance(value, int) or value < 0:
            raise UsageError(f"{name} must be a non-negative integer, not {value!r}")
    if not c.lr > 0 or not 0 <= c.beta1 < 1 or not 0 <= c.beta2 < 1:
        raise UsageError(f"bad Adam settings (lr {c.lr}, betas {c.beta1}, {c.beta2})", fix="use lr > 0 and betas in [0, 1)")
    if c.feature_matching_weight < 0 or c.vgg_weight < 0:
        raise UsageError("loss weights must be non-negative")
    if c.mixed_precision not in MIXED_PRECISION:
        raise UsageError(f"unknown mixed precision {c.mixed_precision!r}", fix=f"use one of {', '.join(MIXED_PRECISION)}")
    resolution = c.resolution or c.size.resolution
    multiple = c.size.size_multiple(resolution)
    if resolution % multiple:
        lower = max(multiple, resolution // multiple * multiple)
        raise UsageError(f"resolution {resolution} is not a multiple of {multiple}, which Pix2PixHD {c.model_size} needs",
                         fix=f"pass --size {lower} or {lower + multiple}")


__all__ = ["DEFAULT_STEPS", "GENERATOR_KIND", "PIX2PIXHD_SIZES", "Pix2PixHDConfig", "Pix2PixHDSize"]
