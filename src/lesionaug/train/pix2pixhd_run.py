"""A Pix2PixHD training run end to end: output folder, the adversarial loop, checkpoints, grids, the model folder.

    lesionaug train ./isic --generator pix2pixhd --out gan/      # the command line's way in

    MODEL_DIR/generator/model.safetensors       G (the global generator, or G1 inside the local enhancer)
    MODEL_DIR/discriminator/model.safetensors   the multi-scale discriminators (to continue training)
    MODEL_DIR/lesionaug.json                    generator "pix2pixhd", sizes, label channels, losses, data
    MODEL_DIR/checkpoints/step-N/ samples/step-N.png loss.csv loss_curve.png shape_model.npz

The same output-folder rules, checkpoints, loss log, real-subset choice and model card fields as the
diffusion trainer (``train/run.py``). Every step is a pure function of (weights, optimizer state,
step): the batch is ``batch_indices`` of the step and nothing else is drawn, so a run resumed from
a checkpoint retraces an uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesionaug import __version__
from lesionaug.atomic_files import write_bytes_atomic, write_text_atomic
from lesionaug.dataset.subsets import RealSubset
from lesionaug.environment import environment_record
from lesionaug.errors import ConfigError
from lesionaug.formats import CARD_NAME, MODEL_FORMAT
from lesionaug.plan.label_channels import LABEL_CHANNELS, label_channel_names, label_vector
from lesionaug.plan.prompts import DEFAULT_TEMPLATE
from lesionaug.progress import SILENT, Reporter
from lesionaug.train.checkpoints import (
    latest_checkpoint,
    load_network_weights,
    load_training_state,
    read_checkpoint_info,
    restore_random_states,
    save_checkpoint,
)
from lesionaug.train.data import TrainingSet, load_training_set
from lesionaug.train.loop import batch_indices, stage_seed
from lesionaug.train.loss_log import LossLog, write_loss_curve
from lesionaug.train.model_folder import prepare_output, write_run_marker
from lesionaug.train.pix2pixhd_config import (
    DISCRIMINATOR_DIR,
    GENERATOR_DIR,
    GENERATOR_KIND,
    WEIGHTS_NAME,
    Pix2PixHDConfig,
)
from lesionaug.train.run import (
    Provenance,
    make_accelerator,
    usable_training_pairs,
    write_shape_model,
)
from lesionaug.train.sample_grids import grid_png

DIVERSITY = "none: one image per label map, as published (no noise input)"


@dataclass
class LabelMapSet:
    """Training pairs with the label vector of each (diagnosis one-hot + attribute flags)."""

    pairs: TrainingSet
    vectors: Any  # (N, LABEL_CHANNELS - 1) float32

    def __len__(self) -> int:
        return len(self.pairs)

    def label_maps(self, index: Any) -> Any:
        from lesionaug.train.pix2pixhd_networks import label_map

        return label_map(self.pairs.masks[index].float(), self.vectors[index])

    def images(self, index: Any) -> Any:
        return self.pairs.pixels(index)


def load_label_map_set(samples: list[Any], resolution: int, reporter: Reporter = SILENT) -> LabelMapSet:
    import torch

    pairs = load_training_set(samples, resolution, DEFAULT_TEMPLATE, reporter)
    vectors = torch.tensor([label_vector(s.labels) for s in samples], dtype=torch.float32)
    return LabelMapSet(pairs, vectors.reshape(len(samples), LABEL_CHANNELS - 1))


@dataclass
class GanNetworks:
    """The two networks of a run, the optional VGG19 and the device they live on."""

    generator: Any
    discriminator: Any
    vgg: Any = None


def build_networks(config: Pix2PixHDConfig) -> GanNetworks:
    """G and D of the config's size, weights drawn from the run's seed (initialisation is seeded)."""
    import torch

    from lesionaug.train.pix2pixhd_networks import build_discriminator, build_generator, load_vgg19

    torch.manual_seed(stage_seed(config.seed, 0x6A4))
    generator = build_generator(config.size, config.resolution)
    discriminator = build_discriminator(config.size)
    vgg = load_vgg19(config.vgg_weights) if config.vgg_weights else None
    return GanNetworks(generator, discriminator, vgg)


def linear_decay(config: Pix2PixHDConfig) -> Callable[[int], float]:
    """The paper's schedule: the full rate for the first half of the steps, then linearly to zero."""
    steps, start = config.steps, config.decay_from

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, (steps - step) / max(1, steps - start))

    return factor


