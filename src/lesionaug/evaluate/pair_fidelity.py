"""The segmenter behind ``augment --min-fidelity``: trained once on the real training pairs the plan
was fitted on, cached beside the model (``<model>/fidelity-segmenter/<key>.safetensors``), and
used to score each generated pair: Dice of its prediction on the image against the pair's mask.

The cache key is the segmenter's config, the device it trains on and the (id, content digest) of
every training pair, so another subset or another config trains another segmenter. Images are
scored one at a time: a pair's score never depends on its batch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lesionaug.atomic_files import write_bytes_atomic, write_text_atomic
from lesionaug.augment.fidelity_filter import PairScorer, ScorerFactory
from lesionaug.evaluate.metrics import dice_coefficient
from lesionaug.evaluate.segmenter import Segmenter, SegmenterConfig, build_network, resolve_device, train_segmenter
from lesionaug.progress import SILENT, Reporter

CACHE_FOLDER = "fidelity-segmenter"
FIDELITY_SEGMENTER = SegmenterConfig(image_size=128, epochs=30, seed=0)


def segmenter_key(train: list, config: SegmenterConfig, device: str) -> str:
    """What the cached segmenter was trained from: config, device, every training pair's id and content."""
    pairs = sorted((str(s.id), s.digest) for s in train)
    text = json.dumps({"config": config.to_dict(), "device": device, "pairs": pairs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cached_segmenter(train: list, folder: Path, config: SegmenterConfig, reporter: Reporter = SILENT) -> Segmenter:
    """The fidelity segmenter of these training pairs: read from ``folder``'s cache, else trained and
    written there (a folder that cannot be written to is said in one line, and the run goes on)."""
    from safetensors.torch import load, save

    device = resolve_device(config.device)
    key = segmenter_key(train, config, device)[:24]
    weights = Path(folder) / CACHE_FOLDER / f"{key}.safetensors"
    if weights.is_file():
        network = build_network(config)
        network.load_state_dict(load(weights.read_bytes()))
        return Segmenter(network.to(device).eval(), config, device, history=[])
    segmenter = train_segmenter([(s.image, s.mask) for s in train], config, reporter)
    state = {k: v.detach().cpu().contiguous() for k, v in segmenter.network.state_dict().items()}
    card = {"config": config.to_dict(), "device": device, "train_ids": sorted(str(s.id) for s in train),
            "final_loss": segmenter.history[-1] if segmenter.history else None}
    try:
        weights.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(weights.with_suffix(".json"), json.dumps(card, indent=2) + "\n", durable=False)
        write_bytes_atomic(weights, save(state), durable=False)  # last: its presence means the cache is whole
    except OSError as exc:
        reporter.warn(f"the fidelity segmenter could not be cached in {weights.parent} ({exc.strerror or exc})")
    return segmenter


def pair_scorer(segmenter: Segmenter) -> PairScorer:
    """(image, its mask) -> Dice of the segmenter's prediction on the image against the mask."""

    def score(image: np.ndarray, mask: np.ndarray) -> float:
        (predicted,) = segmenter.predict([np.asarray(image)], batch_size=1)
        return dice_coefficient(np.asarray(mask, dtype=bool), predicted)

    return score


def fidelity_scorer_factory(config: SegmenterConfig | None = None, reporter: Reporter = SILENT) -> ScorerFactory:
    """What ``run_augment(..., pair_scorer=...)`` takes: (training samples, resolved model) -> a scorer,
    the segmenter cached beside the model folder (or the engine folder when no model folder is known)."""
    config = config or FIDELITY_SEGMENTER

    def make(train: list, resolved) -> PairScorer:
        folder = resolved.model_dir if resolved.model_dir is not None else resolved.engine_dir
        return pair_scorer(cached_segmenter(train, folder, config, reporter))

    return make
