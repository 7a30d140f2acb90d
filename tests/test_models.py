"""models.py: the compact model's shapes and tokenizer, the ControlNet's conditioning embedding, SD bases."""

from __future__ import annotations

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")

from tiny_sd import write_tiny_sd

from lesionaug.errors import ConfigError, ModelError
from lesionaug.train.networks import (
    EOS,
    build_compact_model,
    build_controlnet,
    build_word_tokenizer,
    conditioning_channels_for,
    load_base,
    predict,
)

PROMPTS = ["a dermoscopic image of melanoma with pigment network and streaks on the back"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def test_word_tokenizer_round_trips_through_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_word_tokenizer(PROMPTS)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.model_max_length == tokenizer.model_max_length >= 16
    ids = loaded(["A dermoscopic image of melanoma, zebra"], padding="max_length", truncation=True).input_ids[0]
    assert len(ids) == loaded.model_max_length
    tokens = loaded.convert_ids_to_tokens(ids)
    # bos, words (lower-cased, the comma its own token, the unknown word as <unk>), eos, then padding
    assert tokens[:9] == ["<bos>", "a", "dermoscopic", "image", "of", "melanoma", ",", "<unk>", EOS]
    assert set(tokens[9:]) == {"<pad>"}


def test_compact_text_encoder_pools_at_eos():
    parts = build_compact_model("tiny", 32, PROMPTS)
    cfg = parts.text_encoder.config
    assert cfg.eos_token_id == parts.tokenizer.eos_token_id != 2  # 2 would select legacy argmax pooling
    assert cfg.max_position_embeddings == parts.tokenizer.model_max_length
    assert parts.unet.config.cross_attention_dim == cfg.hidden_size


def test_compact_model_is_pixel_space_and_its_controlnet_keeps_full_resolution():
    parts = build_compact_model("tiny", 32, PROMPTS)
    assert not parts.latent and parts.vae_scale_factor is None
    assert parts.unet.config.in_channels == parts.unet.config.out_channels == 3
    assert parts.size_multiple == 2 ** (len(parts.unet.config.block_out_channels) - 1)
    controlnet = build_controlnet(parts)
    control = torch.zeros(1, 3, 32, 32)
    embedding = controlnet.controlnet_cond_embedding(control)
    assert embedding.shape[-2:] == (32, 32)  # no downsampling: pixels, not latents
    text = parts.text_encoder(parts.tokenizer(PROMPTS, return_tensors="pt").input_ids)[0]
    x = torch.randn(1, 3, 32, 32)
    down, mid = controlnet(x, 10, text, controlnet_cond=control, return_dict=False)
    out = parts.unet(x, 10, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    assert out.shape == x.shape


def test_the_small_model_feeds_the_pooled_prompt_to_every_block_of_unet_and_controlnet():
    """Cross-attention at the lowest level alone leaves the trained small model blind to its prompt
    (issue 17): ``pooled_prompt`` also adds a projection of the prompt's mean token state to the
    timestep embedding."""
    prompts = [PROMPTS[0], "a dermoscopic image of dermatofibroma"]
    parts = build_compact_model("small", 32, prompts, pooled_prompt=True)
    controlnet = build_controlnet(parts)
    assert parts.unet.config.class_embed_type == controlnet.config.class_embed_type == "projection"
    assert parts.unet.config.projection_class_embeddings_input_dim == parts.text_encoder.config.hidden_size
    # from_unet copies the UNet's projection into the ControlNet, as it does its encoder.
    for (name, a), b in zip(parts.unet.class_embedding.state_dict().items(), controlnet.class_embedding.state_dict().values()):
        assert torch.equal(a, b), name
    ids = parts.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        states = parts.text_encoder(ids)[0]
        x, control, t = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1), torch.zeros(2, 3, 32, 32), torch.tensor([500, 500])
        out = predict(parts.unet, controlnet, x, t, states, control)
        down, mid = controlnet(x, t, states, controlnet_cond=control, class_labels=states.mean(1), return_dict=False)
        by_hand = parts.unet(x, t, states, class_labels=states.mean(1), down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample
        zeros = torch.zeros_like(states.mean(1))
        down, mid = controlnet(x, t, states, controlnet_cond=control, class_labels=zeros, return_dict=False)
        without = parts.unet(x, t, states, class_labels=zeros, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample
    assert torch.allclose(out, by_hand, atol=1e-6)
    assert (out - without).abs().mean() > 1e-3  # the pooled prompt is not a no-op
    # Without the option (every size's default) the UNet keeps cross-attention only, as before.
    assert build_compact_model("small", 32, PROMPTS).unet.config.class_embed_type is None


def test_conditioning_embedding_downsamples_once_per_vae_halving():
    assert conditioning_channels_for(None) == (16,)
    assert conditioning_channels_for(8) == (16, 32, 96, 256)
    assert len(conditioning_channels_for(4)) == 3


def test_unknown_model_size_is_a_usage_error():
    from lesionaug.errors import UsageError

    with pytest.raises(UsageError):
        build_compact_model("huge", 64, PROMPTS)


def test_tiny_sd_loads_like_a_hub_checkpoint(tiny_sd):
    parts = load_base(str(tiny_sd))
    assert parts.latent and parts.vae_scale_factor == 8 and parts.size_multiple == 32
    assert parts.noise_scheduler.config.beta_schedule == "scaled_linear"
    controlnet = build_controlnet(parts)
    assert controlnet.controlnet_cond_embedding(torch.zeros(1, 3, 64, 64)).shape[-2:] == (8, 8)


def test_sd_folder_missing_a_part_names_it(tiny_sd, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(ModelError, match="vae/config.json is missing") as info:
        load_base(str(broken))
    assert info.value.exit_code == 4


def test_pickle_weights_are_refused_unless_allowed(tiny_sd, tmp_path):
    import shutil

    from diffusers import UNet2DConditionModel

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_sd, pickled)
    unet = UNet2DConditionModel.from_pretrained(pickled / "unet")
    shutil.rmtree(pickled / "unet")
    unet.save_pretrained(pickled / "unet", safe_serialization=False)
    assert (pickled / "unet" / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(ModelError, match="pickle weights") as info:
        load_base(str(pickled))
    assert "--allow-pickle" in info.value.one_line()
    assert load_base(str(pickled), allow_pickle=True).unet.config.in_channels == 4


def test_hub_id_offline_says_how_to_pass_a_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE") as info:
        load_base("lesionaug-test/no-such-model")
    assert "--base DIR" in info.value.one_line()


def test_missing_local_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_base(str(tmp_path / "nowhere" / "sd"))
