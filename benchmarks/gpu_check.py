"""GPU check (driven by gpu_check.sh): engines exported here, loaded and measured on a lent GPU.

``prepare`` (here, on the CPU) builds two models from configs with fixed seeds (random weights:
speed, numerical health and parity do not need trained ones), exports each fp32 and fp16, and
writes what the GPU side compares against: the compact engine's images on the CPU provider, and
the FLOPs of one denoiser item (PyTorch's FlopCounterMode), for the share of the GPU's peak.

- ``compact``: the compact ``small`` pixel model at 64 px (what ``augment`` trains by default);
- ``latent``: a mid-size latent Stable Diffusion shape (UNet 32-48-64-64, ControlNet, CLIP-style text
  encoder, 8x VAE) at 512 px: the largest whose two engines and model folder (kept in fp16, its
  weights fp16-exact) travel with the compact engines in one 64 MiB call (about 55 MB).

``run`` (on the GPU) loads each engine on the TensorRT (profile 1..8 jobs, timing cache) and CUDA
providers, checks parity (compact: against the CPU images; latent: against diffusers'
StableDiffusionControlNetPipeline on CUDA torch, fp32 and fp16), times batch 1 and 8 (images/s and
the share of a measured fp16 matmul peak) against diffusers fp16, and forces CUDA graphs once to see
what ONNX Runtime does with the exported graph. Results are written after every stage.

``--cpu-smoke`` runs both at toy settings on the CPU provider (and diffusers fp32 on the CPU), to
rehearse every step that does not need a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np

PROMPT = "a dermoscopic image of melanoma with pigment network"
SEEDS = [11, 12]
LATENT = {"unet": (32, 48, 64, 64), "text": (2, 128), "vae": (32, 64, 64, 64), "resolution": 512}


def mask_for(size: int, k: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    return ((yy - 0.5) ** 2 / (0.22 + 0.02 * k) ** 2 + (xx - 0.45) ** 2 / 0.3**2) < 1


# -- prepare (CPU) ------------------------------------------------------------------------------


def fp16_exact(*modules) -> None:
    """Round every weight to the nearest float16: the model folder then travels in fp16 without loss."""
    import torch

    with torch.no_grad():
        for module in modules:
            for param in module.parameters():
                param.copy_(param.half().float())


def halve_folder(folder: Path) -> None:
    """Store a model folder's float32 safetensors as float16 (lossless after ``fp16_exact``)."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in folder.rglob("*.safetensors"):
        tensors = load_file(str(path))
        save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}, str(path),
                  metadata={"format": "pt"})


def build_latent(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lesionaug.train.networks import build_word_tokenizer

    torch.manual_seed(0)
    tokenizer = build_word_tokenizer([PROMPT], max_length=77)
    tokenizer.save_pretrained(folder / "tokenizer")
    layers, hidden = LATENT["text"]
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer.get_vocab()), hidden_size=hidden,
                                        intermediate_size=4 * hidden, num_hidden_layers=layers,
                                        num_attention_heads=hidden // 32, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    fp16_exact(text)
    text.save_pretrained(folder / "text_encoder")
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, block_out_channels=LATENT["unet"],
                                layers_per_block=1, cross_attention_dim=hidden, attention_head_dim=8,
                                norm_num_groups=16, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    controlnet = ControlNetModel.from_unet(unet)
    with torch.no_grad():  # untrained zero convolutions would make the ControlNet a no-op
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.02)
    vae = AutoencoderKL(latent_channels=4, block_out_channels=LATENT["vae"], down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=16,
                        scaling_factor=0.18215)
    fp16_exact(unet, controlnet, vae)
    unet.save_pretrained(folder / "unet")
    controlnet.save_pretrained(folder / "controlnet")
    vae.save_pretrained(folder / "vae")
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")
    card = {"format": "lesionaug.model/1", "base": "mid-size latent (random weights, from configs)", "latent": True,
            "resolution": LATENT["resolution"], "size_multiple": 64, "vae_scale_factor": 8, "prompt_template": PROMPT}
    (folder / "lesionaug.json").write_text(json.dumps(card, indent=2))


