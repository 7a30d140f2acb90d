"""Pix2PixHD (Wang et al., CVPR 2018), written from the paper: the baseline the method is compared with.

    config = PIX2PIXHD_SIZES["compact"]
    generator, discriminator = build_generator(config), build_discriminator(config)
    image = generator(label_map(masks, labels))           # (N, 3, R, R) in [-1, 1]

The label map is the lesion mask plus one channel per diagnosis (one-hot) and one per dermoscopic
attribute of the fixed vocabulary in ``dataset/labels.py``, each set inside the lesion (``label_map``): the same visual and textual prompts that
drive the diffusion generator drive this one. Generator G1 (paper section 3.2): c7s1-k, downsampling
convolutions (stride 2), residual blocks, transposed-convolution upsampling, c7s1-3 with tanh. From
256 px up, a local enhancer G2 works at full resolution and G1 at half: G2's front end is summed
with G1's last feature map before G2's residual blocks and upsampling. The discriminators are
70x70-style PatchGANs at 2 or 3 scales (each scale's input average-pooled by 2); each returns its
intermediate features for the feature-matching loss. Instance normalisation throughout.

Losses: LSGAN (least squares) adversarial loss, the discriminator feature-matching loss (L1 between
real and fake features, every layer, every scale) and, only with a local weight file, the VGG19
perceptual loss. Nothing here needs torchvision: ``Vgg19Features`` is written in torch and reads
the ImageNet weights from a ``features.N.weight``-keyed file the user supplies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lesionaug.errors import ConfigError, ModelError
from lesionaug.plan.label_channels import LABEL_CHANNELS
from lesionaug.train.pix2pixhd_config import Pix2PixHDSize


def label_map(masks: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 0/1 masks and (N, C-1) label vectors -> the (N, C, H, W) generator input.

    Each label channel is the mask where the lesion has that label and zero elsewhere, like the
    paper's semantic label maps (one-hot per pixel). Not a constant plane: instance normalisation
    after the first convolution subtracts each channel's mean, so a constant input would be erased.
    """
    return torch.cat([masks, masks * vectors.to(masks.dtype)[:, :, None, None]], dim=1)


# -- generator -------------------------------------------------------------------------------------


def conv_norm_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    """c7s1-k (reflection-padded 7x7) or dk (3x3 stride 2): convolution, instance norm, ReLU."""
    if kernel == 7:
        return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.InstanceNorm2d(cout), nn.ReLU(True)]
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2), nn.InstanceNorm2d(cout), nn.ReLU(True)]


def up_norm_relu(cin: int, cout: int) -> list[nn.Module]:
    """uk: 3x3 transposed convolution, stride 2 (doubles the side exactly), instance norm, ReLU."""
    return [nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=1), nn.InstanceNorm2d(cout), nn.ReLU(True)]


