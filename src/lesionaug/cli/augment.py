"""`lesionaug augment`: plan new image/mask pairs and generate them (``--dry-run`` plans only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lesionaug.atomic_files import LINK_MODES
from lesionaug.augment.generation_options import IMAGE_FORMAT_CHOICES, MODEL_SIZE_CHOICES, PROVIDERS
from lesionaug.augment.options import AugmentOptions
from lesionaug.augment.preparation import prepare_plan, preview_plan
from lesionaug.augment.run import run_augment
from lesionaug.cli._app import (
    ConfigOpt,
    JsonOpt,
    LabelTablesOpt,
    LogFileOpt,
    Out,
    QuietOpt,
    VerboseOpt,
    app,
    run_command,
)
from lesionaug.cli._invocation import RESUME_SAME
from lesionaug.cli.dataset_options import MasksDirOpt, RealCountOpt, RealFractionOpt, SplitSeedOpt
from lesionaug.cli.masks import MaskSourceOpt
from lesionaug.cli.option_types import SIZE_METAVAR, choice, size_text
from lesionaug.engine.sampler import SCHEDULERS
from lesionaug.progress import Reporter
from lesionaug.evaluate.pair_fidelity import fidelity_scorer_factory

PREVIEW_ROWS = 10


def render_plan(data: dict, console: Console) -> None:
    """The human view of a dry run: counts, mask statistics and the first jobs."""
    stats = data["mask_statistics"]
    area = stats["area_fraction"]
    shard = f", shard {data['shard']}" if data["shard"] else ""
    console.print(
        f"plan {data['plan_hash'][:16]}: {data['n_jobs']} of {data['n']} jobs{shard}, "
        f"from {data['training_samples']} training samples ({data['layout']})"
    )
    summary = Table(show_header=False, title="what would be generated", title_justify="left")
    summary.add_column("what", style="bold")
    summary.add_column("counts")
    counts = data["label_counts"]
    for key in ("diagnosis", "attributes", "mask_source"):
        summary.add_row(key, ", ".join(f"{k} {v}" for k, v in counts[key].items()) or "-")
    summary.add_row("shape models", ", ".join(f"{k} {v}" for k, v in stats["shape_groups"].items()) or "-")
    if area["mean"] is not None:
        summary.add_row(
            "mask area",
            f"mean {area['mean']:.3f}, median {area['median']:.3f}, {area['min']:.3f} to {area['max']:.3f} "
            f"(training {stats['training_area_range'][0]:.3f} to {stats['training_area_range'][1]:.3f})",
        )
        summary.add_row("clipped by border", f"{stats['clipped_fraction']:.0%}")
    console.print(summary)
    jobs = Table(
        title=f"first {min(PREVIEW_ROWS, len(data['jobs']))} jobs (--json lists all, with their seeds)",
        title_justify="left",
    )
    for column in ("id", "prompt", "mask"):
        jobs.add_column(column)
    for job in data["jobs"][:PREVIEW_ROWS]:
        jobs.add_row(job["id"], job["prompt"], job["mask_source"])
    console.print(jobs)


def render_run(data: dict, console: Console) -> None:
    """The human view of a generation run: its top-level facts, one per line."""
    for key, value in data.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            console.print(f"{key}: {value}")
    checks = data.get("fidelity_filter")
    if checks:
        retried = sum(v for k, v in checks["kept_by_attempt"].items() if k != "1")
        below = ", ".join(f"{t} {n}" for t, n in checks["first_attempt_below"].items())
        console.print(
            f"fidelity filter {checks['min_fidelity']}: {checks['n_checked']} pairs checked, "
            f"{checks['n_first_attempt']} passed at once, {retried} after a retry, {checks['n_dropped']} dropped, "
            f"{checks['n_kept_below']} kept below; first attempts below {below}", soft_wrap=True, highlight=False
        )


def build_options(dataset: Path, values: dict) -> AugmentOptions:
    """Step 1: the parameter values as one options object."""
    return AugmentOptions.from_cli(dataset, values)


def run_or_preview(options: AugmentOptions, reporter: Reporter) -> tuple[dict, Callable[[Console], None]]:
    """Step 2: the dry run's plan, or the generation run; each with its human view."""
    if options.dry_run:
        plan = preview_plan(prepare_plan(options, reporter), reporter)
        return plan, lambda console: render_plan(plan, console)
    # --min-fidelity's segmenter comes from evaluate/, which augment/ may not import: handed in here.
    checked = {"pair_scorer": fidelity_scorer_factory(reporter=reporter)} if options.generation.fidelity_filter else {}
    data = run_augment(options, reporter, **checked)
    return data, lambda console: render_run(data, console)


