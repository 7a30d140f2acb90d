"""`lesionaug evaluate`: what the synthetic pairs are worth to a segmenter, scored on real test images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, LogFileOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.dataset_options import MasksDirOpt, RealCountOpt, SplitSeedOpt
from lesionaug.cli.option_types import choice, square_side
from lesionaug.errors import UsageError
from lesionaug.evaluate.run import EvaluateConfig, run_evaluation
from lesionaug.evaluate.seg_augment import SEG_AUGMENTATIONS
from lesionaug.evaluate.segmenter import ARCHITECTURES, DEVICES, SegmenterConfig


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


# The segmenter options evaluate and compare share.
SegArchOpt = Annotated[
    choice(ARCHITECTURES), typer.Option("--seg-arch", case_sensitive=False, help="Segmenter (MONAI; was --arch).")
]
SegEpochsOpt = Annotated[
    int,
    typer.Option(
        "--seg-epochs",
        help="Epochs of the largest training set compared; every segmenter gets that many optimizer steps "
        "(was --epochs).",
    ),
]
SegStepsOpt = Annotated[
    int | None,
    typer.Option("--seg-steps", min=1, help="Optimizer steps per segmenter (replaces --seg-epochs; was --steps)."),
]
SegSizeOpt = Annotated[
    int,
    typer.Option("--seg-size", parser=square_side, metavar="N", help="Segmenter input side (was --image-size)."),
]
SegBatchSizeOpt = Annotated[int, typer.Option("--seg-batch-size", help="Segmenter batch size (was --batch-size).")]
SegChannelsOpt = Annotated[
    str,
    typer.Option("--seg-channels", help="Segmenter feature widths per level, comma-separated (was --channels)."),
]
SegDeviceOpt = Annotated[
    choice(DEVICES), typer.Option("--seg-device", case_sensitive=False, help="Segmenter device (was --device).")
]
SegAugmentOpt = Annotated[
    choice(SEG_AUGMENTATIONS),
    typer.Option(
        "--seg-augment",
        case_sensitive=False,
        help=f"Segmenter training augmentation ({', '.join(SEG_AUGMENTATIONS)}; MONAI): classic adds rotations, "
        "affine, elastic and intensity changes to the flips. The same for real and synthetic pairs.",
    ),
]

SyntheticShareOpt = Annotated[
    float | None,
    typer.Option(
        "--synthetic-share",
        help="Fraction of every batch drawn from the synthetic pairs (e.g. 0.5: half real, half synthetic, so "
        "a few real pairs are not drowned by many synthetic ones); unset: both drawn in proportion to their "
        "numbers. Real-only segmenters are unaffected.",
    ),
]

RealFinishOpt = Annotated[
    float,
    typer.Option(
        "--real-finish",
        help="With --synthetic-share: the last fraction of an augmented segmenter's steps draws real pairs only "
        "(pre-training on the mix, fine-tuning on the real pairs); 0: mixed to the end.",
    ),
]


@app.command("evaluate")
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="The real dataset folder (its test split is scored).")],
    augmented: Annotated[Path, typer.Option("--augmented", help="Folder written by `lesionaug augment`.")],
    synthetic_counts: Annotated[
        str, typer.Option("--synthetic-counts", help="Synthetic pairs to add, comma-separated (0 is always run).")
    ] = "0,1000,3000,5000",
    repeats: Annotated[int, typer.Option("--repeats", help="Seeds per count (the same seeds for every count).")] = 3,
    arch: SegArchOpt = "unet",
    epochs: SegEpochsOpt = 30,
    steps: SegStepsOpt = None,
    image_size: SegSizeOpt = 128,
    batch_size: SegBatchSizeOpt = 8,
    channels: SegChannelsOpt = "16,32,64,128,256",
    device: SegDeviceOpt = "auto",
    seg_augment: SegAugmentOpt = "classic",
    real_fraction: Annotated[
        float | None,
        typer.Option(
            "--real-fraction",
            help="Fraction of the real training split the segmenters get (low-data regime); chosen by the split "
            "seed, as on train and augment.",
        ),
    ] = None,
    real_count: RealCountOpt = None,
    synthetic_share: SyntheticShareOpt = None,
    real_finish: RealFinishOpt = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Master seed (segmenter seeds, bootstrap).")] = 0,
    split_seed: SplitSeedOpt = 0,
    masks: MasksDirOpt = None,
    labels: LabelTablesOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.json, report.md, plots).")] = Path(
        "lesionaug-report"
    ),
    allow_unknown_provenance: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-provenance",
            help="Accept synthetic pairs whose generator's training images are unknown.",
        ),
    ] = False,
    allow_generator_extra_data: Annotated[
        bool,
        typer.Option(
            "--allow-generator-extra-data",
            help="Run even when the generator saw real training pairs the segmenters do not get (the report "
            "says how many, at its top).",
        ),
    ] = False,
    log_file: LogFileOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train segmenters on the real training split plus 0 and each count of synthetic pairs, several
    seeds each, and score them on the real test split (never on synthetic images): Dice mean and std
    per count, and the paired gain over real-only per test image, with a bootstrap 95% interval over
    test images and seeds, the t interval over seeds and a Wilcoxon p-value. Every segmenter takes
    the same number of optimizer steps and the same augmentation (--seg-augment), so more data never
    means more training. Refuses synthetic pairs from a generator trained on any test image, or on
    real pairs the segmenters do not get (pass the same --real-fraction or --real-count to augment).
    Writes report.json, report.md and plots to --out.

    Example: lesionaug evaluate ./example --augmented ./example-augmented --synthetic-counts 0,200 --real-count 16
    """

    def body(reporter):
        segmenter = SegmenterConfig(
            arch=arch,
            image_size=image_size,
            epochs=epochs,
            steps=steps,
            batch_size=batch_size,
            channels=parse_int_list(channels, "--seg-channels"),
            device=device,
            augment=seg_augment,
            synthetic_share=synthetic_share,
            real_finish=real_finish,
            seed=seed,
        )
        config = EvaluateConfig(
            dataset=dataset,
            augmented=augmented,
            synthetic_counts=parse_int_list(synthetic_counts, "--synthetic-counts"),
            repeats=repeats,
            real_fraction=1.0 if real_fraction is None else real_fraction,
            real_count=real_count,
            seed=seed,
            split_seed=split_seed,
            masks=masks,
            labels=tuple(labels or ()),
            out=out,
            allow_unknown_provenance=allow_unknown_provenance,
            allow_generator_extra_data=allow_generator_extra_data,
            segmenter=segmenter,
        )
        data = run_evaluation(config, reporter)
        return data, lambda console: render(console, data)

    run_command("evaluate", Out(json_, quiet, verbose, log_file), body)