class ResidualBlock(nn.Module):
    """Rk: two reflection-padded 3x3 convolutions with instance norm, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def to_image(channels: int) -> nn.Sequential:
    """c7s1-3 with tanh: the last layer of either generator."""
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, 3, 7), nn.Tanh())


class GlobalGenerator(nn.Module):
    """G1: c7s1-ngf, ``downsamples`` x dk, ``blocks`` x Rk, ``downsamples`` x uk, c7s1-3 (tanh)."""

    def __init__(self, in_channels: int, ngf: int, downsamples: int, blocks: int):
        super().__init__()
        layers = conv_norm_relu(in_channels, ngf, 7)
        for i in range(downsamples):
            layers += conv_norm_relu(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2)
        deepest = ngf * 2**downsamples
        layers += [ResidualBlock(deepest) for _ in range(blocks)]
        for i in reversed(range(downsamples)):
            layers += up_norm_relu(ngf * 2 ** (i + 1), ngf * 2**i)
        self.features = nn.Sequential(*layers)
        self.to_image = to_image(ngf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.features(x))


class LocalEnhancer(nn.Module):
    """G2 around G1: G1 sees the input at half size; its last feature map (before c7s1-3) is added to
    G2's front end (c7s1-k, d2k) before G2's residual blocks, u-k and c7s1-3."""

    def __init__(self, in_channels: int, size: Pix2PixHDSize):
        super().__init__()
        k = size.local_ngf
        if size.ngf != 2 * k:
            raise ConfigError(f"the local enhancer needs ngf = 2 x local_ngf (got {size.ngf} and {k})")
        self.global_generator = GlobalGenerator(in_channels, size.ngf, size.downsamples, size.residual_blocks)
        self.front = nn.Sequential(*conv_norm_relu(in_channels, k, 7), *conv_norm_relu(k, 2 * k, 3, 2))
        self.back = nn.Sequential(*[ResidualBlock(2 * k) for _ in range(size.local_blocks)], *up_norm_relu(2 * k, k))
        self.to_image = to_image(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return self.to_image(self.back(self.front(x) + self.global_generator.features(half)))


def build_generator(size: Pix2PixHDSize, resolution: int | None = None, in_channels: int = LABEL_CHANNELS) -> nn.Module:
    """G1 alone below ``LOCAL_ENHANCER_FROM`` px, G1 inside the local enhancer G2 from there up."""
    resolution = resolution or size.resolution
    if size.uses_local_enhancer(resolution):
        return LocalEnhancer(in_channels, size)
    return GlobalGenerator(in_channels, size.ngf, size.downsamples, size.residual_blocks)


# -- discriminators --------------------------------------------------------------------------------


class PatchDiscriminator(nn.Module):
    """A PatchGAN (C64-C128-C256-C512 for 3 layers, 4x4 kernels, LeakyReLU 0.2, no norm on the first):
    returns every layer's output, the last being the per-patch real/fake score map."""

    def __init__(self, in_channels: int, ndf: int, layers: int):
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        width = ndf
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            out = min(ndf * 2**i, 512)
            blocks.append(nn.Sequential(nn.Conv2d(width, out, 4, stride, 2), nn.InstanceNorm2d(out),
                                        nn.LeakyReLU(0.2, True)))
            width = out
        blocks.append(nn.Sequential(nn.Conv2d(width, 1, 4, 1, 2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


class MultiScaleDiscriminator(nn.Module):
    """``scales`` PatchGANs; scale s sees the (label map, image) pair average-pooled s times by 2."""

    def __init__(self, in_channels: int, ndf: int, layers: int, scales: int):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, layers) for _ in range(scales))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i, discriminator in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(discriminator(x))
        return results


def build_discriminator(size: Pix2PixHDSize, in_channels: int = LABEL_CHANNELS) -> MultiScaleDiscriminator:
    """Conditional: each scale sees the label map concatenated with a real or generated image."""
    if size.scales not in (1, 2, 3):
        raise ConfigError(f"Pix2PixHD uses 1 to 3 discriminator scales, not {size.scales}")
    return MultiScaleDiscriminator(in_channels + 3, size.ndf, size.d_layers, size.scales)


# -- losses ----------------------------------------------------------------------------------------

FEATURE_MATCHING_WEIGHT = 10.0  # lambda of the paper's equation (4)
VGG_WEIGHT = 10.0
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # relu1_1 .. relu5_1, deeper layers weigh more


def lsgan_loss(outputs: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017) summed over scales: (D - 1)^2 for real, D^2 for fake."""
    target = 1.0 if real else 0.0
    return sum(((scale[-1].float() - target) ** 2).mean() for scale in outputs)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """Equation (4): L1 between each discriminator layer's features of real and generated pairs (the
    score maps left out), averaged over the layers of a scale and summed over the scales."""
    total = 0.0
    for fake_scale, real_scale in zip(fake, real):
        layers = len(fake_scale) - 1
        for f, r in zip(fake_scale[:-1], real_scale[:-1]):
            total = total + F.l1_loss(f.float(), r.detach().float()) / layers
    return total


# VGG19's convolutional part as ImageNet-trained weight files key it ("features.N.weight/bias"):
# channels of each 3x3 convolution, "M" for 2x2 max pooling.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
VGG19_TAPS = (1, 6, 11, 20, 29)  # indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in that Sequential
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Vgg19Features(nn.Module):
    """VGG19's convolutional layers up to relu5_1, returning the five tapped activations. Frozen."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for entry in VGG19_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, int(entry), 3, padding=1), nn.ReLU(inplace=False)]
                width = int(entry)
        self.features = nn.Sequential(*layers[: VGG19_TAPS[-1] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """``image`` in [-1, 1] -> the five activations."""
        x = ((image + 1) / 2 - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_TAPS:
                taps.append(x)
        return taps


def load_vgg19(path: str | Path) -> Vgg19Features:
    """VGG19 features with the ImageNet weights of a local file (safetensors, or a torch state dict
    read with ``weights_only``), keyed ``features.N.weight`` as torchvision's ``vgg19`` saves them."""
    path = Path(path)
    fix = "pass a VGG19 ImageNet weight file (torchvision's vgg19 state dict as .pth or .safetensors)"
    if not path.is_file():
        raise ModelError("VGG weight file not found", path=path, fix=fix)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelError(f"unreadable VGG weight file ({type(exc).__name__})", path=path, fix=fix) from None
    if not isinstance(state, dict):
        raise ModelError("the VGG weight file holds no state dict", path=path, fix=fix)
    vgg = Vgg19Features()
    wanted = vgg.features.state_dict()
    missing = [f"features.{k}" for k in wanted if f"features.{k}" not in state]
    if missing:
        raise ModelError(f"the VGG weight file lacks {missing[0]} (not VGG19?)", path=path, fix=fix)
    try:
        vgg.features.load_state_dict({k: state[f"features.{k}"] for k in wanted}, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the VGG weight file does not fit VGG19 ({str(exc).splitlines()[0]})", path=path,
                         fix=fix) from None
    return vgg


def vgg_loss(vgg: Vgg19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Perceptual loss: weighted L1 between VGG19 activations of generated and real images."""
    with torch.no_grad():
        real_taps = vgg(real.float())
    fake_taps = vgg(fake.float())
    return sum(w * F.l1_loss(f, r) for w, f, r in zip(VGG_LAYER_WEIGHTS, fake_taps, real_taps))


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "build_discriminator", "build_generator",
    "count_parameters", "feature_matching_loss", "label_map", "load_vgg19", "lsgan_loss", "vgg_loss",
]
