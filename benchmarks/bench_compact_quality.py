"""Does the compact model, trained on the CPU budget, make images that follow their masks?

For each variant (a set of ``TrainConfig`` options) this trains the compact model on the demo
data's training split exactly as ``lesionaug train`` does, exports it to ONNX, generates one image
for every held-out (test split) mask with the exported engine and the sampler's defaults (the
images ``lesionaug augment`` would make), and measures:

- mask fidelity: Dice between the mask and what the quality module's segmenter (a U-Net trained on
  the real training split, ``lesionaug.evaluate.segmenter``) finds in the generated image, read between the
  same segmenter on the real images (ceiling) and on a flat skin-coloured image (floor);
- fidelity gain: that Dice minus the mean Dice against the other test masks (0 for a generator
  that ignores its mask, whatever central blob the segmenter finds);
- darkness Dice: Dice between the mask and an Otsu threshold of the image's luminance inside the
  field of view (pixels brighter than the black vignette), with the same measure on the real images;
- image realism: the accuracy of a small CNN trained from scratch to tell the real test images from
  the generated ones (``lesionaug.evaluate.image_realism``, 5-fold cross-validated; 0.5 = it cannot),
  beside the same test on real training against real test images, and the Lab colour distances
  (Wasserstein per channel) inside and outside the lesion;
- SSIM against the real image of the same mask (``lesionaug.evaluate.metrics.structural_similarity``);
- colour error: mean absolute difference (0-255) of the mean lesion colour and of the mean skin
  colour between generated and real images;
- wall and CPU time of training, export and generation.

Each variant runs once per seed (training and noise seeds; the data and the segmenter stay the
same) and is summarised by the mean over seeds. "before" is the compact default as it was (128 px,
epsilon prediction, 150 + 100 steps); "after" is ``TrainConfig()``'s default today. Grids (mask /
generated / real) are written as PNGs beside the JSON. Variants and keys of earlier runs in the
JSON are kept, so variants can be measured one at a time:

    python benchmarks/bench_compact_quality.py                         # before and after, seeds 0 and 1
    python benchmarks/bench_compact_quality.py --variants after --seeds 0
    python benchmarks/bench_compact_quality.py --name try96 --set resolution=96 --set base_steps=260 --torch
      # --torch: the model folder's torch networks generate (no export); same images up to float rounding
    python benchmarks/bench_compact_quality.py --variants baseline,dihedral,ema --seeds 0   # the levers

Every run prints a table of every variant in the JSON (realism, fidelity, time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "compact_quality.json"
GRIDS = ROOT / "results" / "compact_quality"

# The compact CPU default before this benchmark (commit c7c2edd): "small" at 128 px, epsilon
# prediction on a cosine schedule with leading timesteps, 150 + 100 steps at 5e-4 / 2e-4.
BEFORE = {
    "model_size": "small",
    "resolution": 128,
    "base_steps": 150,
    "steps": 100,
    "base_lr": 5e-4,
    "lr": 2e-4,
    "lr_warmup": 0,
    "prediction_type": "epsilon",
    "zero_terminal_snr": False,
}
# The levers of issue 17, each against today's default ("baseline", the same as "after").
EMA_DECAY = 0.995  # about the last 200 steps of a 500-step stage
VARIANTS: dict[str, dict] = {
    "before": BEFORE,
    "after": {},
    "baseline": {},
    "dihedral": {"dihedral": True},
    "ema": {"ema_decay": EMA_DECAY},
    "dihedral+ema": {"dihedral": True, "ema_decay": EMA_DECAY},
    # 128 px at the 64 px model's cost: the UNet on 2 x 2 pixel patches (train --patch-size 2).
    "patch2": {"patch_size": 2, "resolution": 128},
    # The 64 px default of the rounds before (the "baseline" rows measured then), for side-by-side runs.
    "px64": {"resolution": 64, "low_res_fraction": 0.0},
    # Min-SNR-gamma loss weighting (train --snr-gamma 5) on the 64 px model.
    "minsnr5": {"resolution": 64, "low_res_fraction": 0.0, "snr_gamma": 5.0},
    # 128 px on pixels, the first 3/4 of each stage at 64 px (train --low-res-fraction 0.75): today's default.
    "lowres75": {"resolution": 128, "low_res_fraction": 0.75},
    # Today's default with four times the steps of each stage (train --base-steps 2400 --train-steps 2000).
    "steps4x": {"resolution": 128, "low_res_fraction": 0.75, "base_steps": 2400, "steps": 2000},
    # Today's default with the prompt's mean token state in every block's timestep embedding (train --pooled-prompt).
    "pooled": {"resolution": 128, "low_res_fraction": 0.75, "pooled_prompt": True},
}


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def field_of_view(luminance: np.ndarray) -> np.ndarray:
    """Pixels inside the dermoscope's circle: brighter than a fifth of the image's 95th percentile."""
    return luminance > 0.2 * np.percentile(luminance, 95)


def darkness_mask(image: np.ndarray) -> np.ndarray:
    """Otsu threshold of the luminance inside the field of view: the dark part is the lesion."""
    from skimage.filters import threshold_otsu

    luminance = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    view = field_of_view(luminance)
    values = luminance[view]
    if values.size < 2 or values.min() == values.max():
        return np.zeros(luminance.shape, bool)
    return view & (luminance < threshold_otsu(values))


def region_colours(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB inside the mask and in the field of view outside it."""
    luminance = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    skin = field_of_view(luminance) & ~mask
    pixels = image.reshape(-1, 3).astype(np.float64)
    lesion_mean = pixels[mask.ravel()].mean(0) if mask.any() else np.zeros(3)
    skin_mean = pixels[skin.ravel()].mean(0) if skin.any() else np.zeros(3)
    return lesion_mean, skin_mean


