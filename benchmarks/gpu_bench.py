"""GPU check (driven by gpu_check.sh): fp16 engine on TensorRT EP and CUDA EP vs diffusers fp16.

Builds a Stable-Diffusion-shaped latent model from configs (random weights: speed and numerical
health do not need trained ones), exports it fp16, and reports images/s at 512x512, 20 steps,
batch 1 and 8 for each provider and for diffusers' ``StableDiffusionControlNetPipeline`` in fp16,
plus how many images came out NaN or black. A provider that is not there (TensorRT is usually not
installed) is reported with the reason, not treated as a failure. Results are written after every
stage, so a run cut short still leaves what it measured.

``--cpu-smoke`` runs the same stages at toy size on the CPU provider and diffusers fp32, to prove
the script itself works on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
PROMPT = "a dermoscopic image of melanoma with pigment network"

# UNet/ControlNet widths, text encoder depth/width, VAE widths.
MODELS = {
    # Stable Diffusion 1.5's shapes (860M UNet, 123M text encoder, 84M VAE).
    "sd15": {"unet": (320, 640, 1280, 1280), "layers": 2, "heads": 8, "text": (12, 768), "vae": (128, 256, 512, 512)},
    # BK-SDM-small-like: SD's text encoder and VAE, a UNet at half width.
    "small": {"unet": (160, 320, 640, 640), "layers": 2, "heads": 8, "text": (12, 768), "vae": (128, 256, 512, 512)},
    # Toy size for --cpu-smoke.
    "toy": {"unet": (32, 64, 64, 64), "layers": 1, "heads": 8, "text": (2, 32), "vae": (8, 8, 16, 16)},
}


def build_model(folder: Path, name: str) -> dict:
    """Write a latent SD + ControlNet model folder of shape ``name`` from configs."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from lesionaug.train.networks import build_word_tokenizer

    spec = MODELS[name]
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_word_tokenizer([PROMPT], max_length=77)  # SD's prompt length
    tokenizer.save_pretrained(folder / "tokenizer")
    layers, hidden = spec["text"]
    CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer.get_vocab()), hidden_size=hidden,
                                 intermediate_size=hidden * 4, num_hidden_layers=layers,
                                 num_attention_heads=max(1, hidden // 64), max_position_embeddings=77,
                                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder / "text_encoder")
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, block_out_channels=spec["unet"],
        layers_per_block=spec["layers"], cross_attention_dim=hidden, attention_head_dim=spec["heads"],
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    unet.save_pretrained(folder / "unet")
    controlnet = ControlNetModel.from_unet(unet)
    with torch.no_grad():  # untrained zero convolutions would make the ControlNet a no-op
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.01)
    controlnet.save_pretrained(folder / "controlnet")
    groups = 32 if spec["vae"][0] >= 32 else 8
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=spec["vae"],
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=2, norm_num_groups=groups, scaling_factor=0.18215).save_pretrained(folder / "vae")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")
    card = {"format": "lesionaug.model/1", "base": f"{name} (from configs)", "latent": True, "resolution": 512,
            "size_multiple": 64, "vae_scale_factor": 8, "prompt_template": PROMPT}
    (folder / "lesionaug.json").write_text(json.dumps(card, indent=2))
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in (("unet", unet), ("controlnet", controlnet))}
    return {"name": name, **{k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}, "parameters": params}


def health(images: np.ndarray) -> dict:
    """NaN images (any NaN) and black images (brightest pixel under 2/255) in float [0, 1] output."""
    flat = images.reshape(len(images), -1)
    nan = int(np.isnan(flat).any(axis=1).sum())
    black = int((np.nan_to_num(flat, nan=0.0).max(axis=1) < 2 / 255).sum())
    return {"nan_images": nan, "black_images": black}


