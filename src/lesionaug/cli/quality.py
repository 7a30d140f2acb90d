"""`lesionaug quality`: SSIM against real images for the same masks, mask fidelity, optional FID/KID."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lesionaug.augment.generation_options import PROVIDERS
from lesionaug.cli._app import ConfigOpt, JsonOpt, LabelTablesOpt, LogFileOpt, Out, QuietOpt, VerboseOpt, app, run_command
from lesionaug.cli.evaluate import parse_int_list
from lesionaug.cli.dataset_options import MasksDirOpt, SplitSeedOpt
from lesionaug.cli.option_types import choice, square_side
from lesionaug.engine.sampler import SCHEDULERS
from lesionaug.evaluate.quality import SPLITS, QualityConfig, run_quality
from lesionaug.evaluate.segmenter import ARCHITECTURES, DEVICES, SegmenterConfig
from lesionaug.evaluate.image_realism import RealismConfig


@app.command("quality")
def quality(
    dataset: Annotated[Path, typer.Argument(help="The real dataset folder.")],
    model: Annotated[
        Path, typer.Option("--model", help="Model folder (exported once into the cache) or engine folder.")
    ],
    split: Annotated[
        choice(SPLITS), typer.Option("--split", case_sensitive=False, help="Whose masks to generate for.")
    ] = "test",
    provider: Annotated[
        choice(PROVIDERS), typer.Option("--provider", case_sensitive=False, help="Execution provider.")
    ] = "auto",
    engine_device: Annotated[
        int, typer.Option("--engine-device", help="The GPU the generator runs on (CUDA device index).")
    ] = 0,
    steps: Annotated[int, typer.Option("--denoise-steps", help="Denoising steps (was --steps).")] = 20,
    scheduler: Annotated[choice(SCHEDULERS), typer.Option("--scheduler", case_sensitive=False, help="Sampler.")] = "dpm++",
    guidance: Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale (1 = off).")] = 7.5,
    size: Annotated[
        int | None,
        typer.Option("--size", parser=square_side, metavar="N", help="Generation side in px (default: the model's resolution)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images generated per batch.")] = 4,
    limit: Annotated[int | None, typer.Option("--limit", help="Use at most N samples of the split.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Master seed of the noise seeds.")] = 0,
    split_seed: SplitSeedOpt = 0,
    masks: MasksDirOpt = None,
    labels: LabelTablesOpt = None,
    fid_weights: Annotated[
        Path | None,
        typer.Option(
            "--fid-weights", help="Feature extractor for FID/KID (TorchScript, .pt2 or ONNX, e.g. Inception)."
        ),
    ] = None,
    fidelity: Annotated[
        bool,
        typer.Option("--fidelity/--no-fidelity", help="Measure mask fidelity with a segmenter trained on real data."),
    ] = True,
    realism: Annotated[
        bool,
        typer.Option(
            "--realism/--no-realism",
            help="Measure image realism: a CNN trained from scratch to tell real from generated images, Lab colours.",
        ),
    ] = True,
    seg_arch: Annotated[
        choice(ARCHITECTURES), typer.Option("--seg-arch", case_sensitive=False, help="Fidelity segmenter (MONAI).")
    ] = "unet",
    seg_epochs: Annotated[int, typer.Option("--seg-epochs", help="Fidelity segmenter training epochs.")] = 30,
    seg_image_size: Annotated[
        int,
        typer.Option(
            "--seg-size", parser=square_side, metavar="N", help="Fidelity segmenter input side (was --seg-image-size)."
        ),
    ] = 128,
    seg_channels: Annotated[
        str, typer.Option("--seg-channels", help="Fidelity segmenter widths, comma-separated.")
    ] = "16,32,64,128,256",
    device: Annotated[
        choice(DEVICES), typer.Option("--seg-device", case_sensitive=False, help="Fidelity segmenter device (was --device).")
    ] = "auto",
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.json, report.md, plots).")] = Path(
        "lesionaug-report"
    ),
    log_file: LogFileOpt = None,
    config: ConfigOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Measure a generator: for each real mask of the split, generate an image with that mask and the
    sample's own labels, and report SSIM against the real image (the paper's protocol), mask fidelity
    (Dice of a real-data segmenter on the generated image against its mask), image realism (the
    cross-validated accuracy of a small CNN trained from scratch to tell the real images from the
    generated ones, 0.5 = indistinguishable, beside real training vs real test images, and Lab colour
    distances inside and outside the lesion) and, with --fid-weights, FID and KID. Writes
    report.json, report.md and plots to --out.

    Example: lesionaug quality ./example --model ./runs/model --split test --denoise-steps 20 --json
    """

    def body(reporter):
        segmenter = SegmenterConfig(
            arch=seg_arch,
            image_size=seg_image_size,
            epochs=seg_epochs,
            channels=parse_int_list(seg_channels, "--seg-channels"),
            device=device,
            seed=seed,
        )
        config = QualityConfig(
            dataset=dataset,
            model=model,
            split=split,
            provider=provider,
            engine_device=engine_device,
            steps=steps,
            scheduler=scheduler,
            guidance=guidance,
            size=size,
            batch_size=batch_size,
            limit=limit,
            seed=seed,
            split_seed=split_seed,
            masks=masks,
            labels=tuple(labels or ()),
            fid_weights=fid_weights,
            fidelity=fidelity,
            realism=RealismConfig(seed=seed) if realism else None,
            segmenter=segmenter,
            out=out,
        )
        data = run_quality(config, reporter)
        return data, lambda console: render(console, data)

    run_command("quality", Out(json_, quiet, verbose, log_file), body)


