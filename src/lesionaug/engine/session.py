"""ONNX Runtime sessions for one graph on one provider, built with the options that provider wants.

After creating a session the active providers are checked here: ORT falls back to the CPU silently
when a GPU provider fails to load, and a run that silently takes 50x longer is a bug.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from lesionaug.engine.cpu_graph import session_config, tune_model, tuned_graph
from lesionaug.engine.provider_options import (
    ShapeProfile,
    TensorrtSettings,
    provider_entries,
)
from lesionaug.engine.providers import (
    ORT_NAMES,
    import_onnxruntime,
    preload_gpu_libraries,
    usable_providers,
)
from lesionaug.engine.stages import plan_stages
from lesionaug.errors import BackendError, ModelError, first_line


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


__all__ = ["ShapeProfile", "TensorrtSettings", "build_session", "check_active_provider", "provider_entries",
           "session_options"]
