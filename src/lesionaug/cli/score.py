"""`lesionaug score`: ISIC Task 1 metrics of a folder of predicted masks against the true masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.cli._app import ConfigOpt, JsonOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.evaluate.scoring import score_folders

METRIC_HEADERS = (
    ("dice", "Dice"),
    ("jaccard", "Jaccard"),
    ("threshold_jaccard", "thr. J"),
    ("sensitivity", "Sens."),
    ("specificity", "Spec."),
    ("accuracy", "Acc."),
)


@app.command("score")
def score(
    truth_dir: Annotated[Path, typer.Argument(help="Folder of true masks (searched 3 levels deep).")],
    pred_dir: Annotated[Path, typer.Argument(help="Folder of predicted masks, named after the same ids.")],
    per_image: Annotated[bool, typer.Option("--per-image", help="Also print one row per image.")] = False,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score predicted lesion masks against true ones: Dice, Jaccard, thresholded Jaccard (ISIC 2018
    Task 1), sensitivity, specificity and accuracy, per image and macro-averaged.

    Files are paired by ISIC id, or by stem with suffixes like _segmentation, _mask, _pred removed.
    0/1 and 0/255 masks are both read correctly.

    Example: lesionaug score ISIC2018_Task1_Validation_GroundTruth predictions/ --json
    """

    def body(reporter):
        report = score_folders(truth_dir, pred_dir, reporter)
        data = report.to_dict()
        return data, lambda console: render(console, data, per_image)

    run_command("score", Out(json_, quiet, verbose), body)


def render(console, data: dict, per_image: bool) -> None:
    from rich.table import Table

    table = Table(title=f"{len(data['per_image'])} images scored (thr. J: Jaccard, 0 below 0.65)", title_justify="left")
    table.add_column("id" if per_image else "", no_wrap=True)
    for _, header in METRIC_HEADERS:
        table.add_column(header, justify="right")
    if per_image:
        for row in data["per_image"]:
            table.add_row(row["id"], *(f"{row[key]:.4f}" for key, _ in METRIC_HEADERS))
        table.add_section()
    table.add_row("macro average", *(f"{data['macro'][key]:.4f}" for key, _ in METRIC_HEADERS), style="bold")
    console.print(table)
    for item in data["unmatched"]:
        console.print(f"unmatched {item['side']}: {item['path']} ({item['reason']})", markup=False)
    for item in data["problems"]:
        console.print(f"not scored: {item['id']}: {item['reason']}", markup=False)