def grid_png(path: Path, masks, images, reals, columns: int = 10) -> None:
    from PIL import Image

    n = min(columns, len(images))
    h, w = images[0].shape[:2]
    canvas = np.full((3 * h + 4, n * (w + 2) - 2, 3), 255, np.uint8)
    for i in range(n):
        x = i * (w + 2)
        canvas[:h, x : x + w] = (masks[i] * 255).astype(np.uint8)[..., None]
        canvas[h + 2 : 2 * h + 2, x : x + w] = images[i]
        canvas[2 * h + 4 :, x : x + w] = reals[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


def summary(values: list[float]) -> dict:
    array = np.asarray(values, np.float64)
    return {"mean": round(float(array.mean()), 4), "median": round(float(np.median(array)), 4),
            "std": round(float(array.std()), 4), "n": int(array.size)}


def mask_specific_gain(masks, predicted) -> list[float]:
    """Per image: Dice with its own mask minus the mean Dice with the other masks. A generator that
    ignores its mask (or a segmenter that finds the usual central blob anywhere) scores about 0."""
    from lesionaug.evaluate.metrics import dice_coefficient

    gains = []
    for i, p in enumerate(predicted):
        others = [dice_coefficient(m, p) for j, m in enumerate(masks) if j != i]
        gains.append(dice_coefficient(masks[i], p) - float(np.mean(others)))
    return gains


def realism(reals, images, masks, seed: int) -> dict:
    """C2ST accuracy of real against generated images and the Lab colour distances."""
    from lesionaug.evaluate.image_realism import ColourSample, RealismConfig, colour_distances, two_sample_test

    result = two_sample_test(list(reals), list(images), RealismConfig(seed=seed))
    real_colours, generated_colours = ColourSample(), ColourSample()
    for real, image, mask in zip(reals, images, masks):
        real_colours.add(real, mask)
        generated_colours.add(image, mask)
    return {
        "c2st_accuracy": {"mean": round(result.accuracy, 4), "std": round(result.std, 4),
                          "folds": [round(a, 4) for a in result.fold_accuracies], "n": result.n_per_sample},
        "colour_distances": {region: {c: round(v, 3) for c, v in values.items()}
                             for region, values in colour_distances(real_colours, generated_colours).items()},
    }


def measure(masks, images, reals, segmenter, seed: int = 0) -> dict:
    from lesionaug.evaluate.metrics import dice_coefficient, structural_similarity

    predicted = segmenter.predict(list(images))
    colour_lesion, colour_skin = [], []
    for mask, image, real in zip(masks, images, reals):
        gen_lesion, gen_skin = region_colours(image, mask)
        real_lesion, real_skin = region_colours(real, mask)
        colour_lesion.append(float(np.abs(gen_lesion - real_lesion).mean()))
        colour_skin.append(float(np.abs(gen_skin - real_skin).mean()))
    started = time.perf_counter()
    measured = realism(reals, images, masks, seed)
    measured["realism_seconds"] = round(time.perf_counter() - started, 1)
    fidelity = [dice_coefficient(m, p) for m, p in zip(masks, predicted)]
    return {
        **measured,
        # What `augment --min-fidelity T` would retry at the first attempt: the share of images below T.
        "first_attempt_rejected": {str(t): round(float(np.mean(np.asarray(fidelity) < t)), 4)
                                   for t in (0.5, 0.6, 0.7, 0.8)},
        "fidelity_dice": summary(fidelity),
        "fidelity_gain": summary(mask_specific_gain(masks, predicted)),
        "darkness_dice": summary([dice_coefficient(m, darkness_mask(i)) for m, i in zip(masks, images)]),
        "ssim": summary([structural_similarity(i, r) for i, r in zip(images, reals)]),
        "lesion_colour_error": summary(colour_lesion),
        "skin_colour_error": summary(colour_skin),
        "image_std": round(float(np.mean([i.astype(np.float64).std() for i in images])), 2),
    }


class TorchEngine:
    """The calls the sampler makes on an engine, answered by a model folder's torch networks
    (``--torch``: skips the ONNX export while exploring; the scheduler config is the folder's)."""

    def __init__(self, model_dir: Path):
        import torch
        from diffusers import ControlNetModel, UNet2DConditionModel
        from transformers import AutoTokenizer, CLIPTextModel

        self.torch = torch
        self.unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").eval()
        self.controlnet = ControlNetModel.from_pretrained(model_dir / "controlnet").eval()
        self.text_encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder").eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir / "tokenizer")
        self.scheduler_config = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
        self.model = json.loads((model_dir / "lesionaug.json").read_text())
        self.device = "cpu"
        self.card = SimpleNamespace(channels=3, scale=1, max_batch=64)

    def check_size(self, height: int, width: int) -> None:
        pass

    def encode_prompts(self, prompts):
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with self.torch.no_grad():
            return self.text_encoder(ids)[0]

    def denoise(self, sample, timestep, states, control, scale):
        with self.torch.no_grad():
            down, mid = self.controlnet(sample, timestep, states, controlnet_cond=control,
                                        conditioning_scale=float(scale), return_dict=False)
            return self.unet(sample, timestep, states, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample

    def decode(self, sample):
        return sample


def run_variant(name: str, options: dict, index, segmenter, test, work: Path, args, seed: int) -> dict:
    from lesionaug.dataset.files import read_image, read_mask
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate
    from lesionaug.evaluate.segmenter import square_image as resize_image
    from lesionaug.export.run import export_model
    from lesionaug.masks.geometry import resize_mask
    from lesionaug.plan.prompts import DEFAULT_TEMPLATE, build_prompt
    from lesionaug.progress import SILENT
    from lesionaug.seeds import NOISE_STREAM, derive_seed
    from lesionaug.train.config import TrainConfig
    from lesionaug.train.run import train_model

    config = TrainConfig(base="compact", seed=seed, **options)
    model_dir, engine_dir = work / f"{name}-{seed}" / "model", work / f"{name}-{seed}" / "engine"
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_model(index, model_dir, config, SILENT, force=True)
    train_s, train_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    if args.torch:
        engine = TorchEngine(model_dir)
    else:
        export_model(model_dir, engine_dir, "fp32", verify=False, force=True)
        engine = Engine.load(engine_dir, "cpu")
    export_s = time.perf_counter() - started
    size = int(engine.model["resolution"]) if args.torch else int(engine.card.model["resolution"])
    settings = SamplerSettings(scheduler=args.scheduler, steps=args.sample_steps, guidance=args.guidance)
    masks = [resize_mask(read_mask(s.mask), (size, size)) for s in test]
    reals = [resize_image(read_image(s.image), size) for s in test]
    prompts = [build_prompt(s.labels, DEFAULT_TEMPLATE) for s in test]
    seeds = [derive_seed(seed, k, NOISE_STREAM) for k in range(len(test))]
    started = time.perf_counter()
    images = np.concatenate([generate(engine, prompts[i : i + 8], masks[i : i + 8], seeds[i : i + 8], settings)
                             for i in range(0, len(test), 8)])
    generate_s = time.perf_counter() - started
    grid = GRIDS / f"{name}.png" if seed == args.seeds[0] else GRIDS / f"{name}-seed{seed}.png"
    grid_png(grid, masks, images, reals)
    row = {
        "seed": seed,
        "scheduler_config": {k: engine.scheduler_config.get(k) for k in
                             ("prediction_type", "rescale_betas_zero_snr", "timestep_spacing", "beta_schedule")},
        "size": size,
        "final_losses": [s["final_loss"] for s in result["stages"]],
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu_s, 1),
        "stage_seconds": [s["seconds"] for s in result["stages"]],
        "engine": "torch" if args.torch else "onnxruntime-cpu",
        "export_seconds": round(export_s, 1),
        "generate_seconds": round(generate_s, 1),
        "images_per_second": round(len(test) / generate_s, 2),
        **measure(masks, images, reals, segmenter, seed),
        "grid": str(grid.relative_to(ROOT.parent)),
    }
    print(json.dumps({name: row}, indent=1), flush=True)
    return row


METRICS = ("c2st_accuracy", "fidelity_dice", "fidelity_gain", "darkness_dice", "ssim", "lesion_colour_error", "skin_colour_error")
COSTS = ("train_seconds", "train_cpu_seconds", "export_seconds", "generate_seconds")


def variant_record(options: dict, runs: list[dict]) -> dict:
    """One variant: its options and resolved config, each seed's run, and the means over seeds."""
    from lesionaug.train.config import TrainConfig

    resolved = TrainConfig(base="compact", **options).resolved().to_dict()
    mean = {k: round(float(np.mean([r[k]["mean"] for r in runs])), 4) for k in METRICS if k in runs[0]}
    mean |= {k: round(float(np.mean([r[k] for r in runs])), 1) for k in COSTS}
    return {
        "options": options,
        "config": {k: v for k, v in resolved.items() if k in {*BEFORE, "batch_size"}},
        "size": runs[0]["size"],
        "mean_over_seeds": mean,
        "runs": runs,
    }


def fidelity_segmenter(train, epochs: int, work: Path | None):
    """The quality module's segmenter trained on the real training split (kept in ``work`` when given)."""
    import torch

    from lesionaug.evaluate.segmenter import (
        Segmenter,
        SegmenterConfig,
        build_network,
        train_segmenter,
    )

    config = SegmenterConfig(epochs=epochs, device="cpu")
    saved = work / f"segmenter-{epochs}.pt" if work is not None else None
    if saved is not None and saved.is_file():
        network = build_network(config)
        network.load_state_dict(torch.load(saved))
        network.eval()
        return Segmenter(network, config, "cpu", [])
    segmenter = train_segmenter([(s.image, s.mask) for s in train], config)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save(segmenter.network.state_dict(), saved)
    return segmenter


def reference_realism(train, test, size: int, seed: int = 0) -> dict:
    """C2ST of real training against real test images at ``size``: what indistinguishable looks like."""
    from lesionaug.dataset.files import read_image
    from lesionaug.evaluate.image_realism import RealismConfig, two_sample_test
    from lesionaug.evaluate.segmenter import square_image as resize_image

    reals = [resize_image(read_image(s.image), size) for s in test]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(train), min(len(train), len(test)), replace=False))
    others = [resize_image(read_image(train[i].image), size) for i in chosen]
    result = two_sample_test(others, reals, RealismConfig(seed=seed))
    return {"c2st_accuracy": round(result.accuracy, 4), "c2st_std": round(result.std, 4), "n": result.n_per_sample}


