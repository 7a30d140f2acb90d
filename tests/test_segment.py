"""MONAI segmenters: they learn a toy task, are deterministic by seed, predict at the input size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evaluation_fixtures import blob_pair
from PIL import Image

from lesionaug.errors import BackendError, ConfigError, UsageError
from lesionaug.evaluate.metrics import dice_coefficient
from lesionaug.evaluate.segmenter import (
    SegmenterConfig,
    load_pairs,
    mixed_batches,
    resolve_device,
    shuffled_batches,
    train_segmenter,
)

TINY = dict(image_size=32, channels=(8, 16, 32), batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def blob_files(tmp_path_factory) -> list[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(24):
        image, mask = blob_pair(rng, 40, 48)
        image_path, mask_path = root / f"img{k:02d}.jpg", root / f"img{k:02d}_mask.png"
        Image.fromarray(image).save(image_path, quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        pairs.append((image_path, mask_path))
    return pairs


def test_load_pairs_resizes_images_and_masks(blob_files):
    images, masks = load_pairs(blob_files[:3], 32)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    assert masks.shape == (3, 32, 32) and masks.dtype == bool and masks.any()


def test_unet_learns_the_toy_task_and_predicts_at_input_size(blob_files):
    segmenter = train_segmenter(blob_files[:20], SegmenterConfig(epochs=10, seed=1, **TINY))
    assert segmenter.history[-1] < segmenter.history[0]
    held_out = blob_files[20:]
    from lesionaug.dataset.files import read_mask

    predictions = segmenter.predict_files([image for image, _ in held_out])
    truths = [read_mask(mask) for _, mask in held_out]
    assert all(p.shape == t.shape == (40, 48) and p.dtype == bool for p, t in zip(predictions, truths))
    # An empty or all-lesion guess scores about 0 or 0.2 here; a segmenter that learned scores far more.
    mean_dice = np.mean([dice_coefficient(t, p) for t, p in zip(truths, predictions)])
    assert mean_dice > 0.6, mean_dice


def test_same_seed_same_segmenter_and_another_seed_differs(blob_files):
    arrays = load_pairs(blob_files[:8], 32)
    config = SegmenterConfig(epochs=2, seed=5, **TINY)
    a = train_segmenter(arrays, config)
    b = train_segmenter(arrays, config)
    c = train_segmenter(arrays, SegmenterConfig(epochs=2, seed=6, **TINY))
    assert a.history == b.history
    for pa, pb in zip(a.network.parameters(), b.network.parameters()):
        assert np.array_equal(pa.detach().numpy(), pb.detach().numpy())
    assert a.history != c.history


def test_steps_replace_epochs_and_cut_the_last_pass_short(blob_files, monkeypatch):
    import torch

    calls = []
    original = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (calls.append(1), original(self, *a, **k))[1])
    arrays = load_pairs(blob_files[:12], 32)  # 2 batches of 8 per pass
    segmenter = train_segmenter(arrays, SegmenterConfig(epochs=50, steps=5, seed=0, **TINY))
    assert len(calls) == 5 and len(segmenter.history) == 3  # passes of 2, 2 and 1 steps
    calls.clear()
    train_segmenter(arrays, SegmenterConfig(epochs=2, seed=0, **TINY))
    assert len(calls) == 4


@pytest.mark.parametrize("share,real,synthetic", [(0.5, 3, 20), (0.3, 5, 7), (0.9, 2, 50)])
def test_mixed_batches_hold_the_share_and_visit_each_kind_in_whole_passes(share, real, synthetic):
    import torch

    steps, batch = 13, 8
    batches = list(mixed_batches(real, synthetic, share, batch, steps, torch.Generator().manual_seed(0)))
    assert len(batches) == steps and all(len(index) == len(epochs) == batch for index, epochs in batches)
    drawn = [i for index, _ in batches for i in index]
    n_syn = sum(i >= real for i in drawn)
    assert n_syn == int(steps * batch * share)  # exact over the run (floor of the cumulative share)
    for index, _ in batches:  # and within one sample of it in every batch
        assert abs(sum(i >= real for i in index) - batch * share) < 1
    for kind in (range(real), range(real, real + synthetic)):
        seen = [(i, e) for index, epochs in batches for i, e in zip(index, epochs) if i in kind]
        for epoch in range(max(e for _, e in seen)):  # every finished pass shows each sample once
            assert sorted(i for i, e in seen if e == epoch) == list(kind)
        last = [i for i, e in seen if e == max(e for _, e in seen)]
        assert len(set(last)) == len(last)
    again = list(mixed_batches(real, synthetic, share, batch, steps, torch.Generator().manual_seed(0)))
    other = list(mixed_batches(real, synthetic, share, batch, steps, torch.Generator().manual_seed(1)))
    assert again == batches and other != batches


def test_mixed_batches_draw_real_pairs_only_from_real_from_on():
    import torch

    real, synthetic, steps, batch = 5, 20, 12, 8
    plain = list(mixed_batches(real, synthetic, 0.5, batch, steps, torch.Generator().manual_seed(0)))
    finish = list(mixed_batches(real, synthetic, 0.5, batch, steps, torch.Generator().manual_seed(0), real_from=9))
    assert finish[:9] == plain[:9]  # the mixed steps are those of an unfinished run
    for index, epochs in finish[9:]:
        assert len(index) == batch and all(i < real for i in index)
    # The real stream goes on where it stood: whole passes over the real pairs, tail included.
    seen = [(i, e) for index, epochs in finish for i, e in zip(index, epochs) if i < real]
    for epoch in range(max(e for _, e in seen)):
        assert sorted(i for i, e in seen if e == epoch) == list(range(real))
    assert sum(i >= real for index, _ in finish for i in index) == 9 * batch // 2


def test_shuffled_batches_are_whole_passes_cut_short_at_the_step_budget():
    import torch

    batches = list(shuffled_batches(12, 8, 5, torch.Generator().manual_seed(0)))
    assert [len(index) for index, _ in batches] == [8, 4, 8, 4, 8]
    assert [epochs[0] for _, epochs in batches] == [0, 0, 1, 1, 2]
    assert sorted(batches[0][0] + batches[1][0]) == list(range(12))


def test_a_synthetic_share_mixes_batches_only_when_both_kinds_are_there(blob_files):
    arrays = load_pairs(blob_files[:12], 32)
    plain = train_segmenter(arrays, SegmenterConfig(steps=3, seed=2, **TINY))
    # The first 4 pairs real, 8 synthetic: an unset share draws them alike, as without real_pairs.
    unset = train_segmenter(arrays, SegmenterConfig(steps=3, seed=2, **TINY), real_pairs=4)
    assert unset.history == plain.history
    # All real (or all synthetic): nothing to mix, the share changes nothing.
    for real in (12, 0):
        same = train_segmenter(arrays, SegmenterConfig(steps=3, seed=2, synthetic_share=0.5, **TINY), real_pairs=real)
        assert same.history == plain.history
    mixed = train_segmenter(arrays, SegmenterConfig(steps=3, seed=2, synthetic_share=0.5, **TINY), real_pairs=4)
    again = train_segmenter(arrays, SegmenterConfig(steps=3, seed=2, synthetic_share=0.5, **TINY), real_pairs=4)
    assert mixed.history != plain.history and mixed.history == again.history
    assert mixed.config.to_dict()["synthetic_share"] == 0.5
    # --real-finish: the last third of the steps real only, so the first two steps are those of `mixed`.
    finish = train_segmenter(arrays, SegmenterConfig(steps=3, seed=2, synthetic_share=0.5, real_finish=1 / 3,
                                                     **TINY), real_pairs=4)
    assert finish.history[0] == mixed.history[0] and finish.history[1] != mixed.history[1]
    assert finish.config.to_dict()["real_finish"] == 1 / 3


@pytest.mark.parametrize("arch,channels", [("basicunet", (4, 8, 8, 16, 16)), ("attentionunet", (8, 16, 32))])
def test_other_architectures_train_and_predict(blob_files, arch, channels):
    config = SegmenterConfig(arch=arch, epochs=1, seed=0, **{**TINY, "channels": channels})
    segmenter = train_segmenter(blob_files[:4], config)
    image = np.zeros((21, 37, 3), dtype=np.uint8)
    (mask,) = segmenter.predict([image])
    assert mask.shape == (21, 37)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"arch": "resnet"}, "unknown segmenter architecture"),
        ({"device": "tpu"}, "unknown device"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"image_size": 30, "channels": (8, 16, 32)}, "not divisible by 4"),
        ({"arch": "basicunet", "channels": (8, 16)}, "exactly 5"),
        ({"learning_rate": 0.0}, "learning rate"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"synthetic_share": 0.0}, "--synthetic-share must be between 0 and 1"),
        ({"synthetic_share": 1.0}, "--synthetic-share must be between 0 and 1"),
        ({"synthetic_share": 0.5, "real_finish": 1.0}, "--real-finish must be at least 0 and below 1"),
        ({"synthetic_share": 0.5, "real_finish": -0.1}, "--real-finish must be at least 0 and below 1"),
        ({"real_finish": 0.25}, "--real-finish needs --synthetic-share"),
    ],
)
def test_config_is_validated_in_one_place(kwargs, match):
    with pytest.raises(UsageError, match=match):
        SegmenterConfig(**kwargs)


def test_cuda_without_a_gpu_is_a_backend_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


def test_no_pairs_is_a_config_error():
    with pytest.raises(ConfigError, match="no training pairs"):
        train_segmenter([], SegmenterConfig(**TINY))