class AdversarialStep:
    """One optimizer step of G and then D on one batch (LSGAN + feature matching [+ VGG])."""

    def __init__(self, nets: GanNetworks, live: tuple[Any, Any], optimizers: tuple[Any, Any], config, accelerator):
        self.nets, self.config, self.accelerator = nets, config, accelerator
        self.generator, self.discriminator = live
        self.opt_g, self.opt_d = optimizers

    def __call__(self, maps: Any, real: Any) -> tuple[float, float]:
        import torch

        from lesionaug.train.pix2pixhd_networks import feature_matching_loss, lsgan_loss, vgg_loss

        c, acc = self.config, self.accelerator
        # 1. Generator: fool every discriminator scale, match their features of the real pair. The
        #    real pair's features are targets only (no gradient), so that forward keeps no graph.
        self.opt_g.zero_grad(set_to_none=True)
        with acc.autocast():
            fake = self.generator(maps)
            on_fake = self.discriminator(torch.cat([maps, fake], 1))
            loss_g = lsgan_loss(on_fake, True)
            if c.feature_matching_weight > 0:
                with torch.no_grad():
                    on_real = self.discriminator(torch.cat([maps, real], 1))
                loss_g = loss_g + c.feature_matching_weight * feature_matching_loss(on_fake, on_real)
            if self.nets.vgg is not None:
                loss_g = loss_g + c.vgg_weight * vgg_loss(self.nets.vgg, fake, real)
        acc.backward(loss_g)
        self.opt_g.step()
        # 2. Discriminators: real pairs to 1, generated pairs (G held fixed) to 0; halved as published.
        #    One forward over both halves (instance norm is per image, so this equals two forwards),
        #    so each network runs one forward per backward (what DistributedDataParallel needs).
        self.opt_d.zero_grad(set_to_none=True)
        n = maps.shape[0]
        with acc.autocast():
            both = self.discriminator(torch.cat([torch.cat([maps, fake.detach()], 1), torch.cat([maps, real], 1)]))
            on_fake = [[t[:n] for t in scale] for scale in both]
            on_real = [[t[n:] for t in scale] for scale in both]
            loss_d = 0.5 * (lsgan_loss(on_fake, False) + lsgan_loss(on_real, True))
        acc.backward(loss_d)
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        return float(loss_g.detach()), float(loss_d.detach())


def generate(generator: Any, maps: Any) -> Any:
    """uint8 (N, H, W, 3) images of label maps, in evaluation mode without gradients."""
    import torch

    with torch.no_grad():
        images = generator(maps)
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_gan_grid(generator: Any, val: LabelMapSet, path: Path, count: int, device: Any) -> Path:
    """Masks on the top row, the generator's images of them below (``train/sample_grids.py``'s layout)."""
    index = list(range(min(len(val), count)))
    images = generate(generator, val.label_maps(index).to(device))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, grid_png(val.pairs.masks[index, 0].numpy(), images), durable=False)
    return path


def save_networks(out_dir: Path, nets: GanNetworks) -> None:
    """Each network's safetensors in its own folder, written under a temporary name and renamed."""
    from safetensors.torch import save_file

    for name, network in ((GENERATOR_DIR, nets.generator), (DISCRIMINATOR_DIR, nets.discriminator)):
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        tmp = folder / f".{WEIGHTS_NAME}.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(folder / WEIGHTS_NAME)


def model_card(config: Pix2PixHDConfig, provenance: Provenance, nets: GanNetworks) -> dict:
    """``lesionaug.json`` of a Pix2PixHD model: the diffusion card's data fields, and what G is."""
    from lesionaug.train.pix2pixhd_networks import count_parameters

    size = config.size
    return {
        "format": MODEL_FORMAT,
        "generator": GENERATOR_KIND,
        "base": GENERATOR_KIND,
        "latent": False,
        "resolution": config.resolution,
        "size_multiple": size.size_multiple(config.resolution),
        "vae_scale_factor": None,
        "prompt_template": DEFAULT_TEMPLATE,  # the manifest's prompt text; the label map drives the images
        "label_vocabulary": provenance.label_vocabulary,
        "label_channels": label_channel_names(),
        "network": {**size.to_dict(), "local_enhancer": size.uses_local_enhancer(config.resolution),
                    "generator_parameters": count_parameters(nets.generator),
                    "discriminator_parameters": count_parameters(nets.discriminator)},
        "losses": config.losses(),
        "diversity": DIVERSITY,
        "noise_input": False,
        "shape_model": None,
        "training": config.to_dict(),
        "split_fingerprint": provenance.split_fingerprint,
        "dataset_fingerprint": provenance.dataset_fingerprint,
        "train_ids": list(provenance.train_ids),
        **({"real_subset": provenance.real_subset} if provenance.real_subset is not None else {}),
        "steps_done": config.steps,
        "version": __version__,
        "model_size": config.model_size,
    }


