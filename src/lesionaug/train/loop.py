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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from lesionaug.errors import BackendError
from lesionaug.progress import Reporter
from lesionaug.train.checkpoints import load_training_state, restore_random_states
from lesionaug.train.config import TrainConfig
from lesionaug.train.data import TrainingSet
from lesionaug.train.ema import WeightAverage
from lesionaug.train.networks import ModelParts, build_controlnet, predict, use_sdpa_attention


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


def rank_samples(n: int, world: int, rank: int, seed: int) -> list[int]:
    """The samples process ``rank`` of ``world`` trains on: all of them for one process, else a fixed,
    seeded, equal share (the remainder left out), so each process encodes and caches only its own."""
    if world == 1:
        return list(range(n))
    order = _epoch_order(n, seed, 0xDA7A, 0).tolist()
    share = n // world
    return sorted(order[rank::world][:share])


def batch_indices(n: int, batch: int, world: int, rank: int, seed: int, stage: int, micro: int) -> list[int]:
    """Sample indices of micro-batch ``micro`` for process ``rank``: a fresh permutation of its own
    samples (``rank_samples``) each epoch, the last incomplete batch of an epoch dropped."""
    own = rank_samples(n, world, rank, seed)
    per_epoch = len(own) // batch
    epoch, pos = divmod(micro, per_epoch)
    order = _epoch_order(len(own), seed, stage, epoch)[pos * batch : (pos + 1) * batch].tolist()
    return [own[i] for i in order]


def dihedral(x: Any, turn: int) -> Any:
    """One of the eight symmetries of a square (..., H, W): ``turn`` % 4 quarter turns, mirrored from 4 on."""
    import torch

    x = torch.rot90(x, turn % 4, dims=(-2, -1))
    return x.flip(-1) if turn >= 4 else x


DIHEDRAL_TURNS = tuple(range(8))


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
    """Computes the loss of one micro-batch; holds the caches of what the stage never changes.

    A latent base's images are encoded once, by each process for its own samples only
    (``rank_samples``); with ``dihedral``, each of the eight flips/rotations of each image is
    encoded, and every draw picks one of them, the mask turned with it.
    """

    def __init__(self, parts: ModelParts, data: TrainingSet, stage: TrainingStage, config: TrainConfig, device: Any, reporter: Reporter,
                 rank: int = 0, world: int = 1):
        import torch

        self.parts, self.data, self.stage, self.config, self.device = parts, data, stage, config, device
        self.trains_text = stage.name == "base"
        self.text_cache: dict[str, Any] = {}
        self.latent_cache: tuple[Any, Any] | None = None  # (turns, own samples, C, h, w) means and stds
        self.own = rank_samples(len(data), world, rank, config.seed)
        self.row = {sample: row for row, sample in enumerate(self.own)}
        if not config.cache_latents:
            return
        with torch.no_grad():
            if not self.trains_text:
                distinct = sorted({*data.prompts, ""})
                embeds = encode_texts(parts, distinct, device)
                self.text_cache = dict(zip(distinct, embeds))
            if parts.latent:
                self.latent_cache = self._encode_own(reporter)

    def _encode_own(self, reporter) -> tuple[Any, Any]:
        import torch

        turns = DIHEDRAL_TURNS if self.config.dihedral else (0,)
        means, stds = [], []
        total = len(self.own) * len(turns)
        with reporter.task(f"encoding {total} images with the VAE (cached)", total=total) as task:
            for turn in turns:
                turn_means, turn_stds = [], []
                for start in range(0, len(self.own), 8):
                    index = self.own[start : start + 8]
                    mean, std = vae_moments(self.parts, dihedral(self.data.pixels(index), turn).to(self.device))
                    turn_means.append(mean)
                    turn_stds.append(std)
                    task.advance(len(index))
                means.append(torch.cat(turn_means))
                stds.append(torch.cat(turn_stds))
        return torch.stack(means), torch.stack(stds)

    def _turned(self, batch: Any, turns: list[int] | None) -> Any:
        import torch

        if turns is None:
            return batch
        return torch.stack([dihedral(item, turn) for item, turn in zip(batch, turns)])

    def clean_sample(self, index: list[int], generator: Any, turns: list[int] | None = None) -> Any:
        """x0: pixels in [-1, 1], or a scaled latent drawn from the VAE posterior (each turned by ``turns``)."""
        import torch

        if not self.parts.latent:
            return self._turned(self.data.pixels(index), turns).to(self.device)
        if self.latent_cache is not None:
            rows = torch.tensor([self.row[i] for i in index])
            which = torch.tensor(turns) if turns is not None else torch.zeros(len(index), dtype=torch.long)
            mean, std = self.latent_cache[0][which, rows], self.latent_cache[1][which, rows]
        else:
            with torch.no_grad():
                pixels = self._turned(self.data.pixels(index), turns)
                mean, std = vae_moments(self.parts, pixels.to(self.device))
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
        turns = torch.randint(0, 8, (len(index),), generator=generator).tolist() if self.config.dihedral else None
        x0 = self.clean_sample(index, generator, turns)
        noise = torch.randn(x0.shape, generator=generator)
        scheduler = self.parts.noise_scheduler
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        dropped = torch.rand(len(index), generator=generator) < self.config.prompt_dropout
        noise, t = noise.to(self.device), t.to(self.device)
        # 2. Condition: the prompt (empty when dropped, for classifier-free guidance) and the mask.
        prompts = ["" if d else self.data.prompts[i] for i, d in zip(index, dropped.tolist())]
        text = self.text_embeddings(prompts, live.get("text_encoder"))
        noisy = scheduler.add_noise(x0, noise, t)
        control = self._turned(self.data.control(index), turns).to(self.device) if "controlnet" in live else None
        # 3. Predict and compare with the target the schedule defines.
        prediction = predict(live.get("unet", self.parts.unet), live.get("controlnet"), noisy, t, text, control,
                             self.parts.patch_size)
        v_prediction = scheduler.config.prediction_type == "v_prediction"
        target = scheduler.get_velocity(x0, noise, t) if v_prediction else noise
        if not self.config.snr_gamma:
            return F.mse_loss(prediction.float(), target.float())
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
        weights = min_snr_weights(scheduler.alphas_cumprod, t, self.config.snr_gamma, v_prediction)
        return (per_sample * weights.to(per_sample.device)).mean()


