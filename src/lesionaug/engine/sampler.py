"""The denoising loop: diffusers schedulers over the engine's fused UNet + ControlNet graph.

It follows ``StableDiffusionControlNetPipeline.__call__`` step for step (guess mode off, one
ControlNet, conditioning kept for every step), so an image made here can be regenerated with the
diffusers pipeline from the same prompt, mask, scheduler and noise seed:

    pipe(prompt, image=mask_rgb, generator=torch.Generator("cpu").manual_seed(noise_seed), ...)

Each job owns a CPU generator seeded with its noise seed; its initial noise (and, for ancestral
schedulers, each step's noise) is drawn from it alone, so an image depends only on its job, never on
the batch it ran in, the shard or the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lesionaug.errors import ConfigError, ModelError, UsageError
from lesionaug.progress import SILENT, Reporter

# --scheduler name -> diffusers class name (all built with from_config on the engine's scheduler config).
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
}
DEFAULT_SCHEDULER = "dpm++"
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 7.5
MAX_STEPS = 1000


@dataclass(frozen=True)
class SamplerSettings:
    """How to denoise: validated here, once."""

    scheduler: str = DEFAULT_SCHEDULER
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    control_scale: float = 1.0
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise UsageError(f"unknown scheduler {self.scheduler!r}", fix=f"use one of {', '.join(SCHEDULERS)}")
        if not 1 <= int(self.steps) <= MAX_STEPS:
            raise UsageError(f"--denoise-steps must be 1..{MAX_STEPS}, got {self.steps}", fix="use --denoise-steps 20")
        if not np.isfinite(self.guidance) or self.guidance < 1.0:
            raise UsageError(f"--guidance must be >= 1.0, got {self.guidance}",
                             fix="use --guidance 1.0 to turn classifier-free guidance off, or e.g. 7.5")
        if not np.isfinite(self.control_scale) or self.control_scale < 0:
            raise UsageError(f"--control-scale must be >= 0, got {self.control_scale}", fix="use --control-scale 1.0")

    @property
    def classifier_free_guidance(self) -> bool:
        """diffusers turns guidance on for guidance_scale > 1; 1.0 halves the cost."""
        return self.guidance > 1.0


def make_scheduler(name: str, config: dict):
    """A fresh diffusers scheduler of kind ``name`` from the engine's scheduler config."""
    import diffusers

    cls = getattr(diffusers, SCHEDULERS[name])
    return cls.from_config(config)


def check_jobs(prompts: list[str], masks: list[np.ndarray], noise_seeds: list[int]) -> tuple[int, int]:
    """Validate one batch of jobs; return the (height, width) they share."""
    if not (len(prompts) == len(masks) == len(noise_seeds)):
        raise ConfigError(f"{len(prompts)} prompts, {len(masks)} masks and {len(noise_seeds)} noise seeds",
                          fix="pass one prompt, mask and noise seed per job")
    if not prompts:
        raise ConfigError("no jobs to generate", fix="pass at least one prompt, mask and noise seed")
    shapes = {tuple(np.shape(m)) for m in masks}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ConfigError(f"masks must be 2-D and share one size, got {sorted(shapes)}",
                          fix="resize the masks of one batch to the same height and width")
    for seed in noise_seeds:
        if not 0 <= int(seed) < 2**63:
            raise ConfigError(f"noise seed {seed} is out of range", fix="use seeds in [0, 2**63)")
    h, w = next(iter(shapes))
    return int(h), int(w)


def control_images(masks: list[np.ndarray]):
    """Masks -> (B, 3, H, W) float32 in [0, 1]: diffusers' control image convention (white = lesion)."""
    import torch

    stack = np.stack([np.asarray(m).astype(bool) for m in masks]).astype(np.float32)
    return torch.from_numpy(np.repeat(stack[:, None], 3, axis=1))


