"""`lesionaug masks`: sample lesion masks from the dataset's shape model and report their realism."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lesionaug.augment.options import parse_size
from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.dataset_options import MasksDirOpt, SplitSeedOpt
from lesionaug.cli.option_types import SIZE_METAVAR, choice, size_text
from lesionaug.masks.sampling import MASK_SOURCES
from lesionaug.plan.mask_folder import MasksConfig, export_masks

MaskSourceOpt = Annotated[
    choice(MASK_SOURCES),
    typer.Option(
        "--mask-source",
        case_sensitive=False,
        help="model (the fitted shape model), real (training masks with affine and elastic jitter) or mixed.",
    ),
]
SizeOpt = Annotated[
    str, typer.Option("--size", parser=size_text, metavar=SIZE_METAVAR, help="Mask size: 512 (square) or WxH, e.g. 640x480.")
]


def render_masks(data: dict, console: Console) -> None:
    """The human view: what was written, then the realism table (shape model vs ellipses)."""
    realism = data["realism"]
    model, ellipse = realism["shape_model"], realism["ellipse_baseline"]
    console.print(
        f"wrote {data['n']} masks ({data['size'][0]}x{data['size'][1]}, source {data['mask_source']}) "
        f"and {Path(data['model_file']).name} to {data['out']}"
    )
    table = Table(
        title=f"realism vs {realism['n_real']} held-out real masks ({realism['held_out']})",
        title_justify="left",
        caption="KS: two-sample Kolmogorov-Smirnov statistic (0 = same distribution). "
        "C2ST: cross-validated accuracy of a classifier telling sampled from real (0.5 = indistinguishable).",
        caption_justify="left",
    )
    table.add_column("feature")
    table.add_column("real mean", justify="right")
    table.add_column(f"{data['mask_source']} KS", justify="right")
    table.add_column("ellipses KS", justify="right")
    for name in data["features"]:
        table.add_row(
            name,
            f"{realism['real_means'][name]:.3f}",
            f"{model['ks'][name]:.3f}",
            f"{ellipse['ks'][name]:.3f}",
        )
    table.add_row(
        "C2ST accuracy",
        "0.5 ideal",
        f"{model['c2st_accuracy']:.3f} ± {model['c2st_std']:.3f}",
        f"{ellipse['c2st_accuracy']:.3f} ± {ellipse['c2st_std']:.3f}",
        style="bold",
    )
    console.print(table)


@app.command("masks")
def masks(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (any layout in docs/datasets.md; lesionaug info --layouts).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the masks (PNG 0/255) and shape_model.npz.")],
    n: Annotated[int, typer.Option("--n", help="How many masks to sample.")] = 100,
    size: SizeOpt = "512",
    seed: Annotated[int, typer.Option("--seed", help="Master seed; mask k depends only on (seed, k).")] = 0,
    mask_source: MaskSourceOpt = "model",
    masks_dir: MasksDirOpt = None,
    split_seed: SplitSeedOpt = 0,
    labels: LabelTablesOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Sample new lesion masks from a shape model fitted on the training split; report realism.

    The shape model learns lesion outlines, sizes, positions and border clipping from the training
    masks (one model per diagnosis with enough lesions). The report compares the sampled masks and
    a baseline of random ellipses with the held-out real masks: per-feature KS statistics and a
    classifier two-sample test.

    Example: lesionaug masks ./isic --n 500 --out masks/ --json
    """

    def body(reporter):
        config = MasksConfig(
            dataset=dataset,
            out=out,
            n=n,
            size=parse_size(size),
            seed=seed,
            mask_source=mask_source,
            masks=masks_dir,
            split_seed=split_seed,
            labels=tuple(labels or ()),
        )
        data = export_masks(config, reporter)
        return data, lambda console: render_masks(data, console)

    run_command("masks", Out(json_, quiet, verbose), body)