def min_snr_weights(alphas_cumprod: Any, t: Any, gamma: float, v_prediction: bool) -> Any:
    """Min-SNR-gamma loss weights of timesteps ``t`` (Hang et al. 2023, "Efficient Diffusion Training
    via Min-SNR Weighting Strategy"): low-noise steps, whose loss would otherwise dominate the
    gradient, are capped. For noise prediction the weight is min(SNR, gamma) / SNR. The v target's
    loss already weighs each step SNR + 1 times its x0 loss, so there SNR + 1 takes SNR's place:
    min(SNR + 1, gamma) / (SNR + 1), which keeps the weight 1 at pure noise (zero terminal SNR),
    where the prediction from the mask alone sets the image's layout, instead of dropping that step.
    A zero-SNR step under noise prediction weighs 0 (its noise cannot be predicted)."""
    import torch

    alpha = alphas_cumprod.to(torch.float64)[t.cpu()]
    snr = alpha / (1.0 - alpha).clamp(min=1e-20)
    if v_prediction:
        snr = snr + 1.0
    capped = torch.minimum(snr, torch.full_like(snr, gamma))
    weights = torch.where(snr > 0, capped / snr.clamp(min=1e-20), torch.zeros_like(snr))
    return weights.float()


def prepare_networks(parts: ModelParts, stage: TrainingStage, config: TrainConfig, device: Any) -> dict[str, Any]:
    """The stage's trained networks, everything on ``device``, attention through PyTorch SDPA,
    activations recomputed in the backward pass when ``config.gradient_checkpointing``."""
    import torch

    # A new ControlNet's conditioning embedding is drawn from the global generator: seed it.
    torch.manual_seed(stage_seed(config.seed, stage.index, 11))
    trained = stage_networks(parts, stage)
    use_sdpa_attention(parts.unet, parts.controlnet, parts.vae)
    for network in (parts.unet, parts.text_encoder, parts.vae, parts.controlnet):
        if network is not None:
            network.to(device)
    if config.gradient_checkpointing:
        # The locked UNet too: the loss reaches a ControlNet through it, so its activations are kept.
        for network in (parts.unet, parts.controlnet):
            if network is not None:
                network.enable_gradient_checkpointing()
        if "text_encoder" in trained:
            parts.text_encoder.gradient_checkpointing_enable()
    return trained


def check_optimizer(name: str) -> None:
    """Fail before any weights load when the optimizer's library is missing."""
    if name == "adamw8bit":
        try:
            import bitsandbytes  # noqa: F401  # type: ignore[import-not-found]
        except ImportError:
            raise BackendError("--optimizer adamw8bit needs bitsandbytes, which is not installed",
                               fix="pip install bitsandbytes (on a CUDA machine), or use --optimizer adamw") from None


