"""The memorisation check: encoder features of a segmenter, nearest training images, copies found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionaug.evaluate.memorisation import (
    check_memorisation,
    encoder_features,
    encoder_layers,
    nearest,
)
from lesionaug.evaluate.segmenter import Segmenter, SegmenterConfig, build_network


def _segmenter(arch: str = "unet", size: int = 32, channels=(8, 16, 32)) -> Segmenter:
    config = SegmenterConfig(arch=arch, image_size=size, channels=channels, device="cpu")
    torch.manual_seed(0)
    return Segmenter(build_network(config), config, "cpu", [])


@pytest.mark.parametrize(
    ("arch", "widths"),
    # MONAI's UNet halves the size in every down layer, then runs its bottom layer (the widest) at the
    # coarsest size; BasicUNet and AttentionUnet have one block per size, the first at full size.
    [("unet", [16, 32, 64, 256]), ("basicunet", [16, 32, 64, 128, 256]), ("attentionunet", [16, 32, 64, 128, 256])],
)
def test_encoder_layers_are_one_per_level_down_to_the_bottleneck(arch, widths):
    segmenter = _segmenter(arch, 64, (16, 32, 64, 128, 256))
    layers = encoder_layers(segmenter.network, 64)
    assert [layer.out_channels for layer in layers] == widths
    features = encoder_features(segmenter, np.zeros((2, 3, 64, 64), np.uint8))
    # Each level is averaged to 4x4 cells: 16 values per channel, and the vector has unit length.
    assert features.shape == (2, 16 * sum(widths))
    assert np.linalg.norm(features, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_nearest_by_hand():
    queries = np.array([[0.0, 0.0], [3.0, 4.0]])
    references = np.array([[0.0, 1.0], [3.0, 0.0]])
    # query 0: distances 1 and 3 -> reference 0 at 1; query 1: sqrt(9 + 9) = 4.243 and 4 -> reference 1 at 4
    index, distance = nearest(queries, references)
    assert index.tolist() == [0, 1] and distance == pytest.approx([1.0, 4.0])


def test_copies_of_training_images_are_found_closest():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    new = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    synthetic = np.concatenate([new[:2], train[5:6], new[2:], train[3:4]])  # copies at positions 2 and 5
    test = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    found = check_memorisation(_segmenter(), train, synthetic, test, seed=0)
    assert found.copies_found == 8  # every noisy training image finds itself
    assert sorted(found.closest(2)) == [2, 5]
    assert found.synthetic_nearest[2] == 5 and found.synthetic_nearest[5] == 3
    assert found.synthetic_distance[[2, 5]] == pytest.approx([0.0, 0.0], abs=1e-3)
    summary = found.summary([f"SYN_{k}" for k in range(6)], [f"T{k}" for k in range(8)], n_closest=2)
    assert {c["synthetic_id"]: c["train_id"] for c in summary["closest"]} == {"SYN_2": "T5", "SYN_5": "T3"}
    assert summary["copy_retrieval"] == [8, 8] and summary["synthetic_below_test_5th_percentile"][0] >= 2
