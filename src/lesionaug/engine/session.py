"""ONNX Runtime sessions for one graph on one provider, built with the options that provider wants.

After creating a session the active providers are checked here: ORT falls back to the CPU silently
when a GPU provider fails to load, and a run that silently takes 50x longer is a bug.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesionaug.engine.cpu_graph import session_config, tune_model, tuned_graph
from lesionaug.engine.providers import (
    ORT_NAMES,
    import_onnxruntime,
    preload_gpu_libraries,
    tensorrt_version,
    usable_providers,
)
from lesionaug.engine.registry import cache_root
from lesionaug.engine.stages import plan_stages
from lesionaug.errors import BackendError, ModelError, first_line


@dataclass(frozen=True)
class ShapeProfile:
    """The shapes a GPU run will use: TensorRT builds its engine for this range, CUDA graphs for one shape."""

    min_batch: int
    max_batch: int
    height: int  # pixels
    width: int

    @property
    def key(self) -> str:
        return f"b{self.min_batch}-{self.max_batch}_{self.height}x{self.width}"

    @property
    def fixed(self) -> bool:
        return self.min_batch == self.max_batch


def default_threads() -> int:
    """Intra-op threads for the CPU provider: LESIONAUG_THREADS, else the cores this process may use."""
    env = os.environ.get("LESIONAUG_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def session_options(provider: str, threads: int | None = None, *, spin: bool = True):
    """``spin=False``: the CPU provider's pool threads sleep as soon as a run ends instead of spinning
    for the next one, for a session that takes turns on the same cores with other sessions."""
    ort = import_onnxruntime()

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if provider == "cpu":
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def tensorrt_cache_dir(engine_dir: Path, graph: str, precision: str, profile: ShapeProfile | None) -> Path:
    """Where TensorRT keeps this graph's engine and timing caches, keyed by shapes, precision and version.

    Inside the engine folder when it is writable, else in the lesionaug cache folder.
    """
    key = f"{graph}-{precision}-trt{tensorrt_version() or 'unknown'}-{profile.key if profile else 'dynamic'}"
    local = engine_dir / "trt_cache" / key
    try:
        local.mkdir(parents=True, exist_ok=True)
        probe = local / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        return local
    except OSError:
        digest = hashlib.sha256(str(engine_dir.resolve()).encode()).hexdigest()[:16]
        shared = cache_root() / "tensorrt" / digest / key
        shared.mkdir(parents=True, exist_ok=True)
        return shared


def _trt_shapes(inputs: dict[str, list], profile: ShapeProfile, scale: int, batch_factor: int) -> dict[str, str]:
    """TensorRT optimisation profile strings (min/opt/max) for a graph's dynamic inputs."""

    def concrete(name: str, dims: list, batch: int) -> str:
        per_cell = 1 if name == "controlnet_cond" else scale
        out = []
        for axis, dim in enumerate(dims):
            if isinstance(dim, int) and dim > 0:
                out.append(dim)
            elif axis == 0:
                out.append(batch)
            else:
                out.append((profile.height if axis == 2 else profile.width) // per_cell)
        return "x".join(str(v) for v in out)

    specs: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for name, dims in inputs.items():
        if all(isinstance(d, int) and d > 0 for d in dims):
            continue
        for kind, batch in (("min", profile.min_batch), ("opt", profile.max_batch), ("max", profile.max_batch)):
            specs[kind].append(f"{name}:{concrete(name, dims, batch * batch_factor)}")
    return {f"trt_profile_{k}_shapes": ",".join(v) for k, v in specs.items() if v}


def provider_entries(provider: str, *, precision: str, engine_dir: Path, graph: str, graph_io: dict,
                     profile: ShapeProfile | None, scale: int, batch_factor: int, cuda_graph: bool) -> list:
    """The ``providers=`` list for InferenceSession (best provider first, CPU last for TensorRT)."""
    cuda_options: dict[str, Any] = {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"}
    if provider == "cpu":
        return [ORT_NAMES["cpu"]]
    if provider == "cuda":
        if cuda_graph:
            cuda_options["enable_cuda_graph"] = "1"
        return [(ORT_NAMES["cuda"], cuda_options)]
    cache = tensorrt_cache_dir(engine_dir, graph, precision, profile)
    trt: dict[str, Any] = {
        "device_id": 0,
        "trt_fp16_enable": precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_builder_optimization_level": 3,
    }
    if profile is not None:
        trt.update(_trt_shapes(graph_io.get("inputs", {}), profile, scale, batch_factor))
    return [(ORT_NAMES["tensorrt"], trt), (ORT_NAMES["cuda"], cuda_options), ORT_NAMES["cpu"]]


def check_active_provider(session, provider: str, path: Path) -> None:
    """Fail loudly if ORT fell back from the provider asked for."""
    active = session.get_providers()
    if not active or active[0] != ORT_NAMES[provider]:
        raise BackendError(
            f"onnxruntime did not start the {provider} provider for {path.name} (active: {', '.join(active)})",
            path=path,
            fix="check CUDA/cuDNN/TensorRT libraries with `lesionaug doctor`, or use --provider cpu",
        )


@contextmanager
def _reading_graph(path: Path):
    """Turns onnx's errors while reading a graph file into a one-line ModelError naming the file."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - onnx raises protobuf and its own errors for a damaged file
        raise ModelError(f"cannot read {path.name} ({first_line(exc)})", path=path, fix="re-export the engine") from None


def cpu_tuned_graph(path: Path):
    """The CPU rewrites of the graph at ``path`` (``cpu_graph.TunedGraph``), or None when none apply."""
    with _reading_graph(path):
        return tuned_graph(path)


def cpu_stage_plan(path: Path, *, tune: bool = True):
    """(``stages.StagePlan`` or None, rewrite counts) for the denoiser at ``path`` on the CPU: the
    graph, with the CPU rewrites applied when ``tune``, cut into stages (engine/stages.py)."""
    import onnx

    with _reading_graph(path):
        model = onnx.load(str(path), load_external_data=False)
        rewrites = tune_model(model, base_dir=Path(path).parent) if tune else {}
        return plan_stages(model), rewrites


def build_session(path: Path, provider: str, providers: list, threads: int | None = None, *, tuned=None,
                  spin: bool = True):
    """An InferenceSession on ``provider``, or a BackendError/ModelError that says why not.

    ``tuned`` (a ``cpu_graph.TunedGraph`` of the graph at ``path``) loads that rewritten graph
    instead of the file; its external weights, if any, are still read from the file's folder.
    """
    ort = import_onnxruntime()

    if provider != "cpu":
        preload_gpu_libraries()
    options = session_options(provider, threads, spin=spin)
    source: str | bytes = str(path)
    if tuned is not None:
        for key, value in session_config(path).items():
            options.add_session_config_entry(key, value)
        source = tuned.model_bytes
    try:
        session = ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        message = first_line(exc)
        if provider == "cpu":
            raise ModelError(f"cannot load {path.name} ({message})", path=path, fix="re-export the engine") from None
        raise BackendError(f"cannot start {provider} for {path.name} ({message})", path=path,
                           fix="use --provider cpu, or check the GPU libraries with `lesionaug doctor`") from None
    check_active_provider(session, provider, path)
    return session


def verification_session(path: Path, precision: str):
    """(session, provider) for export verification: the CPU, or the GPU for fp16 graphs when one is usable."""
    provider = "cuda" if precision == "fp16" and "cuda" in usable_providers() else "cpu"
    providers = [(ORT_NAMES["cuda"], {"device_id": 0})] if provider == "cuda" else [ORT_NAMES["cpu"]]
    return build_session(path, provider, providers), provider
