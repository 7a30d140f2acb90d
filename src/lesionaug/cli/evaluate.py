"""`lesionaug evaluate`: what the synthetic pairs are worth to a segmenter, scored on real test images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.cli._app import JsonOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.errors import UsageError
from lesionaug.evaluate.run import EvaluateConfig, run_evaluation
from lesionaug.evaluate.segmenter import SegmenterConfig


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """'0,1000, 3000' -> (0, 1000, 3000); anything else is a usage error naming the option."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise UsageError(
            f"{option} takes comma-separated whole numbers, got {text!r}", fix=f"e.g. {option} 0,1000,3000"
        ) from None
    if not values:
        raise UsageError(f"{option} is empty", fix=f"e.g. {option} 0,1000,3000")
    return values


@app.command("evaluate")
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="The real dataset folder (its test split is scored).")],
    augmented: Annotated[Path, typer.Option("--augmented", help="Folder written by `lesionaug augment`.")],
    synthetic_counts: Annotated[
        str, typer.Option("--synthetic-counts", help="Synthetic pairs to add, comma-separated (0 is always run).")
    ] = "0,1000,3000,5000",
    repeats: Annotated[int, typer.Option("--repeats", help="Seeds per count (the same seeds for every count).")] = 3,
    arch: Annotated[str, typer.Option("--arch", help="unet, basicunet or attentionunet (MONAI).")] = "unet",
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs",
            help="Epochs of the largest training set compared; every segmenter gets that many optimizer steps.",
        ),
    ] = 30,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Optimizer steps per segmenter (replaces --epochs)."),
    ] = None,
    image_size: Annotated[int, typer.Option("--image-size", help="Square size images are resized to.")] = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.")] = 8,
    channels: Annotated[
        str, typer.Option("--channels", help="Feature widths per resolution level, comma-separated.")
    ] = "16,32,64,128,256",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    real_fraction: Annotated[
        float, typer.Option("--real-fraction", help="Fraction of the real training split to use (low-data regime).")
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Master seed (segmenter seeds, real subsample).")] = 0,
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the split when folders give none.")] = 0,
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of masks, for layouts without them.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder (report.json, report.md, plots).")] = Path(
        "lesionaug-report"
    ),
    allow_unknown_provenance: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-provenance",
            help="Accept synthetic pairs whose generator's training images are unknown.",
        ),
    ] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train segmenters on the real training split plus 0 and each count of synthetic pairs, several
    seeds each, and score them on the real test split (never on synthetic images): Dice mean and std
    per count, and the paired gain over real-only with a 95% t interval. Every segmenter takes the
    same number of optimizer steps, so more data never means more training. Refuses synthetic pairs from a
    generator trained on any test image. Writes report.json, report.md and plots to --out.

    Example: lesionaug evaluate ./example --augmented ./example-augmented --synthetic-counts 0,200 --real-fraction 0.2
    """

    def body(reporter):
        segmenter = SegmenterConfig(
            arch=arch,
            image_size=image_size,
            epochs=epochs,
            steps=steps,
            batch_size=batch_size,
            channels=parse_int_list(channels, "--channels"),
            device=device,
            seed=seed,
        )
        config = EvaluateConfig(
            dataset=dataset,
            augmented=augmented,
            synthetic_counts=parse_int_list(synthetic_counts, "--synthetic-counts"),
            repeats=repeats,
            real_fraction=real_fraction,
            seed=seed,
            split_seed=split_seed,
            masks=masks,
            out=out,
            allow_unknown_provenance=allow_unknown_provenance,
            segmenter=segmenter,
        )
        data = run_evaluation(config, reporter)
        return data, lambda console: render(console, data)

    run_command("evaluate", Out(json_, quiet, verbose), body)


def render(console, data: dict) -> None:
    from rich.table import Table

    setup = data["setup"]
    table = Table(
        title=f"Dice on {setup['real_test']} real test images; {setup['real_train']} real training pairs; "
        "gain: Dice minus the same seed's real-only Dice",
        title_justify="left",
    )
    for header in ("synthetic", "seeds", "Dice", "std", "Jaccard", "gain", "95% CI"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in data["results"]:
        ci = r["delta_ci95"]
        table.add_row(
            str(r["synthetic_count"]),
            str(r["repeats"]),
            f"{r['dice_mean']:.4f}",
            f"{r['dice_std']:.4f}",
            f"{r['jaccard_mean']:.4f}",
            f"{r['delta_vs_real']:+.4f}",
            "-" if ci is None else f"{ci[0]:+.3f}..{ci[1]:+.3f}",
        )
    console.print(table)
    for note in data["notes"]:
        console.print(note, markup=False)
    console.print(f"report: {data['report']}", markup=False)
