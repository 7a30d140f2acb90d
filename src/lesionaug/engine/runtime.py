"""``Engine``: the sessions of one engine folder on one provider, and the three calls the sampler makes.

No PyTorch model is ever loaded here; torch is used only as the tensor type the schedulers work in.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from lesionaug.engine.binding import GraphRunner, SplitBatchRunner
from lesionaug.engine.card import EngineCard
from lesionaug.engine.cpu_graph import TunedGraph
from lesionaug.engine.providers import resolve_provider
from lesionaug.engine.session import (
    build_session,
    cpu_stage_plan,
    cpu_tuned_graph,
    default_threads,
    provider_entries,
)
from lesionaug.engine.stages import StagedDenoiser, StagePlan
from lesionaug.errors import BackendError, ModelError
from lesionaug.progress import SILENT, Reporter

TEXT_ENCODER, DENOISER, VAE_DECODER = "text_encoder", "denoiser", "vae_decoder"
OUTPUTS = {TEXT_ENCODER: "last_hidden_state", DENOISER: "noise_pred", VAE_DECODER: "image"}
EMBEDDING_CACHE_SIZE = 1024


class Engine:
    """An exported engine loaded into ONNX Runtime. Build it with ``Engine.load``."""

    def __init__(self, card: EngineCard, provider: str, runners: dict, tokenizer: Any,
                 scheduler_config: dict, device: str, load_seconds: float, notes: list[str],
                 cpu_rewrites: dict[str, dict[str, int]] | None = None):
        self.card = card
        self.provider = provider
        self.runners = runners
        self.tokenizer = tokenizer
        self.scheduler_config = scheduler_config
        self.device = device
        self.load_seconds = load_seconds
        self.notes = notes
        self.cpu_rewrites = cpu_rewrites or {}
        self._embeddings: OrderedDict[str, Any] = OrderedDict()

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, engine_dir: str | Path, provider: str = "auto", *, threads: int | None = None,
             profile=None, cuda_graph: bool = True, cpu_rewrites: bool = True, cpu_stages: bool = True,
             reporter: Reporter = SILENT) -> Engine:
        """Open ``engine_dir`` on ``provider`` (auto|tensorrt|cuda|cpu); fail loudly rather than fall back.

        ``profile`` (a ``ShapeProfile``) tells TensorRT which shapes to build for; ``cuda_graph``
        captures the denoiser in CUDA graphs on the CUDA provider when ORT can; ``cpu_rewrites``
        runs the CPU provider on the exact rewrites of ``engine/cpu_graph.py`` and ``cpu_stages`` the
        denoiser in the stages of ``engine/stages.py`` (False: the graphs as exported, for comparisons).
        """
        start = time.perf_counter()
        card = EngineCard.read(engine_dir)
        engine_dir = Path(engine_dir)
        chosen = resolve_provider(provider)
        notes: list[str] = []
        if card.precision == "fp16" and chosen == "cpu":
            notes.append("fp16 engine on the CPU provider is slow; export with --precision fp32 for CPU runs")
        device = _tensor_device(chosen, notes)
        tokenizer = _load_tokenizer(engine_dir, card)
        scheduler_config = _load_scheduler_config(engine_dir)

        cpu_threads = threads or default_threads()
        runners = {}
        rewrites: dict[str, dict[str, int]] = {}
        for name in card.graphs:
            path = card.graph_path(name)
            graph = card.graphs[name]
            precision = graph.get("precision", card.precision)
            want_graph = cuda_graph and chosen == "cuda" and name == DENOISER and device == "cuda"
            batch_factor = 2 if name == DENOISER else 1
            # Prompts are encoded one at a time, so TensorRT builds the text encoder for batch 1 only.
            graph_profile = profile
            if profile is not None and name == TEXT_ENCODER:
                graph_profile = type(profile)(1, 1, profile.height, profile.width)

            def entries(use_graph: bool, name=name, graph=graph, precision=precision, batch_factor=batch_factor,
                        graph_profile=graph_profile):
                return provider_entries(chosen, precision=precision, engine_dir=engine_dir, graph=name,
                                        graph_io=graph, profile=graph_profile, scale=card.scale,
                                        batch_factor=batch_factor, cuda_graph=use_graph)

            if chosen == "cpu" and cpu_stages and name == DENOISER:
                # The denoiser in stages, so that what a generation repeats is computed once (engine/stages.py).
                with reporter.task(f"loading {name} on cpu", total=None):
                    staged = _staged_denoiser(path, entries(False), cpu_threads, cpu_rewrites)
                if staged is not None:
                    runners[name], done = staged
                    if done:
                        rewrites[name] = done
                    continue
            # The CPU provider runs an exactly equivalent rewrite of the graph (engine/cpu_graph.py).
            tuned = cpu_tuned_graph(path) if chosen == "cpu" and cpu_rewrites else None
            if tuned is not None:
                rewrites[name] = tuned.rewrites
            if chosen == "cpu" and name != TEXT_ENCODER and cpu_threads > 1:
                # Prompts are encoded one at a time: only the batched graphs are split across cores.
                with reporter.task(f"loading {name} on cpu", total=None):
                    single = build_session(path, chosen, entries(False), 1, tuned=tuned)

                def threaded(path=path, entries=entries, retune=tuned is not None):
                    again = cpu_tuned_graph(path) if retune else None
                    return build_session(path, "cpu", entries(False), cpu_threads, tuned=again)

                runners[name] = SplitBatchRunner(single, OUTPUTS[name], cpu_threads, threaded)
                continue
            with reporter.task(f"loading {name} on {chosen}", total=None):
                try:
                    session = build_session(path, chosen, entries(want_graph), threads, tuned=tuned)
                except BackendError:
                    if not want_graph:
                        raise
                    notes.append("CUDA graphs not possible for this denoiser (nodes outside the CUDA provider); "
                                 "running with IO binding only")
                    want_graph = False
                    session = build_session(path, chosen, entries(False), threads)
            runners[name] = GraphRunner(session, OUTPUTS[name], device=device, cuda_graph=want_graph)
        for note in notes:
            reporter.warn(note)
        return cls(card, chosen, runners, tokenizer, scheduler_config, device, time.perf_counter() - start, notes,
                   rewrites)

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
        return {"engine": str(self.card.path), "provider": self.provider, "device": self.device,
                "precision": self.card.precision, "load_seconds": round(self.load_seconds, 3),
                "cuda_graph": any(getattr(r, "cuda_graph", False) for r in self.runners.values()),
                "cpu_rewrites": {name: dict(kinds) for name, kinds in self.cpu_rewrites.items()},
                "cpu_stages": {name: r.plan.describe() for name, r in self.runners.items() if hasattr(r, "plan")},
                "notes": list(self.notes)}


def _staged_denoiser(path: Path, providers: list, threads: int, tune: bool):
    """(StagedDenoiser, rewrites) for the denoiser at ``path`` on the CPU, or None when it has no stages.

    Each stage runs on its own sessions, split across ``threads`` cores like the other batched graphs;
    the threaded sessions do not spin, as the stages take turns on the same cores. The stages' graph
    bytes are not kept (with weights inline they are a copy of the weights): a threaded session,
    built on first need, cuts the graph again.
    """
    from dataclasses import replace

    plan, rewrites = cpu_stage_plan(path, tune=tune)
    if plan is None:
        return None

    def threaded(name: str):
        stage = getattr(cpu_stage_plan(path, tune=tune)[0], name)
        return build_session(path, "cpu", providers, threads, tuned=TunedGraph(stage.model), spin=False)

    def runner(stage):
        if not stage.nodes:
            return None
        single = build_session(path, "cpu", providers, 1, tuned=TunedGraph(stage.model))
        return SplitBatchRunner(single, None, threads, lambda: threaded(stage.name))

    runners = [runner(stage) for stage in (plan.control, plan.shared, plan.text)]
    plan = StagePlan(*(replace(stage, model=b"") for stage in (plan.control, plan.shared, plan.text)))
    staged = StagedDenoiser(plan, *runners)
    return staged, rewrites


def _tensor_device(provider: str, notes: list[str]) -> str:
    if provider == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    notes.append("torch has no CUDA here, so tensors go through host memory at every step")
    return "cpu"


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