def _interval(ci) -> str:
    return "-" if ci is None else f"{ci[0]:+.3f}..{ci[1]:+.3f}"


def render(console, data: dict) -> None:
    from rich import box
    from rich.table import Table

    setup = data["setup"]
    extra = setup.get("generator_extra_real_pairs")
    if extra:
        console.print(f"WARNING: the generator saw {extra} real training pairs the segmenters did not get", style="bold")
    table = Table(
        title=f"Dice on {setup['real_test']} real test images, {setup['real_train']} real training pairs, "
        f"{setup['seg_augment']} augmentation; gain per image vs the same seed's real-only segmenter; "
        "95% intervals over images and seeds (bootstrap) and over seeds (t); Wilcoxon p",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for header in ("synthetic", "seeds", "Dice±std", "gain", "CI img+seeds", "CI seeds", "p"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in data["results"]:
        table.add_row(
            str(r["synthetic_count"]),
            str(r["repeats"]),
            f"{r['dice_mean']:.3f}±{r['dice_std']:.3f}",
            f"{r['delta_vs_real']:+.3f}",
            _interval(r["delta_ci95"]),
            _interval(r["delta_t_ci95"]),
            "-" if r["p_wilcoxon"] is None else f"{r['p_wilcoxon']:.2g}",
        )
    console.print(table)
    for note in data["notes"]:
        console.print(note, markup=False)
    console.print(f"report: {data['report']}", markup=False)