@app.command("augment")
def augment(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (any layout in docs/datasets.md; lesionaug info --layouts).")],
    n: Annotated[
        int | None, typer.Option("--n", help="How many new image/mask pairs (required, here or in --config).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: <dataset>-augmented beside the dataset).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Engine folder, or model folder (exported once, cached). Default: the compact model cached "
            "for this dataset, trained first when missing.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Master seed; pair k depends only on (seed, k).")] = 0,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Only the jobs k with k mod N == i, written as i/N; auto: from SLURM_ARRAY_TASK_ID or "
            "JOB_COMPLETION_INDEX (with auto/N or LESIONAUG_SHARD_COUNT); see docs/cluster.md.",
        ),
    ] = None,
    prompt_template: Annotated[
        str | None,
        typer.Option(
            "--prompt-template",
            help="Prompt with {diagnosis} {attributes} {site} {age} {sex}; default: the --model's own "
            "(from its card), else 'a dermoscopic image of {diagnosis} {attributes} {site}'.",
        ),
    ] = None,
    label_mix: Annotated[
        str,
        typer.Option(
            "--label-mix",
            help="match (as in the training split), balanced (uniform over diagnoses) or weights like mel=0.5,nv=0.5.",
        ),
    ] = "match",
    diagnosis: Annotated[
        str | None, typer.Option("--diagnosis", help="Diagnosis weights, e.g. mel=0.5,nv=0.3,bcc=0.2.")
    ] = None,
    mask_source: MaskSourceOpt = "model",
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            parser=size_text,
            metavar=SIZE_METAVAR,
            help="Size of the new pairs: 512 (square) or WxH (default: the dataset's most common image size).",
        ),
    ] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Id prefix of new pairs (default SYN_).")] = None,
    masks_dir: MasksDirOpt = None,
    labels: LabelTablesOpt = None,
    split_seed: SplitSeedOpt = 0,
    real_fraction: RealFractionOpt = None,
    real_count: RealCountOpt = None,
    provider: Annotated[
        choice(PROVIDERS), typer.Option("--provider", case_sensitive=False, help="Execution provider (never a silent fallback).")
    ] = "auto",
    device: Annotated[int, typer.Option("--device", help="The GPU to generate on (CUDA device index).")] = 0,
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", help="Several GPUs, one worker each over interleaved batches: 0,1,2,3 or all "
                     "(same bytes as one GPU; resumable with any number)."),
    ] = None,
    trt_workspace_gb: Annotated[
        float | None, typer.Option("--trt-workspace-gb", help="TensorRT build workspace limit in GiB (default: TensorRT's).")
    ] = None,
    scheduler: Annotated[choice(SCHEDULERS), typer.Option("--scheduler", case_sensitive=False, help="Sampler.")] = "dpm++",
    steps: Annotated[int, typer.Option("--denoise-steps", help="Denoising steps (was --steps).")] = 20,
    guidance: Annotated[
        float, typer.Option("--guidance", help="Classifier-free guidance scale; 1.0 turns it off (twice as fast).")
    ] = 7.5,
    control_scale: Annotated[float, typer.Option("--control-scale", help="How strongly the mask steers.")] = 1.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs generated together.")] = 4,
    image_format: Annotated[
        choice(IMAGE_FORMAT_CHOICES) | None,
        typer.Option("--image-format", case_sensitive=False, help="jpg is written at quality 95; default: the input's format."),
    ] = None,
    synthetic_only: Annotated[
        bool, typer.Option("--synthetic-only", help="Write only the new pairs (label files hold only their rows).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an output folder that holds a different plan.")
    ] = False,
    no_train: Annotated[
        bool, typer.Option("--no-train", help="Fail instead of training when no model is given or cached.")
    ] = False,
    train_steps: Annotated[
        int | None, typer.Option("--train-steps", help="Training steps per stage of the default compact model.")
    ] = None,
    model_size: Annotated[
        choice(MODEL_SIZE_CHOICES) | None,
        typer.Option(
            "--model-size", case_sensitive=False, help="The default compact model's size (default: small on CPU, base on GPU)."
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Threads that encode and write files.")] = None,
    link: Annotated[
        choice(LINK_MODES),
        typer.Option(
            "--link",
            case_sensitive=False,
            help="How the originals enter the output: hard (hard links, copied across filesystems; they share "
            "the input's files, so editing one in place edits the input), copy, or reflink (copy-on-write "
            "clones on btrfs/XFS; an error where the filesystem cannot clone).",
        ),
    ] = "hard",
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Accept .bin/.pt pickle weights in a --model folder (runs their code).")
    ] = False,
    break_lock: Annotated[
        bool,
        typer.Option("--break-lock", help="Clear a stale lock left on a filesystem without file locks or by "
                     "another host (refused while a live run holds it)."),
    ] = False,
    min_fidelity: Annotated[
        float | None,
        typer.Option("--min-fidelity", help="Check each pair with a segmenter trained on the real training pairs "
                     "(cached beside the model); a pair whose Dice against its mask is below this is generated "
                     "again with a new noise seed."),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", help="Attempts per pair under --min-fidelity (default 3).")
    ] = None,
    on_reject: Annotated[
        choice(("drop", "keep")) | None,
        typer.Option("--on-reject", case_sensitive=False, help="A pair still below --min-fidelity after every attempt: drop (default) "
                     "or keep (its best attempt)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (ids, prompts, label counts, mask statistics); no model.")
    ] = False,
    log_file: LogFileOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Add N generated image/mask pairs to a copy of the dataset, in the dataset's own layout.

    Every pair is planned first: its id, labels, prompt, mask seed and noise seed depend only on
    the master seed and its index, so the same command gives the same pairs, in any batch size
    or shard. --dry-run prints that plan without loading a model. Rerunning the same command on
    an interrupted output resumes it; `lesionaug verify OUT` checks the result. --real-fraction or
    --real-count fits the masks, the labels and the default model on a seeded subset of the
    training split: pass the same option to `lesionaug evaluate` for a comparison without hidden real data.

    Example: lesionaug augment ./isic --n 100 --dry-run --json
    """

    def body(reporter):
        options = build_options(dataset, ctx.params)
        return run_or_preview(options, reporter)

    run_command("augment", Out(json_, quiet, verbose, log_file), body, resume=RESUME_SAME)
