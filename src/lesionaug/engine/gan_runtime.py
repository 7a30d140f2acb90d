"""``GanEngine``: a Pix2PixHD engine folder (``generator.onnx``) run by ONNX Runtime, one forward pass a batch.

    engine = load_generator_engine(ENGINE_DIR, "cpu")      # Engine or GanEngine, by the card's generator
    images = engine.generate_from_labels(labels, masks)    # uint8 (B, H, W, 3)

No scheduler, steps, guidance or text: each job's label map is its mask and its labels' channels
(``plan/label_channels.py``). Jobs are run one at a time through the graph, so an image never
depends on which jobs share its batch (instance normalisation is per image anyway, but ORT's
kernels may pick a different algorithm for another batch size). No noise input: the card says
``noise_input: false`` and a job's noise seed is recorded, not used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lesionaug.cards import find_card
from lesionaug.dataset.labels import Labels
from lesionaug.engine.card import EngineCard
from lesionaug.engine.integrity import verify_engine
from lesionaug.engine.providers import ORT_NAMES, resolve_provider
from lesionaug.engine.runtime import Engine
from lesionaug.engine.session import build_session
from lesionaug.errors import ModelError
from lesionaug.plan.label_channels import LABEL_CHANNELS, label_channel_names, label_vector

GAN_KIND = "pix2pixhd"
GRAPH, INPUT = "generator", "label_map"


def is_gan_engine(engine_dir: str | Path) -> bool:
    return (find_card(engine_dir) or {}).get("generator") == GAN_KIND


class GanEngine:
    """A Pix2PixHD generator graph in ONNX Runtime. Build it with ``GanEngine.load``."""

    kind = GAN_KIND

    def __init__(self, card: EngineCard, provider: str, session: Any, load_seconds: float, device_id: int = 0):
        self.card = card
        self.provider = provider
        self.session = session
        self.load_seconds = load_seconds
        self.device_id = device_id
        self.notes: list[str] = []
        self.file_digests: dict[str, dict[str, str]] = {}  # graph -> {file: sha256}, as hashed (and checked) on load

    @classmethod
    def load(cls, engine_dir: str | Path, provider: str = "auto", *, device: int = 0, threads: int | None = None,
             **_diffusion_options: Any) -> GanEngine:
        """Open ``engine_dir`` on ``provider`` (auto|cuda|cpu; tensorrt runs as cuda); options of the
        diffusion engine (shape profiles, guidance, CUDA graphs) do not apply and are ignored."""
        start = time.perf_counter()
        engine_dir = Path(engine_dir)
        card = EngineCard.read(engine_dir)
        if card.raw.get("generator") != GAN_KIND:
            raise ModelError("not a Pix2PixHD engine folder", path=engine_dir, fix="pass an engine of a pix2pixhd model")
        if card.raw.get("label_channels") != label_channel_names():
            raise ModelError("the engine's label channels differ from this version's vocabulary", path=engine_dir,
                             fix="retrain and re-export the model with this version of lesionaug")
        file_digests = verify_engine(engine_dir, card.graphs)  # the graph is what its card says (cached by file state)
        chosen = resolve_provider(provider)
        chosen = "cuda" if chosen == "tensorrt" else chosen
        providers = [ORT_NAMES["cpu"]] if chosen == "cpu" else [(ORT_NAMES["cuda"], {"device_id": device})]
        session = build_session(card.graph_path(GRAPH), chosen, providers, threads)
        engine = cls(card, chosen, session, time.perf_counter() - start, device)
        engine.file_digests = file_digests
        return engine

    def check_size(self, height: int, width: int) -> None:
        self.card.check_size(height, width)

    def generate_from_labels(self, labels: list[Labels | dict | None], masks: list[np.ndarray]) -> np.ndarray:
        """One image per job from its label set and its mask (bool H x W): uint8 (B, H, W, 3)."""
        if len(labels) != len(masks) or not masks:
            raise ValueError(f"{len(labels)} label sets for {len(masks)} masks")
        out = []
        for job_labels, mask in zip(labels, masks):
            height, width = mask.shape
            self.check_size(height, width)
            if isinstance(job_labels, dict):
                job_labels = Labels.from_dict(job_labels)
            plane = np.asarray(mask, dtype=np.float32)
            label_map = np.empty((1, LABEL_CHANNELS, height, width), np.float32)
            label_map[0, 0] = plane  # as train/pix2pixhd_networks.label_map: labels set inside the lesion
            label_map[0, 1:] = np.asarray(label_vector(job_labels), np.float32)[:, None, None] * plane
            image = self.session.run(None, {INPUT: label_map})[0][0]
            out.append(np.clip(np.round((image.transpose(1, 2, 0).astype(np.float64) + 1) * 127.5), 0, 255))
        return np.stack(out).astype(np.uint8)

    def describe(self) -> dict[str, Any]:
        return {"engine": str(self.card.path), "generator": GAN_KIND, "provider": self.provider,
                "device": "cpu" if self.provider == "cpu" else f"cuda:{self.device_id}",
                "precision": self.card.precision, "load_seconds": round(self.load_seconds, 3), "cuda_graph": False,
                "notes": list(self.notes)}


def load_generator_engine(engine_dir: str | Path, provider: str = "auto", **options: Any) -> Engine | GanEngine:
    """The engine folder's runner: ``GanEngine`` for a Pix2PixHD card, else the diffusion ``Engine``."""
    if is_gan_engine(engine_dir):
        return GanEngine.load(engine_dir, provider, **options)
    return Engine.load(engine_dir, provider, **options)