def build_compact(folder: Path) -> None:
    import torch

    from lesionaug.train.model_folder import write_model_folder
    from lesionaug.train.networks import build_compact_model, build_controlnet

    torch.manual_seed(0)
    parts = build_compact_model("small", 64, [PROMPT])
    parts.controlnet = build_controlnet(parts)
    with torch.no_grad():
        for conv in [*parts.controlnet.controlnet_down_blocks, parts.controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.02)
    write_model_folder(folder, parts, {"base": "compact", "latent": False, "resolution": 64,
                                       "size_multiple": parts.size_multiple, "prompt_template": PROMPT,
                                       "model_size": "small"})


def denoiser_flops(model_dir: Path, size: int, latent: bool) -> int:
    """FLOPs of one denoiser batch item (UNet + ControlNet) at ``size`` px, counted by PyTorch."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(model_dir / "tokenizer").model_max_length
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").eval()
    controlnet = ControlNetModel.from_pretrained(model_dir / "controlnet").eval()
    side = size // 8 if latent else size
    sample = torch.zeros(1, unet.config.in_channels, side, side)
    states = torch.zeros(1, tokens, unet.config.cross_attention_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        down, mid = controlnet(sample, 500, states, controlnet_cond=torch.zeros(1, 3, size, size), return_dict=False)
        unet(sample, 500, states, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    return int(counter.get_total_flops())


def prepare(out: Path, smoke: bool) -> None:
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float
    from lesionaug.export.run import export_model

    out.mkdir(parents=True, exist_ok=True)
    meta: dict = {"prompt": PROMPT, "seeds": SEEDS, "sizes": {"compact": 64, "latent": 128 if smoke else 512},
                  "flops_per_item": {}, "reference_steps": 4}
    for name, build in (("compact", build_compact), ("latent", build_latent)):
        model = out.parent / "models" / name  # beside the prepared folder: it travels in another call
        shutil.rmtree(model, ignore_errors=True)
        model.mkdir(parents=True)
        build(model)
        for precision in ("fp32", "fp16"):
            export_model(model, out / "engines" / f"{name}-{precision}", precision=precision, force=True)
        meta["flops_per_item"][name] = denoiser_flops(model, meta["sizes"][name], name == "latent")
    halve_folder(out.parent / "models" / "latent")  # diffusers loads it in fp32 or fp16 on the GPU
    # The compact model's images on the CPU provider: what the GPU providers must reproduce.
    settings = SamplerSettings("dpm++", meta["reference_steps"], 7.5)
    masks = [mask_for(64, k) for k in range(len(SEEDS))]
    for precision in ("fp32", "fp16"):
        engine = Engine.load(out / "engines" / f"compact-{precision}", "cpu")
        np.save(out / f"reference-compact-{precision}.npy",
                generate_float(engine, [PROMPT] * len(SEEDS), masks, SEEDS, settings))
    shutil.rmtree(out.parent / "models" / "compact")  # the GPU side needs only its engines and images
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


# -- run (GPU) ----------------------------------------------------------------------------------


def measured_peak(device: str) -> dict:
    """Dense matmul throughput: fp16 on the GPU (tensor cores), fp32 on the CPU; the best of 5 runs."""
    import torch

    n, dtype = (8192, torch.float16) if device == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(6):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            a @ a
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / 10)
    return {"dtype": str(dtype), "n": n, "flops_per_s": 2 * n**3 / best,
            "note": "the share of peak counts the PyTorch denoiser's FLOPs per item; on a shared CPU the "
                    "matmul peak is low and the CPU engine computes some of them once (stages), so shares "
                    "over 100% there mean nothing; on a GPU it is the fp16 tensor-core matmul rate"}


def time_engine(engine, size: int, batch: int, steps: int) -> tuple[float, np.ndarray]:
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    masks, seeds = [mask_for(size, k) for k in range(batch)], list(range(batch))
    generate_float(engine, [PROMPT] * batch, masks, seeds, SamplerSettings("dpm++", 2, 7.5))  # warm-up
    start = time.perf_counter()
    images = generate_float(engine, [PROMPT] * batch, masks, seeds, SamplerSettings("dpm++", steps, 7.5))
    return batch / (time.perf_counter() - start), images


def health(images: np.ndarray) -> dict:
    flat = images.reshape(len(images), -1)
    return {"nan_images": int(np.isnan(flat).any(axis=1).sum()),
            "black_images": int((np.nan_to_num(flat).max(axis=1) < 2 / 255).sum())}


def engine_stage(prepared: Path, meta: dict, provider: str, args, record: dict) -> None:
    from lesionaug.engine import Engine
    from lesionaug.engine.provider_options import ShapeProfile
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    rows = record.setdefault("engines", {})
    for name in ("compact", "latent"):
        size = meta["sizes"][name]
        for precision in ("fp32", "fp16"):
            key = f"{provider}/{name}/{precision}"
            start = time.perf_counter()
            engine = Engine.load(prepared / "engines" / f"{name}-{precision}", provider,
                                 profile=ShapeProfile(1, max(args.batches), size, size))
            row = {"load_seconds": round(time.perf_counter() - start, 1), "describe": engine.describe()}
            masks = [mask_for(size, k) for k in range(len(SEEDS))]
            steps = meta["reference_steps"] if name == "compact" else args.parity_steps
            got = generate_float(engine, [PROMPT] * len(SEEDS), masks, SEEDS, SamplerSettings("dpm++", steps, 7.5))
            if name == "compact":
                reference = np.load(prepared / f"reference-compact-{precision}.npy")
                row["max_abs_diff_vs_cpu_provider"] = float(np.abs(got - reference).max())
            else:
                np.save(Path(args.work) / f"{provider}-latent-{precision}.npy", got)
            for batch in args.batches:
                rate, images = time_engine(engine, size, batch, args.steps)
                achieved = rate * args.steps * 2 * meta["flops_per_item"][name]
                row[f"batch_{batch}"] = {"images_per_s": round(rate, 3),
                                         "share_of_peak": achieved / record["peak"]["flops_per_s"], **health(images)}
            rows[key] = row
            print(key, json.dumps({k: v for k, v in row.items() if k != "describe"}), flush=True)


def diffusers_pipeline(model_dir: Path, dtype, device: str):
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import AutoTokenizer, CLIPTextModel

    from lesionaug.engine.sampler import make_scheduler

    config = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())
    pipe = StableDiffusionControlNetPipeline(
        vae=AutoencoderKL.from_pretrained(model_dir / "vae", torch_dtype=dtype),
        text_encoder=CLIPTextModel.from_pretrained(model_dir / "text_encoder", torch_dtype=dtype),
        tokenizer=AutoTokenizer.from_pretrained(model_dir / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=dtype),
        controlnet=ControlNetModel.from_pretrained(model_dir / "controlnet", torch_dtype=dtype),
        scheduler=make_scheduler("dpm++", config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def run_diffusers(pipe, size: int, seeds: list[int], steps: int) -> np.ndarray:
    import torch
    from PIL import Image

    control = [Image.fromarray(mask_for(size, k).astype(np.uint8) * 255).convert("RGB") for k in range(len(seeds))]
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    with torch.inference_mode():
        return pipe([PROMPT] * len(seeds), image=control, height=size, width=size, num_inference_steps=steps,
                    guidance_scale=7.5, generator=gens, output_type="np").images


def diffusers_stage(prepared: Path, meta: dict, args, record: dict, device: str) -> None:
    """The latent model in diffusers: parity images (fp32 and fp16) and fp16 throughput."""
    import torch

    model = prepared.parent / "models" / "latent"
    size = meta["sizes"]["latent"]
    entry = record.setdefault("diffusers", {"device": device})
    dtypes = {"fp32": torch.float32, "fp16": torch.float16 if device == "cuda" else torch.float32}
    for precision, dtype in dtypes.items():
        pipe = diffusers_pipeline(model, dtype, device)
        images = run_diffusers(pipe, size, SEEDS, args.parity_steps)
        np.save(Path(args.work) / f"diffusers-latent-{precision}.npy", images)
        if precision == "fp16":
            for batch in args.batches:
                run_diffusers(pipe, size, list(range(batch)), 2)
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = run_diffusers(pipe, size, list(range(batch)), args.steps)
                if device == "cuda":
                    torch.cuda.synchronize()
                rate = batch / (time.perf_counter() - start)
                achieved = rate * args.steps * 2 * meta["flops_per_item"]["latent"]
                entry[f"batch_{batch}"] = {"images_per_s": round(rate, 3),
                                           "share_of_peak": achieved / record["peak"]["flops_per_s"], **health(out)}
        del pipe


def parity_stage(args, record: dict) -> None:
    work = Path(args.work)
    for path in sorted(work.glob("*-latent-*.npy")):
        provider, _, precision = path.stem.split("-")
        reference = work / f"diffusers-latent-{precision}.npy"
        if provider != "diffusers" and reference.exists():
            diff = float(np.abs(np.load(path) - np.load(reference)).max())
            record["engines"][f"{provider}/latent/{precision}"]["max_abs_diff_vs_diffusers"] = diff


def cuda_graph_stage(prepared: Path, record: dict) -> None:
    """CUDA graphs forced on the latent fp16 denoiser: what ORT does with the exported graph's CPU nodes."""
    from lesionaug.engine import Engine
    from lesionaug.engine.sampler import SamplerSettings, generate_float

    engine = Engine.load(prepared / "engines" / "latent-fp16", "cuda", cuda_graph="force")
    images = generate_float(engine, [PROMPT], [mask_for(512)], [1], SamplerSettings("dpm++", 3, 7.5))
    record["cuda_graph_forced"] = {"in_use_after_first_run": engine.describe()["cuda_graph"],
                                   "notes": engine.notes, **health(images)}