def make_optimizer(name: str, params: list, lr: float) -> Any:
    """AdamW, or bitsandbytes' 8-bit AdamW (optimizer state in 8 bits: about 6 bytes less per weight)."""
    check_optimizer(name)
    if name == "adamw8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(params, lr=lr, weight_decay=1e-2)
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)


@contextmanager
def gradient_sync(accelerator: Any, networks: Any, sync: bool):
    """``accelerator.no_sync`` on every trained network unless ``sync`` (a no-op in one process)."""
    with ExitStack() as stack:
        if not sync:
            for network in networks:
                stack.enter_context(accelerator.no_sync(network))
        yield


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


def restore_stage(checkpoint: Any, stage: TrainingStage, optimizer: Any, lr_scheduler: Any, accelerator: Any,
                  average: WeightAverage | None = None) -> int:
    """Load a checkpoint's optimizer, schedule, RNG, scaler and weight-average states; return the stage
    steps it had done."""
    state = load_training_state(checkpoint)
    if average is not None and "ema" in state:
        average.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    restore_random_states(state["random"])
    if "grad_scaler" in state and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["grad_scaler"])
    return int(checkpoint.name.split("-")[-1]) - stage.first_step


def run_stage(
    parts: ModelParts,
    data: TrainingSet,
    stage: TrainingStage,
    config: TrainConfig,
    accelerator: Any,
    reporter: Reporter,
    *,
    resume_from: Any = None,
    on_step: Callable[..., None] | None = None,
    on_loss: Callable[[int, float, float], None] | None = None,
) -> StageResult:
    """Train one stage; ``resume_from`` is a checkpoint folder inside this stage. ``on_step(global_step,
    optimizer, lr_scheduler, extra_state)`` runs after every optimizer step (checkpoints, sample grids;
    ``extra_state`` holds the weight average, with ``config.ema_decay``, which replaces the weights
    before the stage's last step is handed on);
    ``on_loss(global_step, loss, lr)`` gets each step's loss and learning rate (the loss log)."""
    import torch

    device = accelerator.device
    trained = prepare_networks(parts, stage, config, device)
    params = [p for n in trained.values() for p in n.parameters()]
    optimizer = make_optimizer(config.optimizer, params, stage.lr)
    warmup = max(0, config.lr_warmup)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    rank, world = accelerator.process_index, accelerator.num_processes
    generator = torch.Generator()
    average = WeightAverage(params, config.ema_decay) if config.ema_decay > 0 else None

    done = 0 if resume_from is None else restore_stage(resume_from, stage, optimizer, lr_scheduler, accelerator,
                                                       average)

    names = list(trained)
    prepared = accelerator.prepare(*trained.values(), optimizer)
    live = dict(zip(names, prepared[:-1]))
    optimizer = prepared[-1]
    objective = StageObjective(parts, data, stage, config, device, reporter, rank, world)
    # Progressive resolution (compact, pixel space): the stage's first steps on the pairs at half size
    # (halved only when a step still to run needs them, e.g. not when resuming past the switch).
    low_steps = round(stage.steps * (config.low_res_fraction or 0.0))
    low = None
    if done < low_steps:
        low = StageObjective(parts, data.halved(), stage, config, device, reporter, rank, world)

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
            lr = float(optimizer.param_groups[0]["lr"])
            total = 0.0
            for micro in range(config.grad_accum):
                index = batch_indices(
                    len(data), config.batch_size, world, rank, config.seed, stage.index, step * config.grad_accum + micro
                )
                # Under DDP, gradients are averaged across processes only on the last micro-batch.
                with gradient_sync(accelerator, live.values(), micro == config.grad_accum - 1):
                    with accelerator.autocast():
                        loss = (low if step < low_steps else objective).loss(index, generator, live)
                        loss = loss / config.grad_accum
                    accelerator.backward(loss)
                total += float(loss.detach())
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            extra_state = {}
            if average is not None:
                average.update(params)
                if step + 1 == stage.steps:  # the stage's result is the average
                    average.copy_to(params)
                extra_state["ema"] = average.state_dict()
            losses.append(total)
            if on_loss is not None:
                on_loss(stage.first_step + step + 1, total, lr)
            smoothed = total if smoothed is None else 0.9 * smoothed + 0.1 * total
            elapsed = time.perf_counter() - start_time - paused
            rate = (step + 1 - done) * config.batch_size * config.grad_accum * world / max(elapsed, 1e-9)
            if on_step is not None:
                before = time.perf_counter()
                on_step(stage.first_step + step + 1, optimizer, lr_scheduler, extra_state)
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
