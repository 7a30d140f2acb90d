"""Segmenter training augmentation: MONAI transforms, one seeded draw per (seed, sample, epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionaug.errors import UsageError
from lesionaug.evaluate.seg_augment import PairAugmenter, check_seg_augment


def _pairs(n: int = 4, size: int = 32):
    """Images whose red channel is 255 exactly on the mask (an off-centre rectangle), noise elsewhere."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 120, (n, 3, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    for k in range(n):
        masks[k, 4 + k : 14 + k, 3 : 20 - k] = True
    images[:, 0][masks] = 255
    return torch.from_numpy(images), torch.from_numpy(masks)


def test_none_only_scales_to_minus_one_one():
    images = torch.tensor([[[[0, 51], [255, 102]]] * 3], dtype=torch.uint8)  # (1, 3, 2, 2)
    masks = torch.tensor([[[True, False], [False, True]]])
    x, y = PairAugmenter("none", 0)(images, masks, [0], 0)
    # v / 255 * 2 - 1: 0 -> -1, 51 -> -0.6, 255 -> 1, 102 -> -0.2
    assert torch.allclose(x[0, 0], torch.tensor([[-1.0, -0.6], [1.0, -0.2]]))
    assert torch.equal(y, torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]))


def test_flips_give_one_of_the_four_flips_of_the_same_pair():
    images, masks = _pairs()
    x, y = PairAugmenter("flips", 5)(images, masks, [0, 1, 2, 3], 0)
    base = images.float() / 255 * 2 - 1
    for k in range(4):
        candidates = [(base[k], masks[k]), (base[k].flip(2), masks[k].flip(1)), (base[k].flip(1), masks[k].flip(0)),
                      (base[k].flip(1).flip(2), masks[k].flip(0).flip(1))]
        assert any(torch.allclose(x[k], cx) and torch.equal(y[k, 0].bool(), cy) for cx, cy in candidates)


def test_classic_is_reproducible_per_sample_and_epoch_whatever_the_batch():
    images, masks = _pairs()
    augmenter = PairAugmenter("classic", 3)
    x1, y1 = augmenter(images, masks, [0, 1, 2, 3], epoch=2)
    x2, y2 = PairAugmenter("classic", 3)(images, masks, [0, 1, 2, 3], epoch=2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    alone, _ = augmenter(images[2:3], masks[2:3], [2], epoch=2)  # sample 2 in a batch of one
    assert torch.equal(alone[0], x1[2])
    other_epoch, _ = augmenter(images, masks, [0, 1, 2, 3], epoch=3)
    other_seed, _ = PairAugmenter("classic", 4)(images, masks, [0, 1, 2, 3], epoch=2)
    assert not torch.equal(other_epoch, x1) and not torch.equal(other_seed, x1)
    assert set(torch.unique(y1).tolist()) <= {0.0, 1.0} and x1.min() >= -1 and x1.max() <= 1


def test_classic_warps_image_and_mask_together():
    """With the intensity changes left out, the warped red channel still marks the warped mask."""
    images, masks = _pairs()
    augmenter = PairAugmenter("classic", 1)
    augmenter.intensity = []
    for epoch in range(4):
        x, y = augmenter(images, masks, [0, 1, 2, 3], epoch)
        red_on_mask = ((x[:, 0] + 1) / 2 > 0.75) == y[:, 0].bool()
        # Bilinear warping blurs the border by about a pixel; everything else agrees.
        assert red_on_mask.float().mean() > 0.97


def test_unknown_mode_is_a_usage_error():
    assert check_seg_augment("classic") == "classic"
    with pytest.raises(UsageError, match="mixup") as error:
        PairAugmenter("mixup", 0)
    assert error.value.fix == "use one of none, flips, classic"
