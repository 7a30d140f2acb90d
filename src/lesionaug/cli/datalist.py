"""`lesionaug datalist`: a folder as a MONAI datalist, an nnU-Net v2 raw dataset, an imagefolder or a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, LogFileOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.dataset_options import MasksDirOpt, SplitSeedOpt
from lesionaug.cli.option_types import choice
from lesionaug.datalist.run import write_datalist
from lesionaug.datalist.selection import DatalistOptions
from lesionaug.formats import DATALIST_FORMATS


def render_datalist(data: dict, console: Console) -> None:
    counts = data["counts"]
    console.print(
        f"wrote {data['format']} to {data['path']}: {counts['training']} training "
        f"({counts['real_training']} real of {counts['real_training_available']}, {counts['synthetic']} synthetic "
        f"of {counts['synthetic_available']}), {counts['validation']} validation, {counts['test']} test"
    )


@app.command("datalist")
def datalist(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="An augmented folder (or any dataset folder).")],
    format: Annotated[
        choice(DATALIST_FORMATS), typer.Option("--format", help="The stack to write for.", case_sensitive=False)
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder to write (default: <FOLDER>-<format> beside FOLDER).")
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", help="The first N synthetic pairs in job order (default: all; 0: real only)."),
    ] = None,
    real_fraction: Annotated[
        float,
        typer.Option("--real-fraction", help="The subset of the real training split `evaluate` uses with this --seed."),
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the real subset (as evaluate's --seed).")] = 0,
    masks_dir: MasksDirOpt = None,
    split_seed: SplitSeedOpt = 0,
    labels: LabelTablesOpt = None,
    log_file: LogFileOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a folder's pairs in a format another segmentation stack loads directly.

    monai: datalist.json (training / validation / test lists of image, label, synthetic) for
    monai.data.load_decathlon_datalist. nnunet: an nnU-Net v2 raw dataset (imagesTr/, labelsTr/,
    imagesTs/, labelsTs/, dataset.json; RGB PNG images, 0/1 PNG labels; splits_final.json).
    hf: a Hugging Face imagefolder with metadata.jsonl (image, mask, labels, synthetic). csv: one
    row per sample. Training is the real training split (or the --real-fraction subset evaluate
    trains on) plus the first --synthetic pairs; validation and test are real only, so the same
    comparison runs in your own segmenter and `lesionaug score` scores it.

    Example: lesionaug datalist ./isic-augmented --format nnunet --synthetic 1000 --out $nnUNet_raw/Dataset501_ISIC
    """

    def body(reporter):
        options = DatalistOptions(
            folder=folder,
            format=format.lower(),
            out=out,
            synthetic=synthetic,
            real_fraction=real_fraction,
            seed=seed,
            labels=tuple(labels or ()),
            masks=masks_dir,
            split_seed=split_seed,
        )
        data = write_datalist(options, reporter)
        return data, lambda console: render_datalist(data, console)

    run_command("datalist", Out(json_, quiet, verbose, log_file), body)
