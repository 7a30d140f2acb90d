"""CPU speed: lesionaug's ONNX Runtime engine vs the diffusers ControlNet pipeline in eager PyTorch.

Same model, weights, scheduler, steps, guidance, prompt, masks and seeds, side by side in one run,
at 64 and 256 px with batch 1 and 8; images/s for each and the speedup (target >= 1.5x). The model
is the compact "small" pixel-space configuration that `lesionaug train` builds on a CPU
(``lesionaug.train.networks.COMPACT_SIZES["small"]``: UNet widths 16-32-64-64, attention at the coarsest
level, 2-layer CLIP text encoder of width 64), randomly initialised (speed does not depend on the
weights) and exported fp32. The diffusers side is ``StableDiffusionControlNetPipeline`` with
``output_type="latent"`` (a pixel model's final sample is its image), so both sides run exactly the
same denoising loop; the largest pixel difference between them is reported too.

    python benchmarks/bench_engine.py                 # writes benchmarks/results/engine.json
    python benchmarks/bench_engine.py --sizes 64 --batches 1 --steps 4   # a quick look
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

import numpy as np

ROOT = Path(__file__).resolve().parent
PROMPT = "a dermoscopic image of melanoma with pigment network"


def build_model(folder: Path, size: str):
    """The compact model of ``size`` with its ControlNet, written as a lesionaug model folder."""
    import torch

    from lesionaug.train.model_folder import write_model_folder
    from lesionaug.train.networks import (
        COMPACT_SIZES,
        build_compact_model,
        build_controlnet,
    )

    torch.manual_seed(0)
    resolution = COMPACT_SIZES[size]["resolution"]
    parts = build_compact_model(size, resolution, [PROMPT])
    parts.controlnet = build_controlnet(parts)
    with torch.no_grad():  # untrained zero convolutions would make the ControlNet a no-op
        for conv in [*parts.controlnet.controlnet_down_blocks, parts.controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.02)
    info = {"base": "compact", "model_size": size, "latent": False, "resolution": resolution,
            "size_multiple": parts.size_multiple, "vae_scale_factor": None, "prompt_template": PROMPT}
    write_model_folder(folder, parts, info)
    params = sum(p.numel() for m in (parts.unet, parts.controlnet, parts.text_encoder) for p in m.parameters())
    return folder, {"size": size, "parameters": params,
                    "unet_block_out_channels": list(parts.unet.config.block_out_channels)}


def diffusers_pipeline(model_dir: Path, scheduler_name: str):
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel

    from lesionaug.engine.sampler import make_scheduler

    config = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    # Never called (output_type="latent"); one block gives the pipeline a scale factor of 1.
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=3, norm_num_groups=8)
    pipe = StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=CLIPTextModel.from_pretrained(model_dir / "text_encoder"),
        tokenizer=AutoTokenizer.from_pretrained(model_dir / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(model_dir / "unet"),
        controlnet=ControlNetModel.from_pretrained(model_dir / "controlnet"),
        scheduler=make_scheduler(scheduler_name, config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def masks_for(batch: int, size: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[:size, :size] / size
    return [((yy - 0.5) ** 2 / (0.2 + 0.02 * k) ** 2 + (xx - 0.45) ** 2 / 0.3**2) < 1 for k in range(batch)]


def run_diffusers(pipe, masks, seeds, steps, guidance) -> np.ndarray:
    import torch
    from PIL import Image

    images = [Image.fromarray(m.astype(np.uint8) * 255).convert("RGB") for m in masks]
    size = masks[0].shape[0]
    with torch.inference_mode():
        out = pipe([PROMPT] * len(masks), image=images, height=size, width=size, num_inference_steps=steps,
                   guidance_scale=guidance, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                   output_type="latent").images
    return (out * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def timed_sides(sides: list, repeats: int) -> list[tuple[float, object]]:
    """(best-of-``repeats`` seconds, result) for each side, the sides taking turns, so that all see the
    same stretch of the machine's load (it drifts by 10-20 % over minutes on a shared host)."""
    best = [float("inf")] * len(sides)
    results: list[object] = [None] * len(sides)
    for _ in range(repeats):
        for k, fn in enumerate(sides):
            start = time.perf_counter()
            results[k] = fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return list(zip(best, results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", default="dpm++")
    parser.add_argument("--model-size", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both sides (default: the cores this process may use)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per case and side, the sides taking turns (the best is kept)")
    parser.add_argument("--no-cpu-rewrites", dest="cpu_rewrites", action="store_false",
                        help="run the engine on the graphs as exported (engine/cpu_graph.py off), for comparison")
    parser.add_argument("--no-cpu-stages", dest="cpu_stages", action="store_false",
                        help="run the denoiser as one graph (engine/stages.py off), for comparison")
    parser.add_argument("--also-without-stages", action="store_true",
                        help="time a third side too: the engine with the denoiser as one graph")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "engine.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float
    from lesionaug.engine.session import default_threads
    from lesionaug.export.run import export_model

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    settings = SamplerSettings(args.scheduler, args.steps, args.guidance)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="lesionaug-bench-") as tmp:
        os.environ["LESIONAUG_CACHE"] = str(Path(tmp) / "cache")
        model_dir, model_info = build_model(Path(tmp) / "model", args.model_size)
        start = time.perf_counter()
        export = export_model(model_dir, Path(tmp) / "engine")
        export_seconds = time.perf_counter() - start
        engine = Engine.load(export.engine_dir, "cpu", threads=threads, cpu_rewrites=args.cpu_rewrites,
                             cpu_stages=args.cpu_stages)
        described = engine.describe()
        cpu_rewrites, cpu_stages = described["cpu_rewrites"], described["cpu_stages"]
        whole = None
        if args.also_without_stages:
            whole = Engine.load(export.engine_dir, "cpu", threads=threads, cpu_rewrites=args.cpu_rewrites,
                                cpu_stages=False)
        pipe = diffusers_pipeline(model_dir, args.scheduler)

        rows = []
        for size in args.sizes:
            for batch in args.batches:
                masks, seeds = masks_for(batch, size), list(range(batch))
                # Warm up both sides once (allocators, ORT's first-run kernel choices, torch's caches).
                warm = SamplerSettings(args.scheduler, 2, args.guidance)
                engines = [engine] if whole is None else [engine, whole]
                for ours_engine in engines:
                    generate_float(ours_engine, [PROMPT] * batch, masks, seeds, warm)
                run_diffusers(pipe, masks, seeds, 2, args.guidance)
                sides = [lambda e=e: generate_float(e, [PROMPT] * batch, masks, seeds, settings) for e in engines]
                sides.insert(1, lambda: run_diffusers(pipe, masks, seeds, args.steps, args.guidance))
                timed = timed_sides(sides, args.repeats)
                (t_engine, ours), (t_torch, theirs) = timed[:2]
                row = {"size": size, "batch": batch,
                       "engine_images_per_s": batch / t_engine, "diffusers_images_per_s": batch / t_torch,
                       "engine_seconds": t_engine, "diffusers_seconds": t_torch, "speedup": t_torch / t_engine,
                       "max_abs_diff": float(np.abs(np.asarray(ours) - np.asarray(theirs)).max())}
                if whole is not None:
                    t_whole, plain = timed[2]
                    row.update({"engine_without_stages_seconds": t_whole, "speedup_without_stages": t_torch / t_whole,
                                "stages_gain": t_whole / t_engine,
                                "max_abs_diff_without_stages": float(np.abs(np.asarray(plain) - np.asarray(theirs)).max())})
                print(f"{size:>4} px  batch {batch}:  engine {row['engine_images_per_s']:7.3f} img/s   "
                      f"diffusers {row['diffusers_images_per_s']:7.3f} img/s   speedup {row['speedup']:.2f}x   "
                      f"max diff {row['max_abs_diff']:.1e}"
                      + (f"   (without stages {row['speedup_without_stages']:.2f}x)" if whole is not None else ""),
                      flush=True)
                rows.append(row)

    result = {
        "benchmark": "engine",
        "what": "images/s, lesionaug ONNX Runtime engine (CPU provider) vs diffusers "
                "StableDiffusionControlNetPipeline in eager PyTorch, same model and settings",
        "model": {"kind": "compact pixel-space (lesionaug.train.networks.COMPACT_SIZES)", **model_info},
        "settings": {"scheduler": args.scheduler, "steps": args.steps, "guidance": args.guidance,
                     "precision": "fp32", "repeats": args.repeats, "timing": "best of repeats, sides alternating"},
        "engine_cpu_rewrites": cpu_rewrites,
        "engine_cpu_stages": cpu_stages,
        "machine": {"load_average_1_5_15": [round(x, 2) for x in os.getloadavg()], "threads": threads, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "load_average_at_start": load_before,
        "export_seconds": export_seconds,
        "target_speedup": 1.5,
        "results": rows,
        "min_speedup": min(r["speedup"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(f"min speedup {result['min_speedup']:.2f}x (target 1.5x); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
