"""Image realism without borrowed weights: a classifier two-sample test and colour distances in Lab.

Classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017): a small CNN is trained from
scratch to tell sample A from sample B, and its k-fold cross-validated accuracy is the measure.
0.5 means the classifier cannot tell them apart; 1.0 means every image gives itself away. The same
test on real training against real test images is the reference: what "indistinguishable" looks
like at this sample size (it can fall below 0.5, since a classifier fitted to noise is wrong on
held-out folds more often than chance).

Colour distances say *what* differs: per channel of CIE Lab (D65), the 1-D Wasserstein distance
between the real and the generated images' pixels, inside and outside the lesion mask. Pooled
pixels can match while every generated image has the same colour, so the colour spread adds the
variety across images: the standard deviation of the images' mean Lab, real against generated
(a ratio of 1 means the generated images vary as much as the real ones; a generator that gives
every image the average skin scores near 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from lesionaug.errors import ConfigError

LAB_CHANNELS = ("L", "a", "b")
REGIONS = ("inside", "outside")
# sRGB (D65) -> XYZ, IEC 61966-2-1; the D65 white point of the XYZ -> Lab step (Y normalised to 1).
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65_WHITE = _SRGB_TO_XYZ.sum(axis=1)
_LAB_EPSILON = (6 / 29) ** 3
_LAB_KAPPA = (29 / 6) ** 2 / 3


@dataclass(frozen=True)
class RealismConfig:
    """How the two-sample test is run; validated on construction."""

    folds: int = 5
    image_size: int = 64  # images are resized to this square size before the classifier sees them
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 2e-3
    seed: int = 0
    max_pixels: int = 4096  # pixels kept per image and region for the colour distances (strided)

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"the two-sample test needs at least 2 folds, got {self.folds}")
        for name in ("image_size", "epochs", "batch_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.image_size < 8:
            raise ConfigError(f"the classifier's image size must be at least 8 px, got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TwoSampleResult:
    """Cross-validated accuracy of a classifier telling two samples apart."""

    accuracy: float | None  # mean over folds; None when a sample is too small to test
    std: float | None  # standard deviation over folds
    fold_accuracies: tuple[float, ...] = ()
    n_per_sample: int = 0


# -- colour ------------------------------------------------------------------------------------------


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours: uint8 (0-255) or float (0-1) arrays of shape (..., 3)."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"expected colours in the last axis (..., 3), got shape {rgb.shape}")
    values = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    # 1. Undo the sRGB transfer curve.
    linear = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    # 2. Linear RGB -> XYZ, relative to the D65 white.
    xyz = linear @ _SRGB_TO_XYZ.T / _D65_WHITE
    # 3. XYZ -> Lab.
    f = np.where(xyz > _LAB_EPSILON, np.cbrt(xyz), xyz * _LAB_KAPPA + 4 / 29)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """The inverse of ``srgb_to_lab``: uint8 sRGB of Lab colours (..., 3); out-of-gamut colours are clipped."""
    lab = np.asarray(lab, dtype=np.float64)
    if lab.shape[-1:] != (3,):
        raise ValueError(f"expected colours in the last axis (..., 3), got shape {lab.shape}")
    # 1. Lab -> XYZ (relative to the D65 white).
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, (f - 4 / 29) / _LAB_KAPPA) * _D65_WHITE
    # 2. XYZ -> linear RGB, clipped to the gamut; 3. the sRGB transfer curve.
    linear = np.clip(xyz @ np.linalg.inv(_SRGB_TO_XYZ).T, 0.0, 1.0)
    values = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


@dataclass
class ColourSample:
    """Lab pixels of a set of images, inside and outside each image's lesion mask, gathered image by image."""

    max_pixels: int = 4096
    pixels: dict = field(default_factory=lambda: {region: [] for region in REGIONS})
    means: dict = field(default_factory=lambda: {region: [] for region in REGIONS})  # one mean Lab per image

    def add(self, image: np.ndarray, mask: np.ndarray) -> None:
        """Keep at most ``max_pixels`` evenly strided Lab pixels of each region of one image."""
        if image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
        lab = srgb_to_lab(image[..., :3])
        for region, chosen in zip(REGIONS, (mask, ~mask)):
            values = lab[chosen]
            step = max(1, -(-len(values) // self.max_pixels))
            self.pixels[region].append(values[::step].astype(np.float32))
            if len(values):
                self.means[region].append(values.mean(axis=0))

    def region(self, name: str) -> np.ndarray:
        parts = self.pixels[name]
        return np.concatenate(parts) if parts else np.empty((0, 3), np.float32)


def colour_distances(real: ColourSample, generated: ColourSample) -> dict:
    """Per region and Lab channel, the Wasserstein distance between real and generated pixels
    (in Lab units; None where a region has no pixels in either set)."""
    from scipy.stats import wasserstein_distance

    distances = {}
    for region in REGIONS:
        a, b = real.region(region), generated.region(region)
        distances[region] = {
            channel: (float(wasserstein_distance(a[:, c], b[:, c])) if len(a) and len(b) else None)
            for c, channel in enumerate(LAB_CHANNELS)
        }
    return distances


def colour_spread(real: ColourSample, generated: ColourSample) -> dict:
    """Per region and Lab channel, how much the images' mean colour varies: the standard deviation
    across images of each image's mean, for the real and the generated images, and their ratio
    (generated / real; None where a set has fewer than two images with that region or the real
    images do not vary)."""
    spread = {}
    for region in REGIONS:
        stds = []
        for sample in (real, generated):
            means = np.asarray(sample.means[region], np.float64).reshape(-1, 3)
            stds.append(means.std(axis=0, ddof=1) if len(means) >= 2 else None)
        spread[region] = {}
        for c, channel in enumerate(LAB_CHANNELS):
            r, g = (None if s is None else float(s[c]) for s in stds)
            ratio = g / r if r is not None and g is not None and r > 0 else None
            spread[region][channel] = {"real": r, "generated": g, "ratio": ratio}
    return spread


# -- classifier two-sample test ----------------------------------------------------------------------


def to_classifier_input(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB uint8 image resized (bilinear) to ``size`` x ``size``, as the test stores it."""
    from PIL import Image

    image = np.ascontiguousarray(image[..., :3])
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _classifier(width: int = 16):
    import torch

    def block(c_in: int, c_out: int):
        return [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out), torch.nn.ReLU(),
                torch.nn.MaxPool2d(2)]

    return torch.nn.Sequential(
        *block(3, width), *block(width, 2 * width), *block(2 * width, 4 * width),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4 * width, 1),
    )  # fmt: skip


def _fold_of(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number for each of n items: a seeded permutation dealt round-robin."""
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % folds
    return fold


def _fit_and_score(train_x, train_y, test_x, test_y, config: RealismConfig, seed: int) -> float:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _classifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        rng = np.random.default_rng(seed)
        x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
        model.train()
        for _ in range(config.epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for start in range(0, len(x), config.batch_size):
                chosen = order[start : start + config.batch_size]
                if len(chosen) < 2:  # batch norm needs two images
                    continue
                batch = x[chosen]
                if rng.random() < 0.5:  # no orientation is special in dermoscopy: random flips
                    batch = batch.flip(3)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch)[:, 0], y[chosen])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            predicted = model(torch.from_numpy(test_x))[:, 0] > 0
    return float((predicted.numpy() == (test_y > 0.5)).mean())


def two_sample_test(
    first: Sequence[np.ndarray], second: Sequence[np.ndarray], config: RealismConfig = RealismConfig()
) -> TwoSampleResult:
    """Cross-validated accuracy of a small CNN trained from scratch to tell ``first`` from ``second``.

    Both samples are cut to the same size (a seeded choice), so chance is exactly 0.5; each fold
    holds out the same share of both. Deterministic for a seed on a given machine.
    """
    rng = np.random.default_rng(config.seed)
    n = min(len(first), len(second))
    folds = min(config.folds, n)
    if folds < 2:
        return TwoSampleResult(None, None, (), n)
    # 1. Balanced samples, resized, scaled to [-1, 1], channels first.
    chosen = [sorted(rng.choice(len(sample), n, replace=False)) for sample in (first, second)]
    images = [to_classifier_input(sample[i], config.image_size) for sample, idx in zip((first, second), chosen)
              for i in idx]  # fmt: skip
    x = (np.stack(images).astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()
    y = np.repeat(np.array([0.0, 1.0], dtype=np.float32), n)
    # 2. Stratified folds: each sample dealt into folds separately.
    fold = np.concatenate([_fold_of(n, folds, rng), _fold_of(n, folds, rng)])
    # 3. Train on k-1 folds, score the held-out one.
    accuracies = []
    for k in range(folds):
        held = fold == k
        accuracies.append(_fit_and_score(x[~held], y[~held], x[held], y[held], config, config.seed * 1000 + k))
    return TwoSampleResult(
        float(np.mean(accuracies)), float(np.std(accuracies, ddof=1)), tuple(accuracies), n
    )


def realism_section(generated: TwoSampleResult, reference: TwoSampleResult, distances: dict,
                    config: RealismConfig, spread: dict | None = None) -> dict:
    """The ``image_realism`` data of ``quality``'s report and ``--json``."""
    return {
        "status": "ok",
        "c2st_accuracy": generated.accuracy,
        "c2st_std": generated.std,
        "c2st_fold_accuracies": list(generated.fold_accuracies),
        "c2st_n_per_sample": generated.n_per_sample,
        "reference_c2st_accuracy": reference.accuracy,
        "reference_c2st_std": reference.std,
        "reference_c2st_fold_accuracies": list(reference.fold_accuracies),
        "reference_n_per_sample": reference.n_per_sample,
        "colour_distances": distances,
        "colour_spread": spread,
        "config": config.to_dict(),
    }