def print_table(record: dict) -> None:
    """Every variant the JSON holds: realism, fidelity (with the real-image ceiling) and time."""
    refs = record.get("references", {})
    header = (f"{'variant':<16} {'px':>4} {'C2ST acc':>9} {'fidelity':>9} {'ceiling':>8} {'of ceil':>8} "
              f"{'SSIM':>6} {'train s':>8} {'gen s':>6}")
    print(header)
    print("-" * len(header))
    for name, row in record.get("variants", {}).items():
        mean, size = row["mean_over_seeds"], str(row["size"])
        ceiling = refs.get(size, {}).get("fidelity_dice_real", {}).get("mean")
        c2st = mean.get("c2st_accuracy")
        share = mean["fidelity_dice"] / ceiling if ceiling else None
        print(f"{name:<16} {size:>4} {_cell(c2st, 9, 3)} {_cell(mean['fidelity_dice'], 9, 3)} {_cell(ceiling, 8, 3)} "
              f"{_cell(share, 8, 2)} {_cell(mean['ssim'], 6, 3)} {_cell(mean['train_seconds'], 8, 0)} "
              f"{_cell(mean['generate_seconds'], 6, 0)}")
    for size, ref in refs.items():
        if "reference_c2st" in ref:
            r = ref["reference_c2st"]
            print(f"reference: real train vs real test at {size} px, C2ST accuracy {r['c2st_accuracy']:.3f} "
                  f"+- {r['c2st_std']:.3f} (n={r['n']} per set)")


