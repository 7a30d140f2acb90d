"""`lesionaug info` (what a dataset folder holds) and `lesionaug demo-data` (write example data)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.dataset_options import MasksDirOpt, SplitSeedOpt
from lesionaug.cli.option_types import choice, square_side
from lesionaug.cli.renames import out_folder
from lesionaug.dataset.layouts import LAYOUT_TABLE
from lesionaug.dataset.summary import inspect_dataset
from lesionaug.demo.cases import DEMO_LAYOUTS
from lesionaug.demo.layouts import ARCHIVE_METADATA
from lesionaug.demo.styles import DEFAULT_STYLE, DEMO_STYLES
from lesionaug.demo.write import check_demo_options, write_demo_dataset
from lesionaug.errors import UsageError

DATASETS_DOC = "docs/datasets.md"
_EXAMPLES_PER_PROBLEM = 3


def _counts(counts: dict, limit: int = 8) -> str:
    items = list(counts.items())
    text = ", ".join(f"{k} {v}" for k, v in items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "") if items else "-"


def _size(wh: list | None) -> str:
    return f"{wh[0]}x{wh[1]}" if wh else "-"


def render_info(data: dict, console: Console) -> None:
    """The human view of `info`: a summary table, then problems grouped by code."""
    splits = data["splits"]
    sizes = data["image_sizes"]
    labels = data["labels"]
    table = Table(title=f"{data['root']}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("layout", data["layout"])
    table.add_row("samples", f"{data['n_samples']} ({sum(splits['usable'].values())} usable)")
    if data["n_synthetic"]:
        table.add_row("  real / synthetic", f"{data['n_real']} / {data['n_synthetic']} (synthetic pairs are training data)")
    for split, n in splits["counts"].items():
        table.add_row(f"  {split}", f"{n} ({splits['usable'][split]} usable)")
    table.add_row("splits from", splits["source"])
    common = ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common"][:3])
    table.add_row(
        "image sizes", f"{sizes['n_distinct']} distinct, {_size(sizes['min'])} to {_size(sizes['max'])}; {common}"
    )
    table.add_row("labelled", str(labels["labelled"]))
    fractions = ", ".join(f"{k} {v:.0%}" for k, v in labels["fraction"].items() if v is not None)
    table.add_row("labelled fraction", fractions or "-")
    for t in data["label_tables"]:
        table.add_row("label table", f"{t['path']} ({t['format']}): {t['matched']} of {t['rows']} rows match")
    table.add_row("diagnosis", _counts(labels["diagnosis"]))
    table.add_row("attributes", _counts(labels["attributes"]))
    table.add_row("site", _counts(labels["site"]))
    table.add_row("sex", _counts(labels["sex"]))
    age = labels["age"]
    table.add_row("age", f"{age['n']} known, {age['min']}-{age['max']}, mean {age['mean']}" if age["n"] else "-")
    if data["synthetic_labels"]:
        table.add_row("synthetic diagnosis", _counts(data["synthetic_labels"]["diagnosis"]))
    table.add_row("fingerprint", data["fingerprint"])
    if data["exif_oriented"]:
        n_oriented = len(data["exif_oriented"])
        table.add_row("EXIF orientation", f"applied to {n_oriented} file(s): read upright, as viewers show them")
    table.add_row("problems", str(len(data["problems"])) if data["problems"] else "none")
    console.print(table)
    if not data["problems"]:
        return
    grouped: dict[str, list[dict]] = defaultdict(list)
    for problem in data["problems"]:
        grouped[problem["code"]].append(problem)
    problems = Table(title="problems (those samples are skipped downstream)", title_justify="left")
    problems.add_column("code", style="yellow")
    problems.add_column("count", justify="right")
    problems.add_column("examples")
    for code, items in sorted(grouped.items(), key=lambda kv: -len(kv[1])):
        shown = [f"{Path(p['path']).name}: {p['message']}" for p in items[:_EXAMPLES_PER_PROBLEM]]
        more = len(items) - len(shown)
        problems.add_row(code, str(len(items)), "\n".join(shown) + (f"\n... {more} more" if more else ""))
    console.print(problems)


def layout_list() -> dict:
    """The layouts ``info`` reads, in detection order (the first that matches reads the folder)."""
    return {
        "layouts": [{"name": layout.name, "recognised_by": layout.recognised_by} for layout in LAYOUT_TABLE],
        "docs": DATASETS_DOC,
    }


def render_layouts(data: dict, console: Console) -> None:
    table = Table(title="dataset layouts, in detection order (the first match reads the folder)", title_justify="left")
    table.add_column("layout", style="bold")
    table.add_column("recognised by")
    for layout in data["layouts"]:
        table.add_row(layout["name"], layout["recognised_by"])
    console.print(table)
    console.print(f"folder trees, label files and traps: {data['docs']}", markup=False)


@app.command("info")
def info(
    dataset: Annotated[
        Path | None, typer.Argument(help="Dataset folder (any layout in docs/datasets.md; --layouts lists them).")
    ] = None,
    layouts: Annotated[
        bool, typer.Option("--layouts", help="List the dataset layouts read, and how each is recognised.")
    ] = False,
    masks: MasksDirOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 on any problem, not only damaged files.")] = False,
    split_seed: SplitSeedOpt = 0,
    labels: LabelTablesOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show what a dataset folder holds: layout, splits, labels, image sizes, fingerprint, problems.

    Problems are missing or orphan masks, image/mask size mismatches, empty or non-binary masks and
    label rows without images: warnings, and those samples are skipped downstream. Folder symlinks
    that loop or lead outside the dataset are reported and not followed. Damaged files (unreadable,
    truncated, too large) exit 3, and so does any problem with --strict. Images are read upright:
    an EXIF orientation tag is applied, and listed.

    Real images and the synthetic pairs `augment` added are counted apart; --labels joins label
    tables by image id, and a warning says when most training images have no diagnosis.

    Every supported layout, as a folder tree with the label files read: docs/datasets.md, or
    `lesionaug info --layouts`.

    Example: lesionaug info ./ISIC2018 --labels metadata.csv --json
    """

    def body(reporter):
        if layouts:
            data = layout_list()
            return data, lambda console: render_layouts(data, console)
        if dataset is None:
            raise UsageError("DATASET is required", fix="pass a dataset folder, or --layouts to list the layouts")
        data = inspect_dataset(
            dataset, masks=masks, split_seed=split_seed, strict=strict, reporter=reporter, labels=tuple(labels or ())
        )
        for warning in data["warnings"]:
            reporter.warn(warning)
        if data["problems"]:
            codes = Counter(p["code"] for p in data["problems"])
            reporter.warn(f"{len(data['problems'])} problem(s): " + ", ".join(f"{c} {n}" for c, n in codes.items()))
        return data, lambda console: render_info(data, console)

    run_command("info", Out(json_, quiet, verbose), body)


