"""Training-time augmentation of segmenter pairs with MONAI transforms: the baseline synthetic data must beat.

``--seg-augment`` chooses one of:

- ``none``: pairs as they are;
- ``flips``: left-right and up-down flips, each with probability 1/2;
- ``classic`` (the default): the flips, 90-degree rotations, an affine rotation (up to 15 degrees) and
  scale (up to 15 %), an elastic deformation, then intensity changes on the image alone (contrast
  gamma, brightness shift, a per-channel scale that moves the hue, Gaussian noise). A synthetic-data
  gain over this is a gain over what any segmentation pipeline already does.

Real and synthetic pairs go through the same transforms. The image and its mask are warped together
as one 4-channel tensor (bilinear, the mask thresholded at 1/2 afterwards), so they never disagree.
Every draw comes from one ``numpy.random.RandomState`` seeded from (segmenter seed, sample index,
epoch): a sample gets the same augmentation in every run, whatever the batch it lands in.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Sequence

import numpy as np

from lesionaug.errors import UsageError

if TYPE_CHECKING:
    import torch

SEG_AUGMENTATIONS = ("none", "flips", "classic")
AUGMENT_STREAM = 0xA06  # keeps these draws apart from the other uses of the segmenter seed


def check_seg_augment(mode: str) -> str:
    if mode not in SEG_AUGMENTATIONS:
        raise UsageError(f"unknown --seg-augment {mode!r}", fix=f"use one of {', '.join(SEG_AUGMENTATIONS)}")
    return mode


def build_transforms(mode: str) -> tuple[list, list]:
    """(spatial transforms for image+mask, intensity transforms for the image) of one mode."""
    from monai import transforms as mt

    check_seg_augment(mode)
    if mode == "none":
        return [], []
    spatial = [mt.RandFlip(prob=0.5, spatial_axis=1), mt.RandFlip(prob=0.5, spatial_axis=0)]
    if mode == "flips":
        return spatial, []
    spatial += [
        mt.RandRotate90(prob=0.5, max_k=3, spatial_axes=(0, 1)),
        mt.RandAffine(
            prob=0.5, rotate_range=math.radians(15), scale_range=0.15, mode="bilinear", padding_mode="reflection"
        ),
        mt.Rand2DElastic(
            prob=0.25, spacing=(16, 16), magnitude_range=(1.0, 2.0), mode="bilinear", padding_mode="reflection"
        ),
    ]
    intensity = [
        mt.RandAdjustContrast(prob=0.3, gamma=(0.75, 1.35)),
        mt.RandShiftIntensity(prob=0.5, offsets=0.08),  # brightness
        mt.RandScaleIntensity(prob=0.5, factors=0.1, channel_wise=True),  # colour balance, hue-like
        mt.RandGaussianNoise(prob=0.3, mean=0.0, std=0.02),
    ]
    return spatial, intensity


@contextmanager
def _plain_tensors_one_thread():
    """MONAI transforms without MetaTensor bookkeeping, on one torch thread; both restored afterwards.

    A 64 px warp is too small to split across threads: with two, each transform took 20-50 times
    longer on a busy 2-core machine (the threads wait for each other); MetaTensors cost another 4x.
    """
    import torch
    from monai.data import get_track_meta, set_track_meta

    before, threads = get_track_meta(), torch.get_num_threads()
    set_track_meta(False)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        set_track_meta(before)
        torch.set_num_threads(threads)


def sample_state(seed: int, sample: int, epoch: int) -> np.random.RandomState:
    """The random state of one sample's augmentation in one epoch."""
    return np.random.RandomState(np.random.MT19937(np.random.SeedSequence([AUGMENT_STREAM, seed, sample, epoch])))


class PairAugmenter:
    """Augments batches of (uint8 image, bool mask) pairs into the network's inputs and targets."""

    def __init__(self, mode: str, seed: int):
        self.mode = check_seg_augment(mode)
        self.seed = seed
        self.spatial, self.intensity = build_transforms(mode)

    def __call__(
        self, images: "torch.Tensor", masks: "torch.Tensor", samples: Sequence[int], epoch: int | Sequence[int]
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """uint8 (B,3,S,S) and bool (B,S,S) -> float images in [-1, 1] (B,3,S,S) and {0,1} masks (B,1,S,S).

        ``epoch``: the pass of the whole batch, or of each sample."""
        import torch

        with _plain_tensors_one_thread():
            x = images.float().div_(255.0)
            y = masks.unsqueeze(1).float()
            if self.mode == "none":
                return x.mul_(2.0).sub_(1.0), y
            epochs = [epoch] * len(samples) if isinstance(epoch, int) else list(epoch)
            pairs = [
                self.augment_one(x[k], y[k], sample_state(self.seed, int(sample), int(epochs[k])))
                for k, sample in enumerate(samples)
            ]
            return torch.stack([p[0] for p in pairs]).mul_(2.0).sub_(1.0), torch.stack([p[1] for p in pairs])

    def augment_one(
        self, image: "torch.Tensor", mask: "torch.Tensor", state: np.random.RandomState
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """One pair, image in [0, 1] (3,S,S) and mask (1,S,S), through every transform in order."""
        import torch

        both = torch.cat([image, mask])
        for transform in self.spatial:
            transform.set_random_state(state=state)
            both = torch.as_tensor(transform(both))
        image, mask = both[:3], (both[3:] > 0.5).float()
        for transform in self.intensity:
            transform.set_random_state(state=state)
            image = torch.as_tensor(transform(image))
        return image.clamp_(0.0, 1.0), mask


__all__ = ["SEG_AUGMENTATIONS", "PairAugmenter", "build_transforms", "check_seg_augment", "sample_state"]
