"""Did the generator copy its training images? Nearest real training image of each synthetic image.

Distances are measured in the encoder features of the segmenter trained on the real pairs alone
(the first seed's real-only segmenter): the output of each resolution level of the encoder,
averaged to a 4x4 grid (so where things are still counts), scaled to unit length per level and
concatenated. The network learned these features from the real training pairs only, for telling
lesion from skin; the synthetic images it is asked to judge never shaped them.

Two checks say whether the space can show a copy:

- copy retrieval: every real training image, with sensor-like noise added, must find itself as its
  nearest training image (``copy_retrieval`` counts how many do);
- the reference: a real test image is a new image of the same distribution, so its distance to its
  nearest training image is what "not a copy" looks like. A synthetic image closer to a training
  image than almost every test image is (below the test distances' 5th percentile) is a candidate
  copy; about 5% of synthetic images land there by chance when the generator does not copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

POOL = 4  # each level's output is averaged to POOL x POOL cells
BATCH = 64
COPY_NOISE_STD = 8.0  # grey levels of the noise added to the copies of the retrieval check
REFERENCE_PERCENTILE = 5.0
FEATURE_SPACE = (
    "encoder features of the real-only segmenter (first seed): each resolution level's output averaged "
    "to a 4x4 grid, unit length per level, concatenated; Euclidean distance"
)


def encoder_layers(network: "torch.nn.Module", size: int) -> list["torch.nn.Module"]:
    """The convolution whose output is each encoder level's last, found by one probe pass.

    A U-Net's encoder is every convolution run before the last one at the coarsest resolution
    (the bottleneck); the decoder follows. The last convolution at each size before that point is
    the level's output. This holds for MONAI's UNet, BasicUNet and AttentionUnet alike.
    """
    import torch

    calls: list[tuple[torch.nn.Module, int]] = []

    def record(module, _inputs, output):
        calls.append((module, int(output.shape[-2] * output.shape[-1])))

    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(record) for m in convs]
    try:
        network.eval()
        with torch.no_grad():
            network(torch.zeros((1, 3, size, size), device=next(network.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    coarsest = min(area for _, area in calls)
    bottleneck = max(i for i, (_, area) in enumerate(calls) if area == coarsest)
    last_per_size: dict[int, torch.nn.Module] = {}
    for module, area in calls[: bottleneck + 1]:
        last_per_size[area] = module
    return [last_per_size[area] for area in sorted(last_per_size, reverse=True)]


def encoder_features(segmenter, images: np.ndarray) -> np.ndarray:
    """Unit-length feature vectors (N, D) float32 of uint8 images (N, 3, S, S) at the segmenter's size."""
    import torch
    import torch.nn.functional as F

    network = segmenter.network
    layers = encoder_layers(network, images.shape[-1])
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, k=k: captured.__setitem__(k, out))
        for k, layer in enumerate(layers)
    ]
    out = []
    try:
        network.eval()
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + BATCH]))
                network(batch.float().div_(255.0).mul_(2.0).sub_(1.0).to(segmenter.device))
                parts = [
                    F.normalize(F.adaptive_avg_pool2d(captured[k].float(), POOL).flatten(1), dim=1)
                    for k in range(len(layers))
                ]
                out.append((torch.cat(parts, dim=1) / math.sqrt(len(layers))).cpu().numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def nearest(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each query's nearest reference (rows are feature vectors)."""
    q, r = queries.astype(np.float64), references.astype(np.float64)
    squared = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * q @ r.T
    index = squared.argmin(axis=1)
    return index, np.sqrt(np.maximum(squared[np.arange(len(q)), index], 0.0))


def noisy_copies(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The images with seeded Gaussian noise (``COPY_NOISE_STD`` grey levels), as uint8."""
    rng = np.random.default_rng([seed, 0xC0B1])
    noisy = images.astype(np.float32) + rng.normal(0.0, COPY_NOISE_STD, images.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Memorisation:
    """Nearest training image of every synthetic and test image, and the retrieval self-check."""

    synthetic_nearest: np.ndarray  # index into the training images
    synthetic_distance: np.ndarray
    test_distance: np.ndarray
    copies_found: int
    n_train: int

    def closest(self, n: int) -> list[int]:
        """The synthetic images nearest to a training image, closest first."""
        return [int(i) for i in np.argsort(self.synthetic_distance, kind="stable")[:n]]

    def summary(self, synthetic_ids: Sequence[str], train_ids: Sequence[str], n_closest: int) -> dict:
        reference = float(np.percentile(self.test_distance, REFERENCE_PERCENTILE))
        below = int(np.sum(self.synthetic_distance < reference))
        return {
            "feature_space": FEATURE_SPACE,
            "n_synthetic": int(len(self.synthetic_distance)),
            "n_train": self.n_train,
            "n_test": int(len(self.test_distance)),
            "copy_retrieval": [self.copies_found, self.n_train],
            "synthetic_to_train": _quantiles(self.synthetic_distance),
            "test_to_train": _quantiles(self.test_distance),
            "test_5th_percentile": reference,
            "synthetic_below_test_5th_percentile": [below, int(len(self.synthetic_distance))],
            "closest": [
                {
                    "synthetic_id": synthetic_ids[i],
                    "train_id": train_ids[int(self.synthetic_nearest[i])],
                    "distance": float(self.synthetic_distance[i]),
                }
                for i in self.closest(n_closest)
            ],
        }


def _quantiles(values: np.ndarray) -> dict:
    return {name: float(np.percentile(values, q)) for name, q in (("min", 0), ("p05", 5), ("median", 50), ("max", 100))}


def check_memorisation(segmenter, train: np.ndarray, synthetic: np.ndarray, test: np.ndarray, seed: int = 0):
    """Distances from synthetic and test images to their nearest training image (uint8 N,3,S,S arrays)."""
    train_features = encoder_features(segmenter, train)
    copy_index, _ = nearest(encoder_features(segmenter, noisy_copies(train, seed)), train_features)
    synthetic_index, synthetic_distance = nearest(encoder_features(segmenter, synthetic), train_features)
    _, test_distance = nearest(encoder_features(segmenter, test), train_features)
    return Memorisation(
        synthetic_nearest=synthetic_index,
        synthetic_distance=synthetic_distance,
        test_distance=test_distance,
        copies_found=int(np.sum(copy_index == np.arange(len(train)))),
        n_train=len(train),
    )


__all__ = ["FEATURE_SPACE", "Memorisation", "check_memorisation", "encoder_features", "encoder_layers", "nearest"]
