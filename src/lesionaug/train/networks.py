"""The generator's networks: a compact pixel-space model built from nothing, or a Stable Diffusion base.

Both come back as ``ModelParts`` holding diffusers/transformers classes, so training, the model
folder and export treat them the same way. The compact model is a small ``UNet2DConditionModel``
on RGB pixels scaled to [-1, 1], a small ``CLIPTextModel`` and a word-level tokenizer built from
the dataset's prompt vocabulary; its ControlNet's conditioning embedding brings the mask to the UNet's grid.

With ``patch_size`` p > 1 the compact UNet works on p x p pixel patches stacked as channels
(``pixel_unshuffle``: 3 x 128 x 128 pixels are 12 x 64 x 64 for p = 2), the way "simple diffusion"
(Hoogeboom et al., 2023) and DiT's patches cut the cost of high-resolution pixel diffusion: the
rearrangement is a fixed permutation of the pixels, so the diffusion process, the noise schedule
and the sampler stay in pixel space and see nothing of it (``to_patches``/``from_patches`` wrap every
UNet and ControlNet call), while every layer runs on a grid p times smaller per side. The
ControlNet's conditioning embedding downsamples the mask p times to that grid.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesionaug.dataset.labels import ATTRIBUTES, DIAGNOSES
from lesionaug.errors import ConfigError, ModelError, UsageError
from lesionaug.plan.prompts import GENERIC_PROMPT
from lesionaug.safe_weights import refuse_pickle_weights, use_safetensors

MODEL_SIZES = ("tiny", "small", "base")

# Widths per compact size. Attention only at the coarsest levels: pixel-space self-attention at
# full resolution costs (H*W)^2 and buys little for textures this small. "small" (the CPU default)
# works at 128 px on pixels, the first 3/4 of each stage's steps at 64 px (``low_res_fraction``):
# about 1.4x the time of 64 px alone. On the CPU budget that beat 128 px on 2 x 2 patches
# (--patch-size 2: noisier images that follow their masks less) and 64 px pairs upscaled to the
# data's size (docs/measurements.md, issue 17).
COMPACT_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "resolution": 64,
        "patch_size": 1,
        "low_res_fraction": 0.0,
        "block_out_channels": (16, 32, 64),
        "attention": (False, False, True),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "heads": 4,
        "text_hidden": 32,
        "text_layers": 2,
    },
    "small": {
        "resolution": 128,
        "patch_size": 1,
        "low_res_fraction": 0.75,
        "block_out_channels": (16, 32, 64, 64),
        "attention": (False, False, False, True),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "heads": 4,
        "text_hidden": 64,
        "text_layers": 2,
    },
    "base": {
        "resolution": 256,
        "patch_size": 1,
        "low_res_fraction": 0.0,
        "block_out_channels": (128, 256, 256, 512),
        "attention": (False, False, True, True),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "heads": 8,
        "text_hidden": 256,
        "text_layers": 4,
    },
}

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
# CLIPTextModel pools at the first eos; eos id 2 would select its legacy argmax pooling instead.
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
_WORD = re.compile(r"\w+(?:-\w+)*|[^\w\s]")


@dataclass
class ModelParts:
    """The networks of one generator and how their tensors are shaped."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    vae: Any | None = None
    controlnet: Any | None = None
    base: str = "compact"
    model_size: str | None = None

    @property
    def latent(self) -> bool:
        return self.vae is not None

    @property
    def vae_scale_factor(self) -> int | None:
        if self.vae is None:
            return None
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def patch_size(self) -> int:
        """Pixels per side of one UNet cell of a pixel model (1 for latent models): see the module doc."""
        return 1 if self.latent else patch_size_of(int(self.unet.config.in_channels))

    @property
    def grid_factor(self) -> int:
        """Pixels per side of one cell of the UNet's input grid: the VAE factor or the patch size."""
        return self.vae_scale_factor or self.patch_size

    @property
    def sample_channels(self) -> int:
        """Channels of what the sampler denoises: the latent's, or 3 for pixels (patches or not)."""
        return int(self.unet.config.in_channels) // self.patch_size**2

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the UNet's downsampling times the VAE's or the patch."""
        unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return unet_factor * self.grid_factor

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)


def prompt_words(text: str) -> list[str]:
    """The word-level tokenizer's split: lower-cased words (hyphens kept) and punctuation marks."""
    return _WORD.findall(text.lower())


