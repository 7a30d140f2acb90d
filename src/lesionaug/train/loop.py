"""One training stage: noise-prediction MSE on the networks the stage trains, everything else locked.

The same loop trains the compact model's base (UNet + text encoder, text-to-image) and any
ControlNet (compact or Stable Diffusion base locked). Every random draw (data order, VAE posterior
sample, noise, timesteps, prompt dropout) comes from seeds derived from the master seed, and the
noise generator is re-seeded from (seed, stage, rank, step) every step, so a resumed run retraces an
uninterrupted one exactly, on any number of processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from lesionaug.train.checkpoints import load_training_state, restore_random_states
from lesionaug.train.data import TrainingSet
from lesionaug.train.networks import ModelParts, build_controlnet


def stage_seed(*parts: int) -> int:
    """A 32-bit seed from (master seed, stage, rank, ...), never from loop position."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@dataclass(frozen=True)
class TrainingStage:
    """One stage: trains ``base`` (UNet + text encoder) or ``controlnet``, for global steps
    ``first_step + 1 .. first_step + steps``."""

    name: str
    index: int
    first_step: int
    steps: int
    lr: float

    @property
    def last_step(self) -> int:
        return self.first_step + self.steps


@dataclass
class StageResult:
    name: str
    steps: int
    steps_run: int
    seconds: float
    samples_per_second: float
    losses: list[float] = field(default_factory=list)


@lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, stage: int, epoch: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(stage_seed(seed, stage, epoch, 7)))


def batch_indices(n: int, batch: int, world: int, rank: int, seed: int, stage: int, micro: int) -> list[int]:
    """Sample indices of micro-batch ``micro`` for process ``rank``: a fresh permutation each epoch,
    the last incomplete global batch of an epoch dropped."""
    per_epoch = n // (batch * world)
    epoch, pos = divmod(micro, per_epoch)
    start = pos * batch * world + rank * batch
    return _epoch_order(n, seed, stage, epoch)[start : start + batch].tolist()


