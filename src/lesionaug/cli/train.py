"""`lesionaug train`: train the mask-conditioned generator on a dataset's training split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, LogFileOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli._invocation import RESUME_FLAG
from lesionaug.cli.dataset_options import MasksDirOpt, RealCountOpt, RealFractionOpt, SplitSeedOpt
from lesionaug.cli.option_types import choice, square_side
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.subsets import real_subset_from_options
from lesionaug.dataset.summary import diagnosis_warning
from lesionaug.plan.prompts import DEFAULT_TEMPLATE
from lesionaug.errors import UsageError
from lesionaug.train.config import DEFAULT_PROMPT_DROPOUT, MIXED_PRECISION, OPTIMIZERS, REPORT_TO, TrainConfig
from lesionaug.train.networks import MODEL_SIZES, PREDICTION_TYPES
from lesionaug.train.pix2pixhd_config import PIX2PIXHD_SIZES, Pix2PixHDConfig
from lesionaug.train.pix2pixhd_run import train_pix2pixhd
from lesionaug.train.run import train_model

GENERATORS = ("controlnet", "pix2pixhd")

_CURVE_POINTS = 50


def loss_curve(losses: list[float], points: int = _CURVE_POINTS) -> list[float]:
    """At most ``points`` window means of a loss history (what --json reports instead of every step)."""
    if len(losses) <= points:
        return [round(v, 6) for v in losses]
    size = len(losses) / points
    out = []
    for i in range(points):
        window = losses[int(i * size) : int((i + 1) * size)] or losses[int(i * size) : int(i * size) + 1]
        out.append(round(sum(window) / len(window), 6))
    return out


def render_train(data: dict, console: Console) -> None:
    table = Table(title=f"model folder {data['model_dir']}", title_justify="left")
    for column in ("stage", "steps run", "samples/s", "first loss", "final loss", "seconds"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in data["stages"]:
        first, final, rate = stage["first_loss"], stage["final_loss"], stage["samples_per_second"]
        table.add_row(
            stage["name"],
            f"{stage['steps_run']}/{stage['steps']}",
            f"{rate:.2f}" if rate else "-",
            f"{first:.4f}" if first is not None else "-",
            f"{final:.4f}" if final is not None else "-",
            f"{stage['seconds']:.1f}",
        )
    console.print(table)
    kind = "Pix2PixHD" if data.get("generator") == "pix2pixhd" else "latent" if data["latent"] else "pixel-space"
    console.print(f"{kind} model, base {data['base']}, {data['resolution']} px, {data['train_pairs']} training pairs")
    if data["sample_grids"]:
        console.print(f"sample grids: {data['sample_grids'][-1]} (and {len(data['sample_grids']) - 1} earlier)")
    if data["loss_curve_png"]:
        console.print(f"loss curve: {data['loss_curve_png']}")


@app.command("train")
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (its training split is used).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    generator: Annotated[
        choice(GENERATORS), typer.Option("--generator", case_sensitive=False, help="controlnet (the diffusion generator, default) or pix2pixhd (the "
                          "GAN baseline of the paper's comparison, conditioned on mask + diagnosis + attributes).")
    ] = "controlnet",
    base: Annotated[
        str, typer.Option("--base", help="'compact' (no weights), or a Stable Diffusion folder or hub id.")
    ] = "compact",
    model_size: Annotated[
        choice(dict.fromkeys([*MODEL_SIZES, *PIX2PIXHD_SIZES])) | None,
        typer.Option("--model-size", case_sensitive=False, help="Compact width: tiny, small (default) or base; "
                     "pix2pixhd: tiny, compact (default) or published."),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--size", parser=square_side, metavar="N", help="Training side in px (default per base; was --resolution)."
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--train-steps", help="ControlNet training steps (was --steps).")
    ] = None,
    base_steps: Annotated[
        int | None, typer.Option("--base-steps", help="Compact only: text-to-image stage steps.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs per step and process.")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")] = 1,
    lr: Annotated[float | None, typer.Option("--lr", help="ControlNet learning rate.")] = None,
    base_lr: Annotated[float | None, typer.Option("--base-lr", help="Compact stage-1 learning rate.")] = None,
    lr_warmup: Annotated[
        int | None, typer.Option("--lr-warmup", help="Warm-up steps at the start of each stage (default per size).")
    ] = None,
    prediction_type: Annotated[
        choice(PREDICTION_TYPES) | None,
        typer.Option("--prediction-type", case_sensitive=False, help="Compact only (default: v_prediction).")
    ] = None,
    patch_size: Annotated[
        int | None,
        typer.Option("--patch-size", help="Compact only: the UNet works on p x p pixel patches, p times fewer "
                     "cells per side for the same image size (default 1: pixels; see docs/training.md)."),
    ] = None,
    mixed_precision: Annotated[
        choice(MIXED_PRECISION), typer.Option("--mixed-precision", case_sensitive=False, help="fp16 needs a GPU.")
    ] = "no",
    seed: Annotated[int, typer.Option("--seed", help="Master seed of weights, data order and noise.")] = 0,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Checkpoint and sample grid every N steps (0: stage ends).")
    ] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace whatever run --out holds.")] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Accept .bin/.pt pickle weights in --base, --controlnet or a --resume folder (runs their code).",
        ),
    ] = False,
    prompt_template: Annotated[
        str | None, typer.Option("--prompt-template", help="Prompt text with {diagnosis} {attributes} {site} ...")
    ] = None,
    prompt_dropout: Annotated[
        float,
        typer.Option(
            "--prompt-dropout",
            help="Probability of training on an empty prompt. Generation guides from an empty-prompt branch "
            "that still sees the mask, so the ControlNet must learn that too; 0.1 is what Stable Diffusion was "
            "trained with (ControlNet's paper used 0.5: raise it when prompts say little).",
        ),
    ] = DEFAULT_PROMPT_DROPOUT,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations in the backward pass: less GPU "
                           "memory (Stable Diffusion at 512 px), about 30% slower.")
    ] = False,
    optimizer: Annotated[
        choice(OPTIMIZERS),
        typer.Option("--optimizer", case_sensitive=False, help="adamw8bit: 8-bit optimizer state (bitsandbytes, CUDA).")
    ] = "adamw",
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Train on the 8 flips/rotations of each pair, the mask turned with "
                           "its image (latents cached for each: 8x the encoding).")
    ] = False,
    pooled_prompt: Annotated[
        bool, typer.Option("--pooled-prompt", help="Compact only: also add the prompt's mean token state to the "
                           "timestep embedding of every block, so the prompt (diagnosis, attributes) steers the "
                           "colours; without it the small model's cross-attention barely uses the prompt.")
    ] = False,
    ema_decay: Annotated[
        float, typer.Option("--ema-decay", help="Save each stage's exponential moving average of its weights "
                            "with this decay, e.g. 0.999 (0: off, the last step's weights).")
    ] = 0.0,
    low_res_fraction: Annotated[
        float | None,
        typer.Option("--low-res-fraction", help="Compact only: train the first share of each stage's steps on the "
                     "pairs at half the size (a quarter of the cost); 0: every step at --size. Default: the model "
                     "size's (small: 0.75 of the steps at 64 px, then 128 px; tiny and base: 0).")
    ] = None,
    snr_gamma: Annotated[
        float, typer.Option("--snr-gamma", help="Min-SNR-gamma loss weighting: cap each noise level's weight at "
                            "this signal-to-noise ratio, e.g. 5 (0: off, every noise level alike).")
    ] = 0.0,
    controlnet: Annotated[
        Path | None, typer.Option("--controlnet", help="Start from this ControlNet folder (trained on the same "
                                  "Stable Diffusion base) instead of one copied from the UNet.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Encode images and prompts every step instead of once.")
    ] = False,
    report_to: Annotated[
        choice(REPORT_TO) | None,
        typer.Option(
            "--report-to",
            case_sensitive=False,
            help="Log the loss through accelerate's tracker: tensorboard (MODEL_DIR/logs) or wandb "
            "(optional packages). loss.csv and loss_curve.png are written in any case.",
        ),
    ] = None,
    vgg_weights: Annotated[
        Path | None, typer.Option("--vgg-weights", help="pix2pixhd only: a local VGG19 ImageNet weight file "
                                  "(torchvision's state dict, .pth or .safetensors) adds the perceptual loss.")
    ] = None,
    masks: MasksDirOpt = None,
    split_seed: SplitSeedOpt = 0,
    real_fraction: RealFractionOpt = None,
    real_count: RealCountOpt = None,
    labels: LabelTablesOpt = None,
    log_file: LogFileOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train the mask-conditioned generator on DATASET's training split into a model folder.

    With --base compact (the default) a small pixel-space model is trained from nothing in two
    stages (text-to-image base, then the ControlNet); with a Stable Diffusion folder or hub id only
    the ControlNet is trained, the base locked. Several GPUs: accelerate launch -m lesionaug train ...
    The loss of every step goes to MODEL_DIR/loss.csv and loss_curve.png (and --report-to's tracker);
    Ctrl-C (or SIGTERM at a batch time limit) ends with the command that resumes from the last checkpoint.

    --real-fraction / --real-count train on a seeded subset of the training split: pass the same
    option to `lesionaug evaluate`, so its real-only baseline gets the pairs the generator saw.

    --generator pix2pixhd trains the Pix2PixHD baseline instead (Wang et al. 2018: LSGAN, feature
    matching, and the VGG loss only with --vgg-weights), for `lesionaug compare`.

    Example: lesionaug train ./isic --out model/ --model-size tiny --train-steps 2000
    """

    def body(reporter):
        real_subset = real_subset_from_options(real_fraction, real_count, split_seed)
        if generator == "pix2pixhd":
            diffusion_only = {"--base": base != "compact", "--base-steps": base_steps is not None,
                              "--base-lr": base_lr is not None, "--lr-warmup": lr_warmup is not None,
                              "--prediction-type": prediction_type is not None, "--grad-accum": grad_accum != 1,
                              "--patch-size": patch_size is not None,
                              "--controlnet": controlnet is not None, "--dihedral": dihedral,
                              "--pooled-prompt": pooled_prompt,
                              "--optimizer": optimizer != "adamw", "--report-to": report_to is not None,
                              "--prompt-template": prompt_template is not None}
            given = [name for name, set_ in diffusion_only.items() if set_]
            if given:
                raise UsageError(f"{given[0]} applies to the diffusion generator, not to pix2pixhd",
                                 fix="drop it, or use --generator controlnet")
            gan = Pix2PixHDConfig(
                model_size=model_size or "compact", resolution=resolution, steps=steps, batch_size=batch_size,
                lr=lr if lr is not None else 2e-4, vgg_weights=str(vgg_weights) if vgg_weights else None,
                mixed_precision=mixed_precision, seed=seed, checkpoint_every=checkpoint_every,
            )
        elif vgg_weights is not None:
            raise UsageError("--vgg-weights applies to --generator pix2pixhd only", fix="drop --vgg-weights")
        elif model_size in PIX2PIXHD_SIZES and model_size != "tiny":
            raise UsageError(f"--model-size {model_size} is a pix2pixhd size", fix="add --generator pix2pixhd")
        config = None if generator == "pix2pixhd" else TrainConfig(
            base=base,
            model_size=model_size or "small",
            resolution=resolution,
            steps=steps,
            base_steps=base_steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            lr=lr,
            base_lr=base_lr,
            lr_warmup=lr_warmup,
            prediction_type=prediction_type,
            patch_size=patch_size,
            mixed_precision=mixed_precision,
            seed=seed,
            checkpoint_every=checkpoint_every,
            prompt_template=prompt_template or DEFAULT_TEMPLATE,
            prompt_dropout=prompt_dropout,
            gradient_checkpointing=gradient_checkpointing,
            optimizer=optimizer,
            dihedral=dihedral,
            pooled_prompt=pooled_prompt,
            ema_decay=ema_decay,
            snr_gamma=snr_gamma,
            low_res_fraction=low_res_fraction,
            controlnet=str(controlnet) if controlnet is not None else None,
            cache_latents=not no_cache,
            allow_pickle=allow_pickle,
            report_to=report_to.lower() if report_to else None,
        )
        index = load_dataset(
            dataset, masks=masks, split_seed=split_seed, labels=tuple(labels or ()), reporter=reporter
        )
        warning = diagnosis_warning(index)
        if warning:
            reporter.warn(warning)
        if config is None:
            result = train_pix2pixhd(index, out, gan, reporter, resume=resume, force=force, real_subset=real_subset)
        else:
            result = train_model(index, out, config, reporter, resume=resume, force=force, real_subset=real_subset)
        for stage in result["stages"]:
            stage["loss_curve"] = loss_curve(stage.pop("losses"))
        return result, lambda console: render_train(result, console)

    run_command("train", Out(json_, quiet, verbose, log_file), body, resume=RESUME_FLAG)