def build_word_tokenizer(prompts: list[str], max_length: int | None = None):
    """A word-level tokenizer over ``prompts`` plus every label name, loadable by AutoTokenizer."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    texts = [GENERIC_PROMPT, *DIAGNOSES.values(), *ATTRIBUTES.values(), "with, and on the of in a", *prompts]
    words = sorted({w for t in texts for w in prompt_words(t)})
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words:
        vocab.setdefault(w, len(vocab))
    if max_length is None:
        longest = max((len(prompt_words(p)) for p in [GENERIC_PROMPT, *prompts]), default=0) + 2
        max_length = max(16, 8 * math.ceil(longest / 8))

    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_WORD.pattern), behavior="removed", invert=True)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=max_length,
        padding_side="right",
    )


PREDICTION_TYPES = ("epsilon", "v_prediction")


def patch_size_of(channels: int) -> int:
    """The patch side p of a pixel UNet taking ``channels`` = 3 p^2 channels."""
    side = math.isqrt(max(channels // 3, 1))
    if 3 * side * side != channels:
        raise ModelError(f"a pixel model's UNet takes 3 x p x p channels (3, 12, 27...), not {channels}",
                         fix="set latent: true in lesionaug.json if this is a latent model")
    return side


def to_patches(x: Any, patch: int) -> Any:
    """(B, C, H, W) -> (B, C p^2, H/p, W/p): each p x p block of pixels becomes channels (a permutation)."""
    import torch.nn.functional as F

    return x if patch == 1 else F.pixel_unshuffle(x, patch)


def from_patches(x: Any, patch: int) -> Any:
    """The inverse of ``to_patches``."""
    import torch.nn.functional as F

    return x if patch == 1 else F.pixel_shuffle(x, patch)


def predict(unet: Any, controlnet: Any | None, sample: Any, timestep: Any, states: Any, control: Any = None,
            patch: int = 1, conditioning_scale: Any = 1.0) -> Any:
    """One denoising prediction as diffusers' ControlNet pipeline makes it (guess mode off): the
    ControlNet's residuals (when there is one) added into the UNet, on ``patch`` x ``patch`` patches
    of ``sample`` when ``patch`` > 1; pixels (or latents) in, the same shape out. Training, the sample
    grids and the exported denoiser graph all call this."""
    model_in = to_patches(sample, patch)
    residuals: dict[str, Any] = {}
    if controlnet is not None:
        down, mid = controlnet(model_in, timestep, encoder_hidden_states=states, controlnet_cond=control,
                               conditioning_scale=conditioning_scale, guess_mode=False, return_dict=False,
                               **pooled_prompt(controlnet, states))
        residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    noise = unet(model_in, timestep, encoder_hidden_states=states, return_dict=False, **residuals,
                 **pooled_prompt(unet, states))[0]
    return from_patches(noise, patch)


def pooled_prompt(network: Any, states: Any) -> dict[str, Any]:
    """The prompt's mean token state as ``class_labels``, for a network that adds its projection to the
    timestep embedding (``class_embed_type="projection"``: the compact model's global prompt pathway,
    which reaches every ResNet block); nothing for any other network."""
    if getattr(network.config, "class_embed_type", None) != "projection":
        return {}
    return {"class_labels": states.mean(dim=1)}


def compact_scheduler(prediction_type: str = "v_prediction", zero_terminal_snr: bool = True):
    """The compact model's noise schedule: cosine betas over 1000 steps, sampled from the last one.

    ``v_prediction`` makes the network predict the clean image where the noise swamps it, so an
    early model already gives the mean image for its mask; ``zero_terminal_snr`` makes the last
    step pure noise (what sampling starts from), and "trailing" spacing starts sampling there.
    """
    from diffusers import DDPMScheduler

    if prediction_type not in PREDICTION_TYPES:
        raise UsageError(f"unknown prediction type {prediction_type!r}", fix=f"use one of {', '.join(PREDICTION_TYPES)}")
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        clip_sample=True,
        rescale_betas_zero_snr=zero_terminal_snr,
        timestep_spacing="trailing" if zero_terminal_snr else "leading",
    )


def build_compact_model(
    size: str,
    resolution: int,
    prompts: list[str],
    *,
    prediction_type: str = "v_prediction",
    zero_terminal_snr: bool = True,
    patch_size: int | None = None,
    pooled_prompt: bool = False,
) -> ModelParts:
    """A pixel-space UNet, text encoder and word tokenizer of ``size``, randomly initialised;
    ``patch_size`` None takes the size's default. ``pooled_prompt`` True adds a projection of the
    prompt's mean token state to the timestep embedding (fed by the function ``pooled_prompt`` above),
    a global pathway beside the cross-attention of the lowest levels."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size not in COMPACT_SIZES:
        raise UsageError(f"unknown model size {size!r}", fix=f"use one of {', '.join(MODEL_SIZES)}")
    spec = COMPACT_SIZES[size]
    tokenizer = build_word_tokenizer(prompts)
    hidden = spec["text_hidden"]
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        projection_dim=hidden,
        num_hidden_layers=spec["text_layers"],
        num_attention_heads=max(1, hidden // 16),
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = CLIPTextModel(text_config)

    attention = spec["attention"]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    patch = patch_size or spec["patch_size"]
    unet = UNet2DConditionModel(
        sample_size=resolution // patch,
        in_channels=3 * patch * patch,
        out_channels=3 * patch * patch,
        block_out_channels=spec["block_out_channels"],
        layers_per_block=spec["layers_per_block"],
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=spec["norm_num_groups"],
        cross_attention_dim=hidden,
        attention_head_dim=spec["heads"],
        **({"class_embed_type": "projection", "projection_class_embeddings_input_dim": hidden}
           if pooled_prompt else {}),
    )
    # Pixel space at low resolution: the cosine schedule keeps coarse structure learnable.
    scheduler = compact_scheduler(prediction_type, zero_terminal_snr)
    return ModelParts(unet, text_encoder, tokenizer, scheduler, base="compact", model_size=size)


def conditioning_channels_for(grid_factor: int | None) -> tuple[int, ...]:
    """ControlNet conditioning-embedding widths: one stride-2 conv per extra entry, so the mask
    (full image resolution) lands on the UNet's input grid: log2 of the patch size for pixels
    (none without patches), log2(f) for latents."""
    widths = (16, 32, 96, 256)
    downsamplings = int(math.log2(grid_factor)) if grid_factor else 0
    if downsamplings >= len(widths):
        widths = widths + (256,) * (downsamplings + 1 - len(widths))
    return widths[: downsamplings + 1]


def build_controlnet(parts: ModelParts):
    """A ControlNet initialised from the (trained or pretrained) UNet's encoder weights."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(
        parts.unet,
        conditioning_embedding_out_channels=conditioning_channels_for(parts.grid_factor),
    )


# What a diffusers Stable Diffusion folder must hold: subfolder -> files any one of which will do.
SD_LAYOUT: dict[str, tuple[str, ...]] = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("vocab.json", "tokenizer.json"),
}
_WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def check_sd_folder(root: Path, allow_pickle: bool = False) -> None:
    """Refuse a folder that is not a diffusers Stable Diffusion layout, naming what is missing, or that
    holds pickle weights anywhere (``safe_weights.py``) unless ``allow_pickle``."""
    for sub, files in SD_LAYOUT.items():
        if not any((root / sub / f).is_file() for f in files):
            raise ModelError(
                f"not a Stable Diffusion folder: {sub}/{' or '.join(files)} is missing",
                path=root,
                fix="pass a diffusers layout (unet/, vae/, text_encoder/, tokenizer/) or --base compact",
            )
    for sub, stem in _WEIGHTS.items():
        folder = root / sub
        safe = list(folder.glob(f"{stem}*.safetensors")) + list(folder.glob(f"{stem}*.safetensors.index.json"))
        pickled = list(folder.glob(f"{stem}*.bin")) + list(folder.glob(f"{stem}*.bin.index.json"))
        if not safe and not pickled:
            raise ModelError(
                f"not a Stable Diffusion folder: {sub}/ has no {stem}.safetensors weights",
                path=folder,
                fix="save the model with save_pretrained(..., safe_serialization=True)",
            )
    refuse_pickle_weights(root, allow_pickle)


def quiet_library_progress() -> None:
    """transformers and diffusers draw tqdm bars on load/save; lesionaug reports its own progress."""
    import diffusers.utils.logging
    import transformers.utils.logging

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def load_base(base: str, allow_pickle: bool = False) -> ModelParts:
    """Load a Stable Diffusion base (local diffusers folder or hub id) through diffusers' from_pretrained."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet_library_progress()
    root = Path(base).expanduser()
    local = root.is_dir()
    if local:
        check_sd_folder(root, allow_pickle)
        source = str(root)
    elif root.exists():
        raise ConfigError("--base must be a folder, a hub id or 'compact'", path=root, fix="pass the model's folder")
    elif not _HUB_ID.match(base):
        raise ConfigError(
            "base model folder not found", path=root, fix="pass an existing diffusers folder, a hub id, or compact"
        )
    else:
        source = base
    kwargs = {"use_safetensors": use_safetensors(allow_pickle), "local_files_only": _offline()}
    check_not_sdxl(source, root if local else None, kwargs["local_files_only"])
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=kwargs["local_files_only"])
    except (OSError, ValueError) as exc:
        if local:
            raise ModelError(f"cannot load the base model ({_first_line(exc)})", path=root) from None
        how = f"download it where there is network (hf download {base} --local-dir DIR) and pass --base DIR"
        if _offline():
            raise ModelError(f"hub id {base!r} is not in the local cache and HF_HUB_OFFLINE=1", fix=how) from None
        if not allow_pickle and "safetensors" in str(exc).lower():
            raise ModelError(f"hub model {base!r} has no safetensors weights", fix="pass --allow-pickle if you trust it") from None
        raise ModelError(f"cannot load hub model {base!r} ({_first_line(exc)})", fix=how) from None
    try:
        scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", local_files_only=kwargs["local_files_only"])
    except (OSError, ValueError):
        # The schedule every SD 1.x/2.x checkpoint was trained with.
        scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)
    if unet.config.in_channels != vae.config.latent_channels:
        raise ModelError(
            f"unet takes {unet.config.in_channels} channels but the vae makes {vae.config.latent_channels}",
            path=root if local else None,
            fix="pass a text-to-image Stable Diffusion base (not an inpainting or depth model)",
        )
    return ModelParts(unet, text_encoder, tokenizer, scheduler, vae=vae, base=base if not local else str(root.resolve()))


