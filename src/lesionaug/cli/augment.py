"""`lesionaug augment`: plan new image/mask pairs and generate them (``--dry-run`` plans only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lesionaug.cli._app import JsonOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.masks import MasksDirOpt, MaskSourceOpt, SizeOpt, SplitSeedOpt

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
    jobs = Table(title=f"first {min(PREVIEW_ROWS, len(data['jobs']))} jobs", title_justify="left")
    for column in ("id", "prompt", "mask", "mask seed", "noise seed"):
        jobs.add_column(column)
    for job in data["jobs"][:PREVIEW_ROWS]:
        jobs.add_row(job["id"], job["prompt"], job["mask_source"], str(job["mask_seed"]), str(job["noise_seed"]))
    console.print(jobs)


def render_run(data: dict, console: Console) -> None:
    """The human view of a generation run: its top-level facts, one per line."""
    for key, value in data.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            console.print(f"{key}: {value}")


@app.command("augment")
def augment(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (any layout in DATASETS.md).")],
    n: Annotated[int, typer.Option("--n", help="How many new image/mask pairs.")],
    seed: Annotated[int, typer.Option("--seed", help="Master seed; pair k depends only on (seed, k).")] = 0,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Only the jobs k with k mod N == i, written as i/N.")
    ] = None,
    prompt_template: Annotated[
        str | None,
        typer.Option(
            "--prompt-template",
            help="Prompt with {diagnosis} {attributes} {site} {age} {sex}; "
            "default: 'a dermoscopic image of {diagnosis} {attributes} {site}'.",
        ),
    ] = None,
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            help="match (as in the training split), balanced (uniform over diagnoses) or weights like mel=0.5,nv=0.5.",
        ),
    ] = "match",
    diagnosis: Annotated[
        str | None, typer.Option("--diagnosis", help="Diagnosis weights, e.g. mel=0.5,nv=0.3,bcc=0.2.")
    ] = None,
    mask_source: MaskSourceOpt = "model",
    size: SizeOpt = "512",
    prefix: Annotated[str | None, typer.Option("--prefix", help="Id prefix of new pairs (default SYN_).")] = None,
    masks_dir: MasksDirOpt = None,
    split_seed: SplitSeedOpt = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (ids, prompts, label counts, mask statistics); no model.")
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Add N generated image/mask pairs to a copy of the dataset.

    Every pair is planned first: its id, labels, prompt, mask seed and noise seed depend only on
    the master seed and its index, so the same command gives the same pairs, in any batch size
    or shard. --dry-run prints that plan without loading a model.

    Example: lesionaug augment ./isic --n 100 --dry-run --json
    """

    def body(reporter):
        from lesionaug.augment_config import augment_options

        options = augment_options(
            dataset,
            n,
            seed=seed,
            shard=shard,
            template=prompt_template,
            labels=labels,
            diagnosis=diagnosis,
            mask_source=mask_source,
            size=size,
            prefix=prefix,
            masks=masks_dir,
            split_seed=split_seed,
            dry_run=dry_run,
        )
        if options.dry_run:
            from lesionaug.planning import prepare_plan, preview_plan

            data = preview_plan(prepare_plan(options, reporter), reporter)
            return data, lambda console: render_plan(data, console)
        from lesionaug.augment import run_augment

        data = run_augment(options, reporter)
        return data, lambda console: render_run(data, console)

    run_command("augment", Out(json_, quiet, verbose), body)
