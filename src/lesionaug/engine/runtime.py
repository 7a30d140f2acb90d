"""``Engine``: the sessions of one engine folder on one provider, and the three calls the sampler makes.

No PyTorch model is ever loaded here; torch is used only as the tensor type the schedulers work in.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from lesionaug.engine.card import EngineCard
from lesionaug.engine.integrity import verify_engine
from lesionaug.engine.loaders import (
    CUDA_GRAPH_MODES,
    DENOISER,
    RUNNER_LOADERS,
    TEXT_ENCODER,
    VAE_DECODER,
    LoadRequest,
)
from lesionaug.engine.provider_options import ShapeProfile, TensorrtSettings
from lesionaug.engine.providers import resolve_provider
from lesionaug.errors import ModelError, UsageError
from lesionaug.progress import SILENT, Reporter

EMBEDDING_CACHE_SIZE = 1024
__all__ = ["DENOISER", "TEXT_ENCODER", "VAE_DECODER", "Engine"]


class Engine:
    """An exported engine loaded into ONNX Runtime. Build it with ``Engine.load``."""

    def __init__(self, card: EngineCard, provider: str, runners: dict, tokenizer: Any,
                 scheduler_config: dict, load_seconds: float, notes: list[str],
                 cpu_rewrites: dict[str, dict[str, int]] | None = None, device_id: int = 0,
                 file_digests: dict[str, dict[str, str]] | None = None):
        self.card = card
        self.provider = provider
        self.runners = runners
        self.tokenizer = tokenizer
        self.scheduler_config = scheduler_config
        self.device = "cpu"  # where the sampler's torch tensors live; GPU runners bind their own device values
        self.device_id = device_id
        self.load_seconds = load_seconds
        self.notes = notes
        self.cpu_rewrites = cpu_rewrites or {}
        self.file_digests = file_digests or {}  # graph -> {file: sha256}, as hashed (and checked) on load
        self._embeddings: OrderedDict[str, Any] = OrderedDict()

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, engine_dir: str | Path, provider: str = "auto", *, device: int = 0, threads: int | None = None,
             profile: ShapeProfile | None = None, guided: bool = True, cuda_graph: bool | str = "auto",
             tensorrt: TensorrtSettings | None = None, cpu_rewrites: bool = True, cpu_stages: bool = True,
             reporter: Reporter = SILENT) -> Engine:
        """Open ``engine_dir`` on ``provider`` (auto|tensorrt|cuda|cpu); fail loudly rather than fall back.

        ``device``: the GPU (CUDA device id) the sessions run on. ``profile`` (jobs per call and image
        size, ``ShapeProfile.for_run``) tells TensorRT which shapes to build for; ``guided``: the
        denoiser sees each job twice. ``cuda_graph`` (auto|off|force; True is auto) captures the
        denoiser in CUDA graphs on the CUDA provider where its graph allows (``cuda_graphs.py``);
        ``tensorrt``: workspace limit and layer-norm precision. ``cpu_rewrites`` runs the CPU
        provider on the exact rewrites of ``cpu_graph.py`` and ``cpu_stages`` the denoiser in the
        stages of ``stages.py`` (False: the graphs as exported, for comparisons).
        """
        start = time.perf_counter()
        # 1. Check the engine folder and the request before anything is loaded.
        engine_dir = Path(engine_dir)
        card = EngineCard.read(engine_dir)
        digests = verify_engine(engine_dir, card.graphs)  # each graph is what its card says (cached by file state)
        chosen = resolve_provider(provider)
        mode = {True: "auto", False: "off"}.get(cuda_graph, cuda_graph)  # type: ignore[call-overload]
        if mode not in CUDA_GRAPH_MODES or not isinstance(device, int) or device < 0:
            raise UsageError(f"bad engine options (cuda_graph={cuda_graph!r}, device={device!r})",
                             fix=f"cuda_graph is one of {', '.join(CUDA_GRAPH_MODES)}; device is a GPU index >= 0")
        notes: list[str] = []

        def note(message: str) -> None:
            notes.append(message)
            reporter.warn(message)

        if card.precision == "fp16" and chosen == "cpu":
            note("fp16 engine on the CPU provider is slow; export with --precision fp32 for CPU runs")
        # 2. Tokenizer and scheduler config, then one runner per graph from the provider's loader.
        tokenizer = _load_tokenizer(engine_dir, card)
        scheduler_config = _load_scheduler_config(engine_dir)
        request = LoadRequest(engine_dir, card, chosen, reporter, note, device_id=device, threads=threads,
                              profile=profile, guided=guided, cuda_graph=mode,
                              tensorrt=tensorrt or TensorrtSettings(), cpu_rewrites=cpu_rewrites,
                              cpu_stages=cpu_stages)
        runners = {name: RUNNER_LOADERS[chosen](request, name) for name in card.graphs}
        return cls(card, chosen, runners, tokenizer, scheduler_config, time.perf_counter() - start, notes,
                   request.rewrites, device, digests)

    # -- the calls the sampler makes -------------------------------------------------------------

    def check_size(self, height: int, width: int) -> None:
        self.card.check_size(height, width)

    def encode_prompts(self, prompts: list[str]):
        """(B, L, D) float32 text embeddings on the engine's device; each distinct prompt is encoded once.

        Prompts are encoded one at a time, so an embedding never depends on which prompts share a batch.
        """
        import torch

        rows = []
        for prompt in prompts:
            cached = self._embeddings.get(prompt)
            if cached is None:
                cached = self._encode_one(prompt)
                self._embeddings[prompt] = cached
                if len(self._embeddings) > EMBEDDING_CACHE_SIZE:
                    self._embeddings.popitem(last=False)
            else:
                self._embeddings.move_to_end(prompt)
            rows.append(cached)
        return torch.cat(rows, dim=0)

    def _encode_one(self, prompt: str):
        import torch

        ids = self.tokenizer(prompt, padding="max_length", max_length=self.card.token_length, truncation=True,
                             return_tensors="np")["input_ids"]
        input_ids = torch.from_numpy(ids.astype("int64")).to(self.device)
        shape = (1, self.card.token_length, self.card.hidden_size)
        return self.runners[TEXT_ENCODER]({"input_ids": input_ids}, shape)

    def denoise(self, sample, timestep, states, control, scale):
        """The fused UNet + ControlNet: noise prediction for ``sample`` at ``timestep`` (all torch tensors)."""
        inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": states,
                  "controlnet_cond": control, "conditioning_scale": scale}
        return self.runners[DENOISER](inputs, tuple(sample.shape))

    def decode(self, sample):
        """Final denoised sample -> image in [-1, 1] (B, 3, H, W): the VAE decoder, or the sample itself."""
        if not self.card.latent:
            return sample
        b, _, h, w = sample.shape
        s = self.card.scale
        return self.runners[VAE_DECODER]({"latents": sample}, (b, 3, h * s, w * s))

    def describe(self) -> dict[str, Any]:
        where = "cpu" if self.provider == "cpu" else f"cuda:{self.device_id}"
        return {"engine": str(self.card.path), "provider": self.provider, "device": where,
                "precision": self.card.precision, "load_seconds": round(self.load_seconds, 3),
                "cuda_graph": any(getattr(r, "cuda_graph", False) for r in self.runners.values()),
                "cpu_rewrites": {name: dict(kinds) for name, kinds in self.cpu_rewrites.items()},
                "cpu_stages": {name: r.plan.describe() for name, r in self.runners.items() if hasattr(r, "plan")},
                "notes": list(self.notes)}


def _load_tokenizer(engine_dir: Path, card: EngineCard):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(engine_dir / "tokenizer", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer ({str(exc).splitlines()[0]})", path=engine_dir / "tokenizer",
                         fix="re-export the engine") from None
    return tokenizer


def _load_scheduler_config(engine_dir: Path) -> dict:
    path = engine_dir / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the scheduler config ({exc})", path=path, fix="re-export the engine") from None