def render(console, data: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{data['n']} generated images at {data['size']} px", title_justify="left")
    for header in ("measure", "mean", "std", "n"):
        table.add_column(header, justify="left" if header == "measure" else "right")

    def row(name: str, summary: dict | None) -> None:
        if summary and summary.get("n"):
            table.add_row(name, f"{summary['mean']:.4f}", f"{summary['std']:.4f}", str(summary["n"]))

    row("SSIM vs real image", data["ssim"])
    row("mask fidelity (Dice)", data["mask_fidelity"])
    row("segmenter on real images", data["segmenter_on_real"])
    row("segmenter on flat skin", data["segmenter_prior"])
    console.print(table)
    fid = data["fid"]
    if fid["status"] == "ok":
        console.print(f"FID {fid['fid']:.3f}   KID {fid['kid_mean']:.5f} +- {fid['kid_std']:.5f}", markup=False)
    else:
        console.print(f"FID/KID {fid['message']}", markup=False)
    realism = data.get("image_realism")
    if realism:
        console.print(
            f"image realism: real vs generated classifier accuracy {_accuracy(realism, 'c2st')}, "
            f"real vs real {_accuracy(realism, 'reference_c2st')} (0.5 = indistinguishable)",
            markup=False,
        )
        for region, values in realism["colour_distances"].items():
            words = "  ".join(f"{c}* {v:.2f}" if v is not None else f"{c}* n/a" for c, v in values.items())
            console.print(f"Lab Wasserstein distance {region} the lesion: {words}", markup=False)
        for region, values in (realism.get("colour_spread") or {}).items():
            words = "  ".join(f"{c}* {v['ratio']:.2f}" if v["ratio"] is not None else f"{c}* n/a"
                              for c, v in values.items())
            console.print(f"colour spread across images {region} the lesion, generated / real: {words}", markup=False)
    for note in data["notes"]:
        console.print(note, markup=False)
    console.print(f"report: {data['report']}", markup=False)


def _accuracy(realism: dict, key: str) -> str:
    mean, std = realism.get(f"{key}_accuracy"), realism.get(f"{key}_std")
    return "n/a (too few images)" if mean is None else f"{mean:.3f} +- {std:.3f}"