def run(prepared: Path, args) -> int:
    import onnxruntime as ort
    import torch

    from lesionaug.engine.doctor import collect_diagnostics
    from lesionaug.engine.providers import probe_provider

    meta = json.loads((prepared / "meta.json").read_text())
    device = "cpu" if args.cpu_smoke else "cuda"
    record: dict = {"benchmark": "gpu_check", "cpu_smoke": args.cpu_smoke, "steps": args.steps,
                    "batches": args.batches, "sizes": meta["sizes"], "flops_per_item": meta["flops_per_item"],
                    "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                "torch_cuda": torch.version.cuda, "onnxruntime": ort.__version__,
                                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                    "stages": {}, "providers": {}}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")

    def stage(name: str, fn) -> None:
        start = time.perf_counter()
        try:
            fn()
            error = None
        except Exception as exc:  # noqa: BLE001 - a failed stage is recorded and the rest still run
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
        record["stages"][name] = {"ok": error is None, "seconds": round(time.perf_counter() - start, 1), "error": error}
        save()
        print(f"[{name}] {'ok' if error is None else 'FAILED: ' + error}", flush=True)

    stage("doctor", lambda: record.update(doctor=collect_diagnostics()))
    stage("peak", lambda: record.update(peak=measured_peak(device)))
    for provider in (["cpu"] if args.cpu_smoke else ["tensorrt", "cuda"]):
        works, reason = probe_provider(provider)
        record["providers"][provider] = {"usable": works, "reason": reason}
        if works:
            stage(f"engines_{provider}", lambda p=provider: engine_stage(prepared, meta, p, args, record))
    stage("diffusers", lambda: diffusers_stage(prepared, meta, args, record, device))
    stage("parity", lambda: parity_stage(args, record))
    if not args.cpu_smoke and record["providers"].get("cuda", {}).get("usable"):
        stage("cuda_graph_forced", lambda: cuda_graph_stage(prepared, record))
    print_table(record)
    failed = [name for name, s in record["stages"].items() if not s["ok"]]
    record["summary"] = {"failed_stages": failed}
    save()
    return 1 if failed else 0


def print_table(record: dict) -> None:
    print(f"\n{'engine':<28}{'batch':>6}{'images/s':>11}{'% of peak':>11}")
    rows = [(key, row) for key, row in record.get("engines", {}).items()]
    rows += [("diffusers/latent/fp16", record.get("diffusers", {}))]
    for key, row in rows:
        for batch in record["batches"]:
            cell = row.get(f"batch_{batch}")
            if cell:
                print(f"{key:<28}{batch:>6}{cell['images_per_s']:>11.2f}{100 * cell['share_of_peak']:>10.2f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("prepare", "run"))
    parser.add_argument("--prepared", type=Path, default=Path(".gpu-check/prepared"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--work", default=None, help="folder for image arrays (default: beside --prepared)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--parity-steps", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--cpu-smoke", action="store_true", help="CPU provider, diffusers fp32 on the CPU")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LESIONAUG_CACHE", str(args.prepared.parent / "cache"))
    if args.command == "prepare":
        prepare(args.prepared, args.cpu_smoke)
        return 0
    args.work = args.work or str(args.prepared.parent / "arrays")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    return run(args.prepared, args)


if __name__ == "__main__":
    sys.exit(main())