@app.command("demo-data")
def demo_data(
    out_option: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to create (must not exist, be empty, or be earlier demo data)."),
    ] = None,
    out_argument: Annotated[
        Path | None, typer.Argument(metavar="[OUT]", hidden=True, help="Deprecated spelling of --out.")
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of image/mask pairs.")] = 40,
    layout: Annotated[
        choice(DEMO_LAYOUTS), typer.Option("--layout", help="On-disk layout of a real dataset.", case_sensitive=False)
    ] = "isic2018",
    size: Annotated[
        int, typer.Option("--size", parser=square_side, metavar="N", help="Image width and height in pixels (32 to 2048).")
    ] = 128,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed writes the same bytes.")] = 0,
    style: Annotated[
        choice(DEMO_STYLES),
        typer.Option(
            "--style",
            help="Look of the images: light (fair skin under a dermatoscope's round window) or deep (darker "
            "skin and lesions, side light, gel bubbles, ruler or ink marks, curly hairs).",
            case_sensitive=False,
        ),
    ] = DEFAULT_STYLE,
    archive_metadata: Annotated[
        bool | None,
        typer.Option(
            "--archive-metadata/--no-archive-metadata",
            help="Also write isic_archive_metadata.csv, an ISIC Archive metadata export of the images to join "
            "with --labels (default: on for isic2018, whose Task 1 images no file of the layout labels).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write example data: procedural dermoscopy-like images and masks in a real dataset's layout.

    Skin, dermatoscope vignette, hairs, and lesions whose colour, texture and size follow their
    diagnosis, with attribute textures where the labels say; label files and train/val/test splits
    as in the real layout. --style deep gives a second look (Fitzpatrick IV-VI skin, other light,
    lesion colours and artefacts), to check a recipe is not tuned to one look. The same seed (and
    style) writes the same bytes. OUT must not exist, be empty, or hold earlier demo data (which is
    replaced).

    As in the real release, isic2018's Task 3 table names other images (ids from ISIC_0024306) than
    Task 1's (from ISIC_0000000); the Task 1 diagnoses are in isic_archive_metadata.csv.

    Example: lesionaug demo-data --out ./example --n 120 --layout isic2018 --size 128 --seed 0
    """

    def body(reporter):
        out = out_folder("demo-data", out_option, out_argument)
        check_demo_options(out, n, layout.lower(), size, archive_metadata, style.lower())  # refuse before progress
        with reporter.task("writing demo data", total=n) as task:
            path = write_demo_dataset(
                out,
                n=n,
                layout=layout.lower(),
                size=size,
                seed=seed,
                progress=lambda: task.advance(),
                archive_metadata=archive_metadata,
                style=style.lower(),
            )
        metadata = path / ARCHIVE_METADATA
        data = {
            "out": str(path),
            "layout": layout.lower(),
            "n": n,
            "size": size,
            "seed": seed,
            "style": style.lower(),
            "archive_metadata": str(metadata) if metadata.is_file() else None,
        }

        def render(console: Console) -> None:
            console.print(f"wrote {n} {layout.lower()} pairs ({size}x{size}, {style.lower()} style) to {path}")
            if data["archive_metadata"]:
                console.print(f"their labels, as an ISIC Archive export: --labels {metadata}")

        return data, render

    run_command("demo-data", Out(json_, quiet, verbose), body)
