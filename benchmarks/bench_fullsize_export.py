"""Full-size graphs: a Stable Diffusion 1.5 shaped UNet + ControlNet, exported fp32 and fp16 with ONNX
external data, verified, loaded in ONNX Runtime on the CPU; sizes and times to benchmarks/results/.

A benchmark, not a CI test: at full width it writes about 5 GB (fp32) and 2.5 GB (fp16) of weights
and needs about 20 GB of memory. The networks are randomly initialised from the published configs
(written out below; nothing is downloaded): ``runwayml/stable-diffusion-v1-5`` (UNet, VAE, scheduler),
``openai/clip-vit-large-patch14`` (text encoder) and ``lllyasviel/sd-controlnet-*`` (the ControlNet:
the UNet's encoder plus the conditioning embedding 16, 32, 96, 256). Random weights are enough: the
graph, its size and ONNX Runtime's handling of it do not depend on trained values, and the fp16
denoiser is compared with the fp32 one on the same inputs.

``--width-scale 0.25`` scales every channel count (depth, heads and the token length stay), for a
machine where the full size does not fit; the result file records the scale. External data is
forced at every scale (``export_model(external_data=True)``), so the >2 GB path is what runs.

    PYTHONPATH=src python benchmarks/bench_fullsize_export.py [--width-scale 1.0] [--size 512]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
PROMPT = "a dermoscopic image of melanoma with pigment network"

# runwayml/stable-diffusion-v1-5 unet/config.json (the ControlNet copies its encoder).
SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 768, "attention_head_dim": 8,
}
# lllyasviel/sd-controlnet-* config.json: the fields beyond the UNet's.
SD15_CONTROLNET_EXTRA = {"conditioning_embedding_out_channels": [16, 32, 96, 256],
                         "controlnet_conditioning_channel_order": "rgb"}
# openai/clip-vit-large-patch14 text_config (SD 1.5's text encoder).
CLIP_L_TEXT = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
               "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
               "projection_dim": 768}
# runwayml/stable-diffusion-v1-5 vae/config.json
SD15_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 512,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu",
            "norm_num_groups": 32, "scaling_factor": 0.18215}
SD15_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
                  "set_alpha_to_one": False, "steps_offset": 1, "num_train_timesteps": 1000}


def scaled_configs(scale: float) -> dict[str, dict]:
    """The configs with every channel count times ``scale`` (kept a multiple of the norm groups)."""
    groups = 32 if scale >= 1 else 16

    def width(c: int) -> int:
        return max(groups, int(round(c * scale / groups)) * groups)

    unet = {**SD15_UNET, "block_out_channels": [width(c) for c in SD15_UNET["block_out_channels"]],
            "norm_num_groups": groups}
    hidden = max(64, int(round(CLIP_L_TEXT["hidden_size"] * scale / 64)) * 64)
    unet["cross_attention_dim"] = hidden
    text = {**CLIP_L_TEXT, "hidden_size": hidden, "intermediate_size": 4 * hidden, "projection_dim": hidden}
    vae = {**SD15_VAE, "block_out_channels": [width(c) for c in SD15_VAE["block_out_channels"]],
           "norm_num_groups": groups}
    return {"unet": unet, "controlnet": {**unet, **SD15_CONTROLNET_EXTRA}, "text_encoder": text, "vae": vae,
            "scheduler": SD15_SCHEDULER}


def build_model(folder: Path, configs: dict[str, dict]) -> dict:
    """A latent model folder (lesionaug's layout) with random weights from ``configs``."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lesionaug.train.networks import build_word_tokenizer

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_word_tokenizer([PROMPT], max_length=CLIP_L_TEXT["max_position_embeddings"])
    tokenizer.save_pretrained(folder / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"], bos_token_id=tokenizer.bos_token_id,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    text.save_pretrained(folder / "text_encoder")
    unet = UNet2DConditionModel(**configs["unet"])
    unet.save_pretrained(folder / "unet")
    accepted = inspect.signature(ControlNetModel.__init__).parameters  # the UNet-only fields are not
    controlnet = ControlNetModel(**{k: v for k, v in configs["controlnet"].items() if k in accepted})
    with torch.no_grad():  # untrained zero convolutions would make the ControlNet a no-op
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.01)
    controlnet.save_pretrained(folder / "controlnet")
    AutoencoderKL(**configs["vae"]).save_pretrained(folder / "vae")
    DDIMScheduler(**configs["scheduler"]).save_pretrained(folder / "scheduler")
    card = {"format": "lesionaug.model/1", "base": "sd15-shaped (random weights, from configs)", "latent": True,
            "resolution": 512, "size_multiple": 64, "vae_scale_factor": 8, "prompt_template": PROMPT}
    (folder / "lesionaug.json").write_text(json.dumps(card, indent=2))
    return {name: sum(p.numel() for p in m.parameters())
            for name, m in (("unet", unet), ("controlnet", controlnet), ("text_encoder", text))}


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def export_precision(model_dir: Path, engine_dir: Path, precision: str) -> dict:
    from lesionaug.export.run import export_model

    start = time.perf_counter()
    result = export_model(model_dir, engine_dir, precision=precision, external_data=True, force=True)
    files = {p.name: p.stat().st_size for p in sorted(engine_dir.glob("*.onnx*"))}
    return {"export_seconds": round(time.perf_counter() - start, 1), "files_bytes": files,
            "denoiser_bytes": sum(v for k, v in files.items() if k.startswith("denoiser.onnx")),
            "verification": {name: g.get("verification") for name, g in result.graphs.items()},
            "peak_rss_gb": peak_rss_gb()}


def denoiser_inputs(card, size: int, batch: int):
    import torch

    g = torch.Generator().manual_seed(0)
    side = size // card.scale
    return (torch.randn((batch, card.channels, side, side), generator=g), torch.full((batch,), 500.0),
            torch.randn((batch, card.token_length, card.hidden_size), generator=g),
            (torch.rand((batch, 3, size, size), generator=g) > 0.5).float(), torch.tensor([1.0]))


def load_and_run(engine_dir: Path, size: int, batch: int) -> tuple[dict, np.ndarray]:
    from lesionaug.engine import Engine

    start = time.perf_counter()
    engine = Engine.load(engine_dir, "cpu")
    loaded = time.perf_counter() - start
    inputs = denoiser_inputs(engine.card, size, batch)
    start = time.perf_counter()
    out = engine.denoise(*inputs).numpy()
    call = time.perf_counter() - start
    return ({"load_seconds": round(loaded, 1), "denoiser_call_seconds": round(call, 2),
             "denoiser_batch": batch, "size": size, "peak_rss_gb": peak_rss_gb()}, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width-scale", type=float, default=1.0, help="channel counts times this (1.0: SD 1.5)")
    parser.add_argument("--size", type=int, default=512, help="image side of the timed denoiser call")
    parser.add_argument("--batch", type=int, default=2, help="denoiser batch (2: one guided job)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="folder for the model and engines (temp, removed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tag = "" if args.width_scale == 1 else f"_w{args.width_scale:g}"
    out = args.out or ROOT / "results" / f"fullsize_export{tag}.json"
    work = args.work or Path(tempfile.mkdtemp(prefix="lesionaug-fullsize-"))
    os.environ.setdefault("LESIONAUG_CACHE", str(work / "cache"))
    record: dict = {"benchmark": "fullsize_export", "width_scale": args.width_scale,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "stages": {}}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, default=str) + "\n")

    try:
        configs = scaled_configs(args.width_scale)
        record["configs"] = {k: {n: v for n, v in c.items() if "channels" in n or n in ("hidden_size",)}
                             for k, c in configs.items()}
        start = time.perf_counter()
        record["parameters"] = build_model(work / "model", configs)
        record["stages"]["build_seconds"] = round(time.perf_counter() - start, 1)
        save()
        outputs = {}
        for precision in ("fp32", "fp16"):
            record[precision] = export_precision(work / "model", work / f"engine-{precision}", precision)
            save()
            run, outputs[precision] = load_and_run(work / f"engine-{precision}", args.size, args.batch)
            record[precision].update(run)
            save()
            print(json.dumps({precision: record[precision]}, default=str), flush=True)
        ref, half = outputs["fp32"], outputs["fp16"]
        record["fp16_vs_fp32"] = {
            "max_abs_diff": float(np.abs(half - ref).max()),
            "max_abs_fp32": float(np.abs(ref).max()),
            "relative_rms": float(np.sqrt(np.mean((half - ref) ** 2)) / np.sqrt(np.mean(ref**2))),
            "denoiser_bytes_ratio": round(record["fp16"]["denoiser_bytes"] / record["fp32"]["denoiser_bytes"], 3),
            "cpu_call_time_ratio": round(record["fp16"]["denoiser_call_seconds"]
                                         / record["fp32"]["denoiser_call_seconds"], 2),
        }
        save()
        print(json.dumps(record["fp16_vs_fp32"]), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