def encode_texts(parts: ModelParts, prompts: list[str], device: Any, text_encoder: Any = None) -> Any:
    """Token ids padded to the tokenizer's max length -> the text encoder's last hidden state."""

    ids = parts.tokenizer(
        prompts, padding="max_length", max_length=parts.max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return (text_encoder or parts.text_encoder)(ids.to(device))[0]


def vae_moments(parts: ModelParts, pixels: Any) -> tuple[Any, Any]:
    """The VAE posterior's mean and standard deviation for images in [-1, 1]."""
    posterior = parts.vae.encode(pixels).latent_dist
    return posterior.mean, posterior.std


class StageObjective:
    """Computes the loss of one micro-batch; holds the caches of what the stage never changes."""

    def __init__(self, parts: ModelParts, data: TrainingSet, stage: TrainingStage, config: Any, device: Any, reporter):
        import torch

        self.parts, self.data, self.stage, self.config, self.device = parts, data, stage, config, device
        self.trains_text = stage.name == "base"
        self.text_cache: dict[str, Any] = {}
        self.latent_cache: tuple[Any, Any] | None = None
        if not config.cache_latents:
            return
        with torch.no_grad():
            if not self.trains_text:
                distinct = sorted({*data.prompts, ""})
                embeds = encode_texts(parts, distinct, device)
                self.text_cache = dict(zip(distinct, embeds))
            if parts.latent:
                means, stds = [], []
                with reporter.task(f"encoding {len(data)} images with the VAE (cached)", total=len(data)) as task:
                    for start in range(0, len(data), 8):
                        index = list(range(start, min(start + 8, len(data))))
                        mean, std = vae_moments(parts, data.pixels(index).to(device))
                        means.append(mean)
                        stds.append(std)
                        task.advance(len(index))
                self.latent_cache = (torch.cat(means), torch.cat(stds))

    def clean_sample(self, index: list[int], generator: Any) -> Any:
        """x0: pixels in [-1, 1], or a scaled latent drawn from the VAE posterior."""
        import torch

        if not self.parts.latent:
            return self.data.pixels(index).to(self.device)
        if self.latent_cache is not None:
            mean, std = self.latent_cache[0][index], self.latent_cache[1][index]
        else:
            with torch.no_grad():
                mean, std = vae_moments(self.parts, self.data.pixels(index).to(self.device))
        eps = torch.randn(mean.shape, generator=generator).to(self.device)
        cfg = self.parts.vae.config
        shift = getattr(cfg, "shift_factor", None) or 0.0
        return (mean + std * eps - shift) * cfg.scaling_factor

    def text_embeddings(self, prompts: list[str], text_encoder: Any) -> Any:
        import torch

        if self.text_cache:
            return torch.stack([self.text_cache[p] for p in prompts])
        if self.trains_text:
            return encode_texts(self.parts, prompts, self.device, text_encoder)
        with torch.no_grad():
            return encode_texts(self.parts, prompts, self.device)

    def loss(self, index: list[int], generator: Any, live: dict[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        # 1. Draw every random number on the CPU, in a fixed order, from the stage's generator.
        x0 = self.clean_sample(index, generator)
        noise = torch.randn(x0.shape, generator=generator)
        scheduler = self.parts.noise_scheduler
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        dropped = torch.rand(len(index), generator=generator) < self.config.prompt_dropout
        noise, t = noise.to(self.device), t.to(self.device)
        # 2. Condition: the prompt (empty when dropped, for classifier-free guidance) and the mask.
        prompts = ["" if d else self.data.prompts[i] for i, d in zip(index, dropped.tolist())]
        text = self.text_embeddings(prompts, live.get("text_encoder"))
        noisy = scheduler.add_noise(x0, noise, t)
        unet = live.get("unet", self.parts.unet)
        residuals: dict[str, Any] = {}
        if "controlnet" in live:
            control = self.data.control(index).to(self.device)
            down, mid = live["controlnet"](noisy, t, text, controlnet_cond=control, return_dict=False)
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        # 3. Predict and compare with the target the schedule defines.
        prediction = unet(noisy, t, text, **residuals).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(x0, noise, t)
        else:
            target = noise
        return F.mse_loss(prediction.float(), target.float())


def stage_networks(parts: ModelParts, stage: TrainingStage) -> dict[str, Any]:
    """The networks a stage trains; everything else in ``parts`` is locked (no grad, eval mode)."""
    if stage.name == "controlnet" and parts.controlnet is None:
        parts.controlnet = build_controlnet(parts)
    if stage.name == "base":
        trained = {"unet": parts.unet, "text_encoder": parts.text_encoder}
    else:
        trained = {"controlnet": parts.controlnet}
    for name in ("unet", "text_encoder", "vae", "controlnet"):
        network = getattr(parts, name)
        if network is None:
            continue
        network.requires_grad_(name in trained)
        network.train(name in trained)
    return trained


def run_stage(
    parts: ModelParts,
    data: TrainingSet,
    stage: TrainingStage,
    config: Any,
    accelerator: Any,
    reporter: Any,
    *,
    resume_from: Any = None,
    on_step: Callable[[int, Any, Any], None] | None = None,
) -> StageResult:
    """Train one stage; ``resume_from`` is a checkpoint folder inside this stage. ``on_step(global_step,
    optimizer, lr_scheduler)`` runs after every optimizer step (checkpoints, sample grids)."""
    import torch

    device = accelerator.device
    # A new ControlNet's conditioning embedding is drawn from the global generator: seed it.
    torch.manual_seed(stage_seed(config.seed, stage.index, 11))
    trained = stage_networks(parts, stage)
    for network in (parts.unet, parts.text_encoder, parts.vae, parts.controlnet):
        if network is not None:
            network.to(device)
    params = [p for n in trained.values() for p in n.parameters()]
    optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=1e-2)
    warmup = max(0, config.lr_warmup)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    rank, world = accelerator.process_index, accelerator.num_processes
    generator = torch.Generator()

    done = 0
    if resume_from is not None:
        state = load_training_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        restore_random_states(state["random"])
        if "grad_scaler" in state and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["grad_scaler"])
        done = int(resume_from.name.split("-")[-1]) - stage.first_step

    names = list(trained)
    prepared = accelerator.prepare(*trained.values(), optimizer)
    live = dict(zip(names, prepared[:-1]))
    optimizer = prepared[-1]
    objective = StageObjective(parts, data, stage, config, device, reporter)

    losses: list[float] = []
    smoothed = None
    start_time = time.perf_counter()
    paused = 0.0  # time in checkpoints and sample grids, left out of samples/s
    label = f"stage {stage.index + 1}: {'text-to-image base' if stage.name == 'base' else 'ControlNet'}"
    with reporter.task(label, total=stage.steps) as task:
        if done:
            task.advance(done)
        for step in range(done, stage.steps):
            generator.manual_seed(stage_seed(config.seed, stage.index, rank, step))
            total = 0.0
            for micro in range(config.grad_accum):
                index = batch_indices(
                    len(data), config.batch_size, world, rank, config.seed, stage.index, step * config.grad_accum + micro
                )
                with accelerator.autocast():
                    loss = objective.loss(index, generator, live) / config.grad_accum
                accelerator.backward(loss)
                total += float(loss.detach())
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(total)
            smoothed = total if smoothed is None else 0.9 * smoothed + 0.1 * total
            elapsed = time.perf_counter() - start_time - paused
            rate = (step + 1 - done) * config.batch_size * config.grad_accum * world / max(elapsed, 1e-9)
            if on_step is not None:
                before = time.perf_counter()
                on_step(stage.first_step + step + 1, optimizer, lr_scheduler)
                paused += time.perf_counter() - before
            task.advance(1, loss=smoothed, samples_s=rate)
    for network in trained.values():
        network.requires_grad_(False)
        network.eval()
    seconds = time.perf_counter() - start_time
    ran = stage.steps - done
    training = seconds - paused
    rate = ran * config.batch_size * config.grad_accum * world / training if ran and training > 0 else math.nan
    return StageResult(stage.name, stage.steps, ran, seconds, rate, losses)