def _cell(value, width: int, digits: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def references(test, segmenter, train=None) -> dict:
    """The measures on the real images themselves (ceiling) and on a flat skin-coloured image (floor)."""
    from lesionaug.dataset.files import read_image, read_mask
    from lesionaug.evaluate.metrics import dice_coefficient
    from lesionaug.evaluate.segmenter import square_image as resize_image
    from lesionaug.masks.geometry import resize_mask

    out = {}
    for size in (64, 96, 128):
        masks = [resize_mask(read_mask(s.mask), (size, size)) for s in test]
        reals = [resize_image(read_image(s.image), size) for s in test]
        on_real = segmenter.predict(reals)
        flat = np.broadcast_to(np.mean(reals, axis=(0, 1, 2)).round().astype(np.uint8), reals[0].shape)
        prior = segmenter.predict([np.ascontiguousarray(flat)])[0]
        out[str(size)] = {
            "fidelity_dice_real": summary([dice_coefficient(m, p) for m, p in zip(masks, on_real)]),
            "fidelity_dice_flat": summary([dice_coefficient(m, prior) for m in masks]),
            "fidelity_gain_real": summary(mask_specific_gain(masks, on_real)),
            "darkness_dice_real": summary([dice_coefficient(m, darkness_mask(r)) for m, r in zip(masks, reals)]),
        }
        if train is not None:
            out[str(size)]["reference_c2st"] = reference_realism(train, test, size)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="before,after", help="comma-separated names from VARIANTS")
    parser.add_argument("--name", help="measure one ad-hoc variant of this name, built from --set options")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig option")
    parser.add_argument("--pairs", type=int, default=120, help="demo pairs (the README's demo uses 120)")
    parser.add_argument("--seeds", default="0,1", help="training and noise seeds; each variant runs once per seed")
    parser.add_argument("--scheduler", default="dpm++")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--segmenter-epochs", type=int, default=30)
    parser.add_argument("--torch", action="store_true", help="generate with the torch networks (no ONNX export)")
    parser.add_argument("--limit", type=int, default=None, help="measure on the first N test masks only")
    parser.add_argument("--work", type=Path, default=None, help="keep models here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--budget", metavar="BASE,CONTROLNET", default=None,
                        help="override every variant's training steps (stage 1, stage 2), e.g. 150,100 on a loaded machine")
    parser.add_argument("--table", action="store_true", help="print the table of the JSON's variants and stop")
    args = parser.parse_args()
    args.seeds = [int(v) for v in args.seeds.split(",")]
    if args.table:
        print_table(json.loads(args.out.read_text()))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from lesionaug.dataset.index import load_dataset
    from lesionaug.demo.write import write_demo_dataset

    if args.name:
        variants = {args.name: dict(kv.split("=", 1) for kv in args.set)}
        variants[args.name] = {k: parse_value(v) for k, v in variants[args.name].items()}
    else:
        variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    if args.budget:
        base_steps, steps = (int(v) for v in args.budget.split(","))
        variants = {f"{name}@{base_steps}+{steps}": {**options, "base_steps": base_steps, "steps": steps}
                    for name, options in variants.items()}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = work / "demo"
        if not (data / "ISIC2018_Task1-2_Training_Input").is_dir():
            data = write_demo_dataset(data, n=args.pairs, layout="isic2018", size=128, seed=0)
        index = load_dataset(data, labels=[Path(data) / "isic_archive_metadata.csv"])  # the Task 1 diagnoses
        train, test = index.usable("train"), sorted(index.usable("test"), key=lambda s: s.id)[: args.limit]
        started = time.perf_counter()
        segmenter = fidelity_segmenter(train, args.segmenter_epochs, args.work)
        segmenter_s = time.perf_counter() - started
        refs = references(test, segmenter, train)
        rows = dict(previous.get("variants", {}))
        for name, options in variants.items():
            runs = [run_variant(name, options, index, segmenter, test, work, args, seed) for seed in args.seeds]
            rows[name] = variant_record(options, runs)
    # Keys this run does not write (e.g. "exploration", the ablations of earlier runs) are kept.
    record = previous | {
        "benchmark": "compact_quality",
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]},
        "settings": {"pairs": args.pairs, "train_pairs": len(train), "test_pairs": len(test), "seeds": args.seeds,
                     "scheduler": args.scheduler, "sample_steps": args.sample_steps, "guidance": args.guidance,
                     "segmenter_epochs": args.segmenter_epochs, "segmenter_seconds": round(segmenter_s, 1)},
        "references": refs,
        "variants": rows,
    }
    if "before" in rows and "after" in rows:
        record["before_after"] = {
            k: {"before": rows["before"]["mean_over_seeds"][k], "after": rows["after"]["mean_over_seeds"][k]}
            for k in (*METRICS, *COSTS)
        } | {"size": {"before": rows["before"]["size"], "after": rows["after"]["size"]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print_table(record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