def check_not_sdxl(source: str, path: Path | None, local_files_only: bool) -> None:
    """Refuse a base whose UNet wants SDXL's extra conditioning (pooled text and image sizes), from its
    config alone, before any weights load: the training loop and the exported graphs pass none."""
    from diffusers import UNet2DConditionModel

    try:
        config = UNet2DConditionModel.load_config(source, subfolder="unet", local_files_only=local_files_only)
    except (OSError, ValueError):
        return  # loading the weights reports what is missing
    if config.get("addition_embed_type") == "text_time":
        raise ConfigError(
            "the base is Stable Diffusion XL (its UNet takes extra 'text_time' conditioning), which lesionaug "
            "does not train", path=path, fix="use a Stable Diffusion 1.x or 2.x base, or --base compact")


def use_sdpa_attention(*networks: Any) -> None:
    """PyTorch's fused scaled-dot-product attention (diffusers' AttnProcessor2_0) in every attention
    layer: the memory-efficient kernels on a GPU, the same numbers as the plain processor elsewhere."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for network in networks:
        if network is not None and hasattr(network, "set_attn_processor"):
            network.set_attn_processor(AttnProcessor2_0())


def load_controlnet(path: str | Path, parts: ModelParts, allow_pickle: bool = False):
    """A ControlNet saved with ``save_pretrained``, checked against the base it will steer."""
    from diffusers import ControlNetModel

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelError("not a ControlNet folder (no config.json)", path=folder,
                         fix="pass a folder written by ControlNetModel.save_pretrained (a model folder's controlnet/)")
    refuse_pickle_weights(folder, allow_pickle)
    try:
        controlnet = ControlNetModel.from_pretrained(folder, use_safetensors=use_safetensors(allow_pickle),
                                                     local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the ControlNet ({_first_line(exc)})", path=folder,
                         fix="save it with safe_serialization=True, or pass --allow-pickle if you trust it") from None
    unet, cn = parts.unet.config, controlnet.config
    for key in ("in_channels", "cross_attention_dim", "block_out_channels"):
        mine, theirs = getattr(cn, key), getattr(unet, key)
        if _as_list(mine) != _as_list(theirs):
            raise ModelError(f"the ControlNet's {key} ({mine}) does not match the base's UNet ({theirs})",
                             path=folder, fix="pass a ControlNet trained on this base")
    expected = list(conditioning_channels_for(parts.grid_factor))
    if len(cn.conditioning_embedding_out_channels or ()) != len(expected):
        raise ModelError("the ControlNet's conditioning embedding does not downsample the mask to the latent grid",
                         path=folder, fix="pass a ControlNet trained on this base")
    return controlnet


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
