"""Pix2PixHD: the networks' shapes and losses, the label map, training a few steps and resuming bit-exactly."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")

from lesionaug.dataset.index import load_dataset
from lesionaug.dataset.labels import Labels
from lesionaug.errors import ConfigError, ModelError, UsageError
from lesionaug.plan.label_channels import ATTRIBUTE_CHANNELS, DIAGNOSIS_CHANNELS, LABEL_CHANNELS, label_vector
from lesionaug.train.pix2pixhd_config import PIX2PIXHD_SIZES, Pix2PixHDConfig
from lesionaug.train.pix2pixhd_networks import (
    GlobalGenerator,
    LocalEnhancer,
    Vgg19Features,
    build_discriminator,
    build_generator,
    feature_matching_loss,
    label_map,
    load_vgg19,
    lsgan_loss,
)
from lesionaug.train.pix2pixhd_run import linear_decay, train_pix2pixhd

TINY = PIX2PIXHD_SIZES["tiny"]


def test_label_vector_is_one_hot_diagnosis_then_attribute_flags():
    vector = label_vector(Labels(diagnosis="mel", attributes=("streaks", "globules")))
    assert len(vector) == LABEL_CHANNELS - 1 == len(DIAGNOSIS_CHANNELS) + len(ATTRIBUTE_CHANNELS)
    diagnosis, attributes = vector[: len(DIAGNOSIS_CHANNELS)], vector[len(DIAGNOSIS_CHANNELS) :]
    assert diagnosis == [1.0 if d == "mel" else 0.0 for d in DIAGNOSIS_CHANNELS]
    assert attributes == [1.0 if a in ("streaks", "globules") else 0.0 for a in ATTRIBUTE_CHANNELS]
    assert label_vector(None) == [0.0] * (LABEL_CHANNELS - 1)
    assert label_vector(Labels(diagnosis="not-a-code")) == [0.0] * (LABEL_CHANNELS - 1)


def test_label_map_puts_the_mask_first_and_the_labels_inside_the_lesion():
    masks = torch.zeros(1, 1, 4, 4)
    masks[0, 0, 1:3, 1:3] = 1
    vectors = torch.tensor([label_vector(Labels(diagnosis="nv"))])
    x = label_map(masks, vectors)
    assert x.shape == (1, LABEL_CHANNELS, 4, 4)
    assert torch.equal(x[0, 0], masks[0, 0])
    nv = 1 + DIAGNOSIS_CHANNELS.index("nv")
    assert torch.equal(x[0, nv], masks[0, 0]) and float(x[0, 1:].sum()) == 4.0


def test_labels_survive_the_first_instance_norm():
    # A constant label plane would be erased by instance normalisation; a label inside the lesion is not.
    generator = build_generator(TINY, 32).eval()
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 8:24, 8:24] = 1
    with torch.no_grad():
        a = generator(label_map(masks, torch.tensor([label_vector(Labels(diagnosis="mel"))])))
        b = generator(label_map(masks, torch.tensor([label_vector(Labels(diagnosis="nv"))])))
    assert float((a - b).abs().max()) > 1e-4


def test_global_generator_below_256_and_local_enhancer_from_256():
    assert isinstance(build_generator(TINY, 32), GlobalGenerator)
    enhancer = build_generator(TINY, 256)
    assert isinstance(enhancer, LocalEnhancer)
    x = torch.zeros(1, LABEL_CHANNELS, 256, 256)
    y = enhancer(x).detach()
    assert y.shape == (1, 3, 256, 256) and float(y.abs().max()) <= 1.0  # tanh output


def test_multiscale_discriminator_returns_features_at_each_halved_scale():
    d = build_discriminator(TINY)
    out = d(torch.zeros(2, LABEL_CHANNELS + 3, 32, 32))
    assert len(out) == TINY.scales == 2
    assert len(out[0]) == TINY.d_layers + 2  # first layer, d_layers normed layers, the score map
    assert out[0][-1].shape[1] == 1
    # scale 2 sees a 16x16 input: its first layer (stride 2, padding 2, kernel 4) gives 9x9, not 17x17
    assert out[0][0].shape[-1] == 17 and out[1][0].shape[-1] == 9


def test_lsgan_and_feature_matching_losses_by_hand():
    real = [[torch.full((1, 1, 2, 2), 2.0), torch.ones(1, 1, 2, 2)]]
    fake = [[torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)]]
    assert float(lsgan_loss(real, True)) == 0.0  # (1 - 1)^2
    assert float(lsgan_loss(fake, True)) == 4.0  # (3 - 1)^2
    assert float(lsgan_loss(fake, False)) == 9.0  # 3^2
    assert float(feature_matching_loss(fake, real)) == 2.0  # |0 - 2| over the one feature layer, score map left out


def test_linear_decay_holds_then_falls_to_zero():
    factor = linear_decay(Pix2PixHDConfig(model_size="tiny", steps=10).resolved())
    assert [factor(s) for s in (0, 4)] == [1.0, 1.0]
    assert [factor(s) for s in (5, 6, 10)] == [1.0, 0.8, 0.0]


def test_config_refuses_bad_sizes_and_resolutions():
    with pytest.raises(UsageError, match="unknown Pix2PixHD size"):
        Pix2PixHDConfig(model_size="huge")
    with pytest.raises(UsageError, match="multiple of 4"):
        Pix2PixHDConfig(model_size="tiny", resolution=30)
    assert Pix2PixHDConfig(model_size="tiny").resolved().steps == 20
    assert Pix2PixHDConfig(vgg_weights="vgg.pth").losses() == ["lsgan", "feature_matching", "vgg19_perceptual"]


def test_vgg19_loads_torchvision_keyed_weights_and_refuses_others(tmp_path):
    from safetensors.torch import save_file

    reference = Vgg19Features()
    path = tmp_path / "vgg19.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in reference.features.state_dict().items()}, str(path))
    vgg = load_vgg19(path)
    assert torch.equal(vgg.features[0].weight, reference.features[0].weight)
    assert [t.shape[1] for t in vgg(torch.zeros(1, 3, 32, 32))] == [64, 128, 256, 512, 512]
    bad = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(bad))
    with pytest.raises(ModelError, match="lacks features.0.weight"):
        load_vgg19(bad)
    with pytest.raises(ModelError, match="not found"):
        load_vgg19(tmp_path / "missing.pth")


def file_hash(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained_pair(demo_isic2018, tmp_path_factory):
    """A 4-step run straight through, and the same run stopped at step 2 and resumed."""
    index = load_dataset(demo_isic2018)
    root = tmp_path_factory.mktemp("p2p")
    straight = Pix2PixHDConfig(model_size="tiny", steps=4, batch_size=2, num_samples=2, checkpoint_every=2)
    result = train_pix2pixhd(index, root / "straight", straight)
    train_pix2pixhd(index, root / "resumed", straight)  # first the whole run, then cut it back to step 2
    return index, root, result


def test_trains_a_few_steps_and_writes_a_model_folder(trained_pair):
    _, root, result = trained_pair
    folder = root / "straight"
    card = json.loads((folder / "lesionaug.json").read_text())
    assert card["generator"] == "pix2pixhd" and card["losses"] == ["lsgan", "feature_matching"]
    assert card["noise_input"] is False and card["train_ids"] and card["split_fingerprint"]
    assert len(card["label_channels"]) == LABEL_CHANNELS
    assert (folder / "generator" / "model.safetensors").is_file()
    assert (folder / "samples" / "step-4.png").is_file() and (folder / "checkpoints" / "step-2").is_dir()
    assert result["steps_done"] == 4 and len(result["stages"][0]["losses"]) == 4
    assert all(loss == loss for loss in result["stages"][0]["losses"])  # no NaN


def test_resume_is_bit_exact(trained_pair, tmp_path):
    import shutil

    index, root, _ = trained_pair
    resumed = root / "resumed"
    shutil.rmtree(resumed / "checkpoints" / "step-4")
    (resumed / "lesionaug.json").unlink()
    for name in ("generator", "discriminator"):
        (resumed / name / "model.safetensors").unlink()
    config = Pix2PixHDConfig(model_size="tiny", steps=4, batch_size=2, num_samples=2, checkpoint_every=2)
    result = train_pix2pixhd(index, resumed, config, resume=True)
    assert result["resumed_from_step"] == 2 and result["stages"][0]["steps_run"] == 2
    for name in ("generator", "discriminator"):
        assert file_hash(resumed / name / "model.safetensors") == file_hash(root / "straight" / name / "model.safetensors")


def test_a_different_run_in_the_folder_is_refused(trained_pair):
    index, root, _ = trained_pair
    with pytest.raises(ConfigError, match="different training run"):
        train_pix2pixhd(index, root / "straight", Pix2PixHDConfig(model_size="tiny", steps=5, batch_size=2))


def run_train(*args):
    from typer.testing import CliRunner

    from lesionaug.cli._app import app

    return CliRunner().invoke(app, ["train", *map(str, args)])


def test_cli_trains_pix2pixhd_and_reports_json(demo_isic2018, tmp_path):
    out = tmp_path / "gan"
    result = run_train(demo_isic2018, "--generator", "pix2pixhd", "--model-size", "tiny", "--steps", "2",
                       "--batch-size", "2", "--out", out, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["generator"] == "pix2pixhd" and data["steps_done"] == 2
    assert json.loads((out / "lesionaug.json").read_text())["generator"] == "pix2pixhd"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "gan"], "is not one of"),
        (["--generator", "pix2pixhd", "--base-steps", "3"], "--base-steps applies to the diffusion generator"),
        (["--vgg-weights", "vgg.pth"], "--vgg-weights applies to --generator pix2pixhd only"),
        (["--generator", "pix2pixhd", "--model-size", "small"], "unknown Pix2PixHD size"),
        (["--model-size", "published"], "is a pix2pixhd size"),
    ],
)
def test_cli_refuses_options_of_the_other_generator(demo_isic2018, tmp_path, args, message):
    result = run_train(demo_isic2018, "--out", tmp_path / "m", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_bf16_mixed_precision_trains_through_accelerate(demo_isic2018, tmp_path):
    # The GPU path's autocast and loss scaling, on the CPU where bf16 autocast exists (fp16 needs CUDA).
    config = Pix2PixHDConfig(model_size="tiny", steps=2, batch_size=2, num_samples=2, mixed_precision="bf16")
    result = train_pix2pixhd(load_dataset(demo_isic2018), tmp_path / "bf16", config)
    losses = result["stages"][0]["losses"] + result["stages"][1]["losses"]
    assert len(losses) == 4 and all(loss == loss and abs(loss) < 1e6 for loss in losses)
    card = json.loads((tmp_path / "bf16" / "lesionaug.json").read_text())
    assert card["training"]["mixed_precision"] == "bf16"