def masks_for(batch: int, size: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[:size, :size] / size
    return [((yy - 0.5) ** 2 / (0.2 + 0.02 * k) ** 2 + (xx - 0.45) ** 2 / 0.3**2) < 1 for k in range(batch)]


def bench_engine(engine_dir: Path, provider: str, args, record: dict) -> None:
    from lesionaug.engine import Engine
    from lesionaug.engine.providers import probe_provider, usable_providers
    from lesionaug.engine.sampler import SamplerSettings, generate_float
    from lesionaug.engine.session import ShapeProfile

    entry = record.setdefault("providers", {}).setdefault(provider, {})
    if provider not in usable_providers():
        entry.update({"available": False, "reason": probe_provider(provider)[1]})
        return
    entry["available"] = True
    settings = SamplerSettings(args.scheduler, args.steps, args.guidance)
    for batch in args.batches:
        masks, seeds = masks_for(batch, args.size), list(range(batch))
        start = time.perf_counter()
        engine = Engine.load(engine_dir, provider, profile=ShapeProfile(batch, batch, args.size, args.size))
        generate_float(engine, [PROMPT] * batch, masks, seeds, SamplerSettings(args.scheduler, 2, args.guidance))
        first = time.perf_counter() - start  # session build (TensorRT engine build) + first run
        start = time.perf_counter()
        images = generate_float(engine, [PROMPT] * batch, masks, seeds, settings)
        seconds = time.perf_counter() - start
        entry[f"batch_{batch}"] = {"images_per_s": batch / seconds, "seconds": seconds,
                                   "load_and_warmup_seconds": first, **health(images), **engine.describe()}
        np.save(Path(args.work) / f"{provider}_b{batch}.npy", images)
        print(f"{provider:>9} batch {batch}: {batch / seconds:.2f} images/s  {health(images)}", flush=True)


def bench_diffusers(model_dir: Path, args, record: dict) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from PIL import Image
    from transformers import AutoTokenizer, CLIPTextModel

    from lesionaug.engine.sampler import make_scheduler

    device = "cpu" if args.cpu_smoke else "cuda"
    dtype = torch.float32 if args.cpu_smoke else torch.float16
    config = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    pipe = StableDiffusionControlNetPipeline(
        vae=AutoencoderKL.from_pretrained(model_dir / "vae", torch_dtype=dtype),
        text_encoder=CLIPTextModel.from_pretrained(model_dir / "text_encoder", torch_dtype=dtype),
        tokenizer=AutoTokenizer.from_pretrained(model_dir / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=dtype),
        controlnet=ControlNetModel.from_pretrained(model_dir / "controlnet", torch_dtype=dtype),
        scheduler=make_scheduler(args.scheduler, config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    entry = record.setdefault("diffusers", {"dtype": str(dtype), "device": device})
    for batch in args.batches:
        masks, seeds = masks_for(batch, args.size), list(range(batch))
        control = [Image.fromarray(m.astype(np.uint8) * 255).convert("RGB") for m in masks]

        def run(steps: int) -> np.ndarray:
            gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            with torch.inference_mode():
                return pipe([PROMPT] * batch, image=control, height=args.size, width=args.size,
                            num_inference_steps=steps, guidance_scale=args.guidance, generator=gens,
                            output_type="np").images

        run(2)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        images = run(args.steps)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        entry[f"batch_{batch}"] = {"images_per_s": batch / seconds, "seconds": seconds, **health(images)}
        np.save(Path(args.work) / f"diffusers_b{batch}.npy", images)
        print(f"diffusers batch {batch}: {batch / seconds:.2f} images/s  {health(images)}", flush=True)


def compare(args, record: dict) -> None:
    """Largest pixel difference between each provider and diffusers (same seeds; fp16 on both sides)."""
    work = Path(args.work)
    for batch in args.batches:
        ref = work / f"diffusers_b{batch}.npy"
        if not ref.exists():
            continue
        for provider in ("tensorrt", "cuda", "cpu"):
            ours = work / f"{provider}_b{batch}.npy"
            if ours.exists():
                diff = float(np.nanmax(np.abs(np.load(ours) - np.load(ref))))
                record["providers"][provider][f"batch_{batch}"]["max_abs_diff_vs_diffusers"] = diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", choices=sorted(MODELS))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", default="dpm++")
    parser.add_argument("--cpu-smoke", action="store_true", help="toy model, CPU provider, diffusers fp32")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check.json")
    parser.add_argument("--work", default=None, help="folder for the model, engine and images (temp by default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cpu_smoke:
        args.model, args.size = "toy", min(args.size, 64)
    args.work = args.work or tempfile.mkdtemp(prefix="lesionaug-gpu-check-")
    os.environ.setdefault("LESIONAUG_CACHE", str(Path(args.work) / "cache"))

    import onnxruntime as ort
    import torch

    from lesionaug.engine.doctor import collect_diagnostics

    record: dict = {"benchmark": "gpu_check", "cpu_smoke": args.cpu_smoke,
                    "settings": {"size": args.size, "steps": args.steps, "batches": args.batches,
                                 "guidance": args.guidance, "scheduler": args.scheduler},
                    "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                "torch_cuda": torch.version.cuda, "onnxruntime": ort.__version__,
                                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                    "stages": {}}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        os.replace(tmp, args.out)

    def stage(name: str, fn) -> bool:
        start = time.perf_counter()
        try:
            fn()
            ok, error = True, None
        except Exception as exc:  # noqa: BLE001 - a failed stage is recorded and the rest still run
            traceback.print_exc()
            ok, error = False, f"{type(exc).__name__}: {exc}"
        record["stages"][name] = {"ok": ok, "seconds": round(time.perf_counter() - start, 2), "error": error}
        save()
        print(f"[{name}] {'ok' if ok else 'FAILED: ' + str(error)} ({record['stages'][name]['seconds']} s)",
              flush=True)
        return ok

    work = Path(args.work)
    model_dir, engine_dir = work / "model", work / "engine"
    stage("doctor", lambda: record.update(doctor=collect_diagnostics()))
    if not stage("build_model", lambda: record.update(model=build_model(model_dir, args.model))):
        return 1

    def export() -> None:
        from lesionaug.export.run import export_model

        result = export_model(model_dir, engine_dir, precision="fp32" if args.cpu_smoke else "fp16", force=True)
        record["export"] = {k: v.get("verification") for k, v in result.graphs.items()}
        record["export"]["seconds"] = result.seconds

    if not stage("export", export):
        return 1
    for provider in (["cpu"] if args.cpu_smoke else ["tensorrt", "cuda"]):
        stage(f"engine_{provider}", lambda p=provider: bench_engine(engine_dir, p, args, record))
    stage("diffusers", lambda: bench_diffusers(model_dir, args, record))
    stage("compare", lambda: compare(args, record))
    failed = [name for name, s in record["stages"].items() if not s["ok"]]
    unhealthy = [f"{p}/{b}" for p, entry in record.get("providers", {}).items() for b, row in entry.items()
                 if isinstance(row, dict) and (row.get("nan_images") or row.get("black_images"))]
    record["summary"] = {"failed_stages": failed, "unhealthy": unhealthy}
    save()
    print(json.dumps(record["summary"]), flush=True)
    return 1 if failed or unhealthy else 0


if __name__ == "__main__":
    sys.exit(main())