def initial_noise(engine, seeds: list[int], height: int, width: int) -> tuple[Any, list[Any]]:
    """Each job's initial noise drawn on the CPU from its own generator, as the pipeline draws it for one image."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    shape = (1, engine.card.channels, height // engine.card.scale, width // engine.card.scale)
    generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
    noise = [randn_tensor(shape, generator=g, device=torch.device("cpu"), dtype=torch.float32) for g in generators]
    return torch.cat(noise, dim=0), generators


def generate_float(engine, prompts: list[str], masks: list[np.ndarray], noise_seeds: list[int],
                   settings: SamplerSettings, reporter: Reporter = SILENT) -> np.ndarray:
    """Images in [0, 1], float32 (B, H, W, 3): what the diffusers pipeline returns with output_type="np"."""
    import inspect

    import torch

    # 1. Check inputs.
    height, width = check_jobs(prompts, masks, noise_seeds)
    engine.check_size(height, width)
    cfg = settings.classifier_free_guidance
    per_job = 2 if cfg else 1
    if len(prompts) * per_job > engine.card.max_batch:
        chunk = engine.card.max_batch // per_job
        parts = [generate_float(engine, prompts[i:i + chunk], masks[i:i + chunk], noise_seeds[i:i + chunk],
                                settings, reporter) for i in range(0, len(prompts), chunk)]
        return np.concatenate(parts, axis=0)
    device = engine.device

    # 2. Encode prompts (unconditional half first, as the pipeline concatenates them).
    states = engine.encode_prompts(list(prompts))
    if cfg:
        states = torch.cat([engine.encode_prompts([settings.negative_prompt] * len(prompts)), states])

    # 3. Control image, both halves when guiding.
    control = control_images(masks).to(device)
    if cfg:
        control = torch.cat([control] * 2)

    # 4. Timesteps and the scheduler's extra step arguments.
    scheduler = make_scheduler(settings.scheduler, engine.scheduler_config)
    scheduler.set_timesteps(int(settings.steps), device=device)
    step_params = set(inspect.signature(scheduler.step).parameters)
    noise, generators = initial_noise(engine, noise_seeds, height, width)
    extra = {}
    if "eta" in step_params:
        extra["eta"] = 0.0
    if "generator" in step_params:
        extra["generator"] = generators

    # 5. Initial latents (scaled by the scheduler's initial sigma).
    latents = (noise * scheduler.init_noise_sigma).to(device)
    scale = torch.tensor([float(settings.control_scale)], dtype=torch.float32, device=device)
    batch = latents.shape[0] * per_job

    # 6. Denoising loop.
    with reporter.task("denoising", total=len(scheduler.timesteps)) as task:
        for t in scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            timestep = torch.full((batch,), float(t), dtype=torch.float32, device=device)
            noise_pred = engine.denoise(model_input.contiguous(), timestep, states, control, scale)
            if cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + settings.guidance * (text - uncond)
            latents = scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
            task.advance()

    # 7. Decode and denormalise exactly as the pipeline's image processor does.
    image = engine.decode(latents)
    image = (image * 0.5 + 0.5).clamp(0, 1)
    images = image.permute(0, 2, 3, 1).float().cpu().numpy()
    if not np.isfinite(images).all():  # clamp keeps NaN: a half-precision overflow must not become a file
        bad = int((~np.isfinite(images.reshape(len(images), -1))).any(axis=1).sum())
        raise ModelError(f"the engine produced NaN in {bad} of {len(images)} images ({engine.card.precision})",
                         path=engine.card.path, fix="re-export the engine with --precision fp32")
    return images


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8, rounding as diffusers' ``numpy_to_pil`` does (x * 255, round)."""
    return (images * 255).round().astype(np.uint8)


def generate(engine, prompts: list[str], masks: list[np.ndarray], noise_seeds: list[int],
             settings: SamplerSettings | None = None, reporter: Reporter | None = None) -> np.ndarray:
    """Generate one image per job: uint8 (B, H, W, 3). Job k uses prompts[k], masks[k], noise_seeds[k]."""
    images = generate_float(engine, prompts, masks, noise_seeds, settings or SamplerSettings(), reporter or SILENT)
    return to_uint8(images)
