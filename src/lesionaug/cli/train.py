"""`lesionaug train`: train the mask-conditioned generator on a dataset's training split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lesionaug.cli._app import JsonOpt, LabelTablesOpt, LogFileOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli._invocation import RESUME_FLAG
from lesionaug.cli.masks import RealCountOpt, RealFractionOpt
from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.subsets import real_subset_from_options
from lesionaug.dataset.summary import diagnosis_warning
from lesionaug.plan.prompts import DEFAULT_TEMPLATE
from lesionaug.train.config import DEFAULT_PROMPT_DROPOUT, TrainConfig
from lesionaug.train.run import train_model

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
    kind = "latent" if data["latent"] else "pixel-space"
    console.print(f"{kind} model, base {data['base']}, {data['resolution']} px, {data['train_pairs']} training pairs")
    if data["sample_grids"]:
        console.print(f"sample grids: {data['sample_grids'][-1]} (and {len(data['sample_grids']) - 1} earlier)")
    if data["loss_curve_png"]:
        console.print(f"loss curve: {data['loss_curve_png']}")


@app.command("train")
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (its training split is used).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    base: Annotated[
        str, typer.Option("--base", help="'compact' (no weights), or a Stable Diffusion folder or hub id.")
    ] = "compact",
    model_size: Annotated[str, typer.Option("--model-size", help="Compact width: tiny, small or base.")] = "small",
    resolution: Annotated[int | None, typer.Option("--resolution", help="Training side in px (default per base).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="ControlNet training steps.")] = None,
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
        str | None, typer.Option("--prediction-type", help="Compact only: v_prediction (default) or epsilon.")
    ] = None,
    mixed_precision: Annotated[str, typer.Option("--mixed-precision", help="no, fp16 (GPU) or bf16.")] = "no",
    seed: Annotated[int, typer.Option("--seed", help="Master seed of weights, data order and noise.")] = 0,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Checkpoint and sample grid every N steps (0: stage ends).")
    ] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace whatever run --out holds.")] = False,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Accept .bin pickle weights in the base (runs their code).")
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
        str, typer.Option("--optimizer", help="adamw, or adamw8bit (bitsandbytes, CUDA): 8-bit optimizer state.")
    ] = "adamw",
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Train on the 8 flips/rotations of each pair, the mask turned with "
                           "its image (latents cached for each: 8x the encoding).")
    ] = False,
    ema_decay: Annotated[
        float, typer.Option("--ema-decay", help="Save each stage's exponential moving average of its weights "
                            "with this decay, e.g. 0.999 (0: off, the last step's weights).")
    ] = 0.0,
    controlnet: Annotated[
        Path | None, typer.Option("--controlnet", help="Start from this ControlNet folder (trained on the same "
                                  "Stable Diffusion base) instead of one copied from the UNet.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Encode images and prompts every step instead of once.")
    ] = False,
    report_to: Annotated[
        str | None,
        typer.Option(
            "--report-to",
            help="Log the loss through accelerate's tracker: tensorboard (MODEL_DIR/logs) or wandb "
            "(optional packages). loss.csv and loss_curve.png are written in any case.",
        ),
    ] = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of masks, for layouts without them.")] = None,
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the split when folders give none.")] = 0,
    real_fraction: RealFractionOpt = None,
    real_count: RealCountOpt = None,
    labels: LabelTablesOpt = None,
    log_file: LogFileOpt = None,
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

    Example: lesionaug train ./isic --out model/ --model-size tiny
    """

    def body(reporter):
        real_subset = real_subset_from_options(real_fraction, real_count, split_seed)
        config = TrainConfig(
            base=base,
            model_size=model_size,
            resolution=resolution,
            steps=steps,
            base_steps=base_steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            lr=lr,
            base_lr=base_lr,
            lr_warmup=lr_warmup,
            prediction_type=prediction_type,
            mixed_precision=mixed_precision,
            seed=seed,
            checkpoint_every=checkpoint_every,
            prompt_template=prompt_template or DEFAULT_TEMPLATE,
            prompt_dropout=prompt_dropout,
            gradient_checkpointing=gradient_checkpointing,
            optimizer=optimizer,
            dihedral=dihedral,
            ema_decay=ema_decay,
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
        result = train_model(index, out, config, reporter, resume=resume, force=force, real_subset=real_subset)
        for stage in result["stages"]:
            stage["loss_curve"] = loss_curve(stage.pop("losses"))
        return result, lambda console: render_train(result, console)

    run_command("train", Out(json_, quiet, verbose, log_file), body, resume=RESUME_FLAG)
