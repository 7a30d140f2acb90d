"""`lesionaug compare`: several generators' augmented folders of one dataset, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, LogFileOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.augment.generation_options import PROVIDERS
from lesionaug.cli.evaluate import (
    RealFinishOpt,
    SegArchOpt,
    SegAugmentOpt,
    SegBatchSizeOpt,
    SegChannelsOpt,
    SegDeviceOpt,
    SegEpochsOpt,
    SegSizeOpt,
    SegStepsOpt,
    SyntheticShareOpt,
    _interval,
    parse_int_list,
)
from lesionaug.cli.dataset_options import MasksDirOpt, RealCountOpt, SplitSeedOpt
from lesionaug.cli.option_types import choice
from lesionaug.errors import UsageError
from lesionaug.evaluate.compare import CompareConfig, run_comparison
from lesionaug.evaluate.quality import SPLITS, measure_generators
from lesionaug.evaluate.segmenter import SegmenterConfig


def parse_named_folders(values: list[str]) -> tuple[tuple[str, Path], ...]:
    """['gan=./a', 'cn=./b'] -> (('gan', Path('./a')), ('cn', Path('./b'))); a usage error otherwise."""
    out = []
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise UsageError(f"--augmented takes NAME=DIR, got {value!r}", fix="e.g. --augmented pix2pixhd=./gan-aug")
        out.append((name.strip(), Path(folder.strip())))
    return tuple(out)


@app.command("compare")
def compare(
    dataset: Annotated[Path, typer.Argument(help="The real dataset folder every augmented folder was made from.")],
    augmented: Annotated[
        list[str], typer.Option("--augmented", help="NAME=DIR of one generator's `lesionaug augment` output; repeat it.")
    ],
    synthetic_counts: Annotated[
        str, typer.Option("--synthetic-counts", help="Synthetic pairs to add, comma-separated (0 is always run).")
    ] = "0,1000,3000,5000",
    repeats: Annotated[int, typer.Option("--repeats", help="Seeds per count (the same seeds for every generator).")] = 3,
    arch: SegArchOpt = "unet",
    epochs: SegEpochsOpt = 30,
    steps: SegStepsOpt = None,
    image_size: SegSizeOpt = 128,
    batch_size: SegBatchSizeOpt = 8,
    channels: SegChannelsOpt = "16,32,64,128,256",
    device: SegDeviceOpt = "auto",
    seg_augment: SegAugmentOpt = "classic",
    synthetic_share: SyntheticShareOpt = None,
    real_finish: RealFinishOpt = 0.0,
    real_fraction: Annotated[
        float | None, typer.Option("--real-fraction", help="Fraction of the real training split the segmenters get.")
    ] = None,
    real_count: RealCountOpt = None,
    quality: Annotated[
        bool, typer.Option("--quality/--no-quality", help="Measure each generator's SSIM and mask fidelity.")
    ] = True,
    quality_split: Annotated[
        choice(SPLITS), typer.Option("--generated-split", case_sensitive=False, help="Whose masks the quality "
                                     "measures generate images for.")
    ] = "test",
    quality_limit: Annotated[
        int | None, typer.Option("--generated-limit", min=1, help="At most N samples of that split for the quality measures.")
    ] = None,
    provider: Annotated[
        choice(PROVIDERS), typer.Option("--provider", case_sensitive=False, help="Engine provider for quality.")
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Master seed (segmenter seeds, bootstrap, noise).")] = 0,
    split_seed: SplitSeedOpt = 0,
    masks: MasksDirOpt = None,
    labels: LabelTablesOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.json, report.md, plots).")] = Path(
        "lesionaug-compare"
    ),
    allow_unknown_provenance: Annotated[
        bool, typer.Option("--allow-unknown-provenance", help="Accept pairs whose generator's training images are unknown.")
    ] = False,
    allow_generator_extra_data: Annotated[
        bool, typer.Option("--allow-generator-extra-data", help="Run even when a generator saw real pairs the "
                           "segmenters do not get.")
    ] = False,
    log_file: LogFileOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare generators the paper's way: for each --augmented NAME=DIR and each synthetic count,
    segmenter Dice and Jaccard with the paired gain over real-only, and the paired difference between
    generators (the same seeds, real pairs and steps; evaluate's intervals and checks), plus each
    generator's SSIM and mask fidelity. Writes one report (report.json, report.md, PNG plots) to --out.

    Example: lesionaug compare ./example --augmented controlnet=./cn-aug --augmented pix2pixhd=./gan-aug
    --synthetic-counts 0,100 --repeats 2
    """

    def body(reporter):
        segmenter = SegmenterConfig(
            arch=arch, image_size=image_size, epochs=epochs, steps=steps, batch_size=batch_size,
            channels=parse_int_list(channels, "--seg-channels"), device=device, augment=seg_augment,
            synthetic_share=synthetic_share, real_finish=real_finish, seed=seed,
        )
        config = CompareConfig(
            dataset=dataset, augmented=parse_named_folders(augmented),
            synthetic_counts=parse_int_list(synthetic_counts, "--synthetic-counts"), repeats=repeats,
            real_fraction=1.0 if real_fraction is None else real_fraction, real_count=real_count, seed=seed,
            split_seed=split_seed, masks=masks, labels=tuple(labels or ()), out=out,
            allow_unknown_provenance=allow_unknown_provenance, allow_generator_extra_data=allow_generator_extra_data,
            segmenter=segmenter, quality=quality, quality_split=quality_split, quality_limit=quality_limit,
            provider=provider,
        )
        data = run_comparison(config, reporter, measure_generators if quality else None)
        return data, lambda console: render(console, data)

    run_command("compare", Out(json_, quiet, verbose, log_file), body)


def render(console, data: dict) -> None:
    from rich import box
    from rich.table import Table

    setup = data["setup"]
    table = Table(title=f"Dice on {setup['real_test']} real test images, {setup['real_train']} real training pairs, "
                  f"{setup['steps_per_segmenter']} steps per segmenter; gain vs the same seed's real-only segmenter",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("generator", "synthetic", "Dice±std", "Jaccard", "gain", "CI img+seeds", "SSIM", "fidelity"):
        table.add_column(header, justify="left" if header == "generator" else "right", no_wrap=True)
    for name, generator in data["generators"].items():
        q = generator.get("quality") or {}
        ok = q.get("status") == "ok"
        for r in generator["results"]:
            first = r["synthetic_count"] == 0
            table.add_row(name, str(r["synthetic_count"]), f"{r['dice_mean']:.3f}±{r['dice_std']:.3f}",
                          f"{r['jaccard_mean']:.3f}", f"{r['delta_vs_real']:+.3f}", _interval(r["delta_ci95"]),
                          f"{q['ssim']['mean']:.3f}" if ok and first else "",
                          f"{q['mask_fidelity']['mean']:.3f}" if ok and first and q["mask_fidelity"]["n"] else "")
    console.print(table)
    for p in data["pairwise"]:
        console.print(f"{p['a']} - {p['b']} at {p['synthetic_count']}: {p['delta']:+.3f} Dice "
                      f"(95% CI {_interval(p['delta_ci95'])})", markup=False)
    console.print(f"report: {data['report']}", markup=False)