def _restore(checkpoint: Path, nets: GanNetworks, optimizers, schedulers, accelerator) -> int:
    """Weights, both optimizers and schedules, random and scaler states of a checkpoint; its step."""
    load_network_weights(checkpoint, GENERATOR_DIR, nets.generator)
    load_network_weights(checkpoint, DISCRIMINATOR_DIR, nets.discriminator)
    state = load_training_state(checkpoint)
    optimizers[0].load_state_dict(state["optimizer"])
    schedulers[0].load_state_dict(state["lr_scheduler"])
    optimizers[1].load_state_dict(state["optimizer_d"])
    schedulers[1].load_state_dict(state["lr_scheduler_d"])
    restore_random_states(state["random"])
    if "grad_scaler" in state and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["grad_scaler"])
    return int(read_checkpoint_info(checkpoint)["step"])


def run_pix2pixhd(
    load_train: Callable[[], LabelMapSet],
    load_val: Callable[[], LabelMapSet],
    out_dir: Path,
    config: Pix2PixHDConfig,
    provenance: Provenance,
    reporter: Reporter = SILENT,
    *,
    resume: bool = False,
    force: bool = False,
) -> dict:
    """Train Pix2PixHD for ``config.steps`` steps into ``out_dir``; return a summary like ``run_training``'s."""
    import torch

    config = config.resolved()
    out_dir = Path(out_dir)
    identity = {**config.identity(), "split_fingerprint": provenance.split_fingerprint}
    accelerator = make_accelerator(config.mixed_precision)
    # 1. The output folder: refuse a foreign or different run before writing anything.
    found: dict[str, Any] = {"checkpoint": None}

    def check_resumable() -> None:
        found["checkpoint"] = latest_checkpoint(out_dir)
        if found["checkpoint"] is not None and int(read_checkpoint_info(found["checkpoint"])["step"]) > config.steps:
            raise ConfigError("the run in the output folder is past the steps asked for", path=out_dir,
                              fix="pass the --steps it was started with")

    prepare_output(out_dir, identity, resume=resume, force=force, before_resume=check_resumable)
    data = load_train()
    if len(data) < config.batch_size * accelerator.num_processes:
        raise ConfigError(f"only {len(data)} training pairs, fewer than one batch", fix="lower --batch-size")
    if accelerator.is_main_process:
        write_run_marker(out_dir, identity, {"version": __version__, "training": config.to_dict(),
                                             "environment": environment_record()})
    # 2. Networks, optimizers (Adam, betas 0.5/0.999) and the linear decay; a checkpoint when resuming.
    nets = build_networks(config)
    betas = (config.beta1, config.beta2)
    optimizers = (torch.optim.Adam(nets.generator.parameters(), lr=config.lr, betas=betas),
                  torch.optim.Adam(nets.discriminator.parameters(), lr=config.lr, betas=betas))
    schedulers = tuple(torch.optim.lr_scheduler.LambdaLR(o, linear_decay(config)) for o in optimizers)
    checkpoint = found["checkpoint"]
    done = _restore(checkpoint, nets, optimizers, schedulers, accelerator) if checkpoint is not None else 0
    if checkpoint is not None:
        reporter.info(f"resuming from {checkpoint} (step {done})")
    device = accelerator.device
    if nets.vgg is not None:
        nets.vgg.to(device)
    g, d, opt_g, opt_d = accelerator.prepare(nets.generator, nets.discriminator, *optimizers)
    step_once = AdversarialStep(nets, (g, d), (opt_g, opt_d), config, accelerator)
    val = load_val()
    loss_log = LossLog(out_dir, accelerator, None, config.to_dict(), done)
    rank, world = accelerator.process_index, accelerator.num_processes

    # 3. The loop: batch of step s is a pure function of (seed, s); checkpoints and grids at the chosen steps.
    losses_g: list[float] = []
    losses_d: list[float] = []
    grids: list[str] = []
    start, paused = time.perf_counter(), 0.0
    with reporter.task("Pix2PixHD (G and D)", total=config.steps) as task:
        task.advance(done)
        for step in range(done, config.steps):
            index = batch_indices(len(data), config.batch_size, world, rank, config.seed, 0, step)
            lr = float(opt_g.param_groups[0]["lr"])
            loss_g, loss_d = step_once(data.label_maps(index).to(device), data.images(index).to(device))
            for scheduler in schedulers:
                scheduler.step()
            losses_g.append(loss_g)
            losses_d.append(loss_d)
            loss_log.log(step + 1, "generator", loss_g, lr)
            loss_log.log(step + 1, "discriminator", loss_d, lr)
            every = config.checkpoint_every
            if step + 1 == config.steps or (every and (step + 1) % every == 0):
                before = time.perf_counter()
                if accelerator.is_main_process:
                    extra = {"optimizer_d": optimizers[1].state_dict(), "lr_scheduler_d": schedulers[1].state_dict()}
                    if accelerator.scaler is not None:
                        extra["grad_scaler"] = accelerator.scaler.state_dict()
                    save_checkpoint(out_dir, step + 1, {"stage": GENERATOR_KIND, "version": __version__},
                                    {GENERATOR_DIR: nets.generator, DISCRIMINATOR_DIR: nets.discriminator},
                                    optimizers[0], schedulers[0], extra, keep=config.keep_checkpoints)
                    grid = out_dir / "samples" / f"step-{step + 1}.png"
                    grids.append(str(write_gan_grid(nets.generator, val, grid, config.num_samples, device)))
                    write_loss_curve(out_dir)
                accelerator.wait_for_everyone()
                paused += time.perf_counter() - before
            task.advance(1, loss=loss_g)
    seconds = time.perf_counter() - start
    loss_log.close()

    # 4. The model folder, lesionaug.json last.
    if accelerator.is_main_process:
        curve = write_loss_curve(out_dir)
        save_networks(out_dir, nets)
        card = model_card(config, provenance, nets)
        card["shape_model"] = write_shape_model(out_dir, data.pairs, provenance.split_fingerprint, reporter)
        write_text_atomic(out_dir / CARD_NAME, json.dumps(card, indent=2, default=str) + "\n")
    else:
        curve = None
    accelerator.wait_for_everyone()
    ran = config.steps - done
    training = seconds - paused
    return {
        "model_dir": str(out_dir),
        "generator": GENERATOR_KIND,
        "base": GENERATOR_KIND,
        "latent": False,
        "model_size": config.model_size,
        "resolution": config.resolution,
        "train_pairs": len(data),
        "steps_done": config.steps,
        "resumed_from_step": done if checkpoint is not None else None,
        "losses_used": config.losses(),
        "stages": [
            {"name": name, "steps": config.steps, "steps_run": ran, "seconds": round(seconds, 3),
             "samples_per_second": round(ran * config.batch_size * world / training, 3) if ran and training > 0 else None,
             "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
             "losses": losses}
            for name, losses in (("generator", losses_g), ("discriminator", losses_d))
        ],
        "sample_grids": grids,
        "loss_curve_png": str(curve) if curve else None,
        "report_to": None,
        "split_fingerprint": provenance.split_fingerprint,
    }


def train_pix2pixhd(
    dataset_index: Any,
    out_dir: str | Path,
    config: Pix2PixHDConfig,
    reporter: Reporter = SILENT,
    *,
    resume: bool = False,
    force: bool = False,
    real_subset: RealSubset | None = None,
) -> dict:
    """Train Pix2PixHD on the training split of ``dataset_index`` (only ``real_subset``'s pairs when
    given, the ones ``evaluate`` gives its segmenters with the same option) and write ``out_dir``."""
    config = config.resolved()
    samples = usable_training_pairs(dataset_index, config.batch_size, real_subset=real_subset)
    provenance = Provenance.of(dataset_index, samples, real_subset)
    val_samples = dataset_index.usable("val")[: config.num_samples] or samples[: config.num_samples]
    return run_pix2pixhd(
        lambda: load_label_map_set(samples, config.resolution, reporter),
        lambda: load_label_map_set(val_samples, config.resolution),
        Path(out_dir), config, provenance, reporter, resume=resume, force=force,
    )


__all__ = ["GENERATOR_DIR", "LabelMapSet", "load_label_map_set", "run_pix2pixhd", "train_pix2pixhd"]
