"""One runner per graph, one loader per provider: what ``Engine.load`` builds for each graph.

- ``load_cpu_runner``: the CPU rewrites of ``cpu_graph.py``, the denoiser in the stages of
  ``stages.py``, batches split across cores (``binding.SplitBatchRunner``);
- ``load_cuda_runner``: a CUDA session on ``device_id`` with device-bound inputs and output
  (``binding.DeviceRunner``), CUDA graphs for the denoiser where the graph allows them;
- ``load_tensorrt_runner``: a TensorRT session built for the run's shape profile, its engines
  and timing cache kept between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lesionaug.engine.binding import DeviceRunner, GraphRunner, SplitBatchRunner
from lesionaug.engine.card import EngineCard
from lesionaug.engine.cpu_graph import TunedGraph
from lesionaug.engine.cuda_graphs import cuda_graph_blocker
from lesionaug.engine.provider_options import ShapeProfile, TensorrtSettings, provider_entries
from lesionaug.engine.session import build_session, cpu_stage_plan, cpu_tuned_graph, default_threads
from lesionaug.engine.stages import StagedDenoiser, StagePlan
from lesionaug.errors import BackendError
from lesionaug.progress import Reporter

TEXT_ENCODER, DENOISER, VAE_DECODER = "text_encoder", "denoiser", "vae_decoder"
OUTPUTS = {TEXT_ENCODER: "last_hidden_state", DENOISER: "noise_pred", VAE_DECODER: "image"}
CUDA_GRAPH_MODES = ("auto", "off", "force")
DEVICE_TYPE = "cuda"  # where GPU runners bind their values (tests run the same path with "cpu")


@dataclass
class LoadRequest:
    """What every loader needs: the engine, the provider and device, and the run's shapes."""

    engine_dir: Path
    card: EngineCard
    provider: str
    reporter: Reporter
    note: Callable[[str], None]
    device_id: int = 0
    threads: int | None = None
    profile: ShapeProfile | None = None
    guided: bool = True  # the denoiser sees each job twice (classifier-free guidance)
    cuda_graph: str = "auto"  # auto: where the graph allows; off; force: skip the graph check
    tensorrt: TensorrtSettings = field(default_factory=TensorrtSettings)
    cpu_rewrites: bool = True
    cpu_stages: bool = True
    rewrites: dict = field(default_factory=dict)  # graph -> CPU rewrite counts

    def graph_profile(self, name: str) -> ShapeProfile | None:
        """The profile in the graph's own batch items: prompts are encoded one at a time."""
        if self.profile is None:
            return None
        if name == TEXT_ENCODER:
            return ShapeProfile(1, 1, self.profile.height, self.profile.width)
        return self.profile.scaled(2 if name == DENOISER and self.guided else 1)

    def entries(self, name: str, *, cuda_graph: bool = False) -> list:
        graph = self.card.graphs[name]
        return provider_entries(self.provider, precision=graph.get("precision", self.card.precision),
                                engine_dir=self.engine_dir, graph=name, graph_io=graph,
                                profile=self.graph_profile(name), scale=self.card.scale, cuda_graph=cuda_graph,
                                device_id=self.device_id, tensorrt=self.tensorrt)


def load_cpu_runner(req: LoadRequest, name: str):
    """The CPU provider: exact rewrites, the denoiser in stages, batches split across the cores."""
    path = req.card.graph_path(name)
    threads = req.threads or default_threads()
    entries = req.entries(name)
    if req.cpu_stages and name == DENOISER:
        with req.reporter.task(f"loading {name} on cpu", total=None):
            staged = _staged_denoiser(path, entries, threads, req.cpu_rewrites)
        if staged is not None:
            runner, done = staged
            if done:
                req.rewrites[name] = done
            return runner
    tuned = cpu_tuned_graph(path) if req.cpu_rewrites else None
    if tuned is not None:
        req.rewrites[name] = tuned.rewrites
    if name == TEXT_ENCODER or threads == 1:
        # Prompts are encoded one at a time: only the batched graphs are split across cores.
        with req.reporter.task(f"loading {name} on cpu", total=None):
            return GraphRunner(build_session(path, "cpu", entries, req.threads, tuned=tuned), OUTPUTS[name])
    with req.reporter.task(f"loading {name} on cpu", total=None):
        single = build_session(path, "cpu", entries, 1, tuned=tuned)

    def threaded():
        again = cpu_tuned_graph(path) if tuned is not None else None
        return build_session(path, "cpu", entries, threads, tuned=again)

    return SplitBatchRunner(single, OUTPUTS[name], threads, threaded)


def _staged_denoiser(path: Path, providers: list, threads: int, tune: bool):
    """(StagedDenoiser, rewrites) for the denoiser at ``path`` on the CPU, or None when it has no stages.

    Each stage runs on its own sessions, split across ``threads`` cores like the other batched graphs;
    the threaded sessions do not spin, as the stages take turns on the same cores. The stages' graph
    bytes are not kept (with weights inline they are a copy of the weights): a threaded session,
    built on first need, cuts the graph again.
    """
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
    return StagedDenoiser(plan, *runners), rewrites


def wants_cuda_graph(req: LoadRequest, name: str, path: Path) -> bool:
    """CUDA graphs for the denoiser on the CUDA provider, unless asked not to or the graph has CPU nodes."""
    if req.provider != "cuda" or name != DENOISER or req.cuda_graph == "off":
        return False
    if req.cuda_graph == "force":
        return True
    blocker = cuda_graph_blocker(path)
    if blocker is not None:
        req.note(f"CUDA graphs off: {blocker}")
        return False
    return True


def load_cuda_runner(req: LoadRequest, name: str) -> DeviceRunner:
    """The CUDA provider on ``req.device_id``; a CUDA graph session that cannot start is rebuilt without."""
    path = req.card.graph_path(name)
    graphs = wants_cuda_graph(req, name, path)
    where = f"cuda:{req.device_id}"
    with req.reporter.task(f"loading {name} on {where}", total=None):
        try:
            session = build_session(path, "cuda", req.entries(name, cuda_graph=graphs))
        except BackendError as exc:
            if not graphs:
                raise
            req.note(f"CUDA graphs not possible for {path.name} ({exc.message}); running without them")
            graphs = False
            session = build_session(path, "cuda", req.entries(name))
    return DeviceRunner(session, OUTPUTS[name], DEVICE_TYPE, req.device_id, cuda_graph=graphs,
                        rebuild=lambda: build_session(path, "cuda", req.entries(name)), on_fallback=req.note)


def load_tensorrt_runner(req: LoadRequest, name: str) -> DeviceRunner:
    """TensorRT on ``req.device_id``, built for the run's profile (cached: the first build takes minutes)."""
    path = req.card.graph_path(name)
    if req.profile is None and name != TEXT_ENCODER:
        req.note(f"no shape profile for {path.name}: TensorRT builds for the first shape and rebuilds on another")
    with req.reporter.task(f"loading {name} on tensorrt:{req.device_id} (first build of a shape takes minutes)",
                           total=None):
        session = build_session(path, "tensorrt", req.entries(name))
    return DeviceRunner(session, OUTPUTS[name], DEVICE_TYPE, req.device_id)


RUNNER_LOADERS: dict[str, Callable[[LoadRequest, str], object]] = {
    "cpu": load_cpu_runner,
    "cuda": load_cuda_runner,
    "tensorrt": load_tensorrt_runner,
}
