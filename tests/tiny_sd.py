"""A tiny latent Stable Diffusion folder built from configs, for tests that must not download.

``write_tiny_sd(path)`` lays out what a hub checkpoint such as ``runwayml/stable-diffusion-v1-5``
holds (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``model_index.json``),
saved with each class's own ``save_pretrained`` (safetensors), so loading it exercises the same code
path a real base goes through. The tokenizer is a hand-written byte-level CLIP BPE vocabulary
(every byte alone and word-final, plus a few merges), which ``CLIPTokenizer`` reads from
``vocab.json`` + ``merges.txt``.

Sizes: latent channels 4, VAE scale factor 8 (four VAE blocks), UNet with two downsamplings, so
image sides must be multiples of 32.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_SD_MAX_LENGTH = 32
TINY_SD_SIZE_MULTIPLE = 32  # VAE factor 8 x UNet downsampling 4


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table that byte-level BPE vocabularies use."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def _clip_vocab() -> tuple[dict[str, int], list[str]]:
    symbols = sorted(_byte_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    # A handful of merges so the BPE model really merges ("image" -> "im" "age</w>" ...).
    merges = ["i m", "a g", "ag e</w>", "o f</w>", "l e", "s i", "o n</w>", "le si"]
    for merge in merges:
        vocab["".join(merge.split())] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def write_tiny_sd(path: str | Path) -> Path:
    """Write a tiny latent Stable Diffusion folder at ``path`` and return it."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    tok_dir = path / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    vocab, merges = _clip_vocab()
    (tok_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=TINY_SD_MAX_LENGTH)
    tokenizer.save_pretrained(tok_dir)

    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TINY_SD_MAX_LENGTH,
        projection_dim=32,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModel(text_config).save_pretrained(path / "text_encoder", safe_serialization=True)

    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    ).save_pretrained(path / "unet", safe_serialization=True)

    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    ).save_pretrained(path / "vae", safe_serialization=True)

    DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
    ).save_pretrained(path / "scheduler")

    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return path
