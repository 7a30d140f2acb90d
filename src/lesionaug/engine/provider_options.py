"""What each execution provider is asked for: the ``providers=`` list of one graph's InferenceSession.

TensorRT builds an engine for a range of input shapes (an optimisation profile) and rebuilds it,
minutes for a Stable Diffusion sized graph, whenever a shape falls outside the range. A run
therefore passes the profile of every shape it will use (``ShapeProfile.for_run``: the batch sizes
of its fixed batches, its image size), and the built engines are cached under a key made of
everything that changes them: graph, precision, layer-norm precision, TensorRT version, profile.

Option names are ONNX Runtime's (TensorRT and CUDA execution provider pages): ``device_id``,
``trt_fp16_enable``, ``trt_layer_norm_fp32_fallback``, ``trt_max_workspace_size``,
``trt_engine_cache_enable``/``_path``, ``trt_timing_cache_enable``/``_path``,
``trt_profile_{min,opt,max}_shapes``, ``enable_cuda_graph``, ``cudnn_conv_algo_search``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesionaug.engine.providers import ORT_NAMES, tensorrt_version
from lesionaug.engine.registry import cache_root
from lesionaug.errors import ConfigError, UsageError

GIB = 1 << 30


@dataclass(frozen=True)
class ShapeProfile:
    """The jobs-per-call range and image size a run uses (pixels); ``opt_batch`` defaults to the max."""

    min_batch: int
    max_batch: int
    height: int
    width: int
    opt_batch: int | None = None

    def __post_init__(self) -> None:
        opt = self.opt if self.min_batch <= self.max_batch else -1
        if self.min_batch < 1 or not self.min_batch <= opt <= self.max_batch or self.height < 1 or self.width < 1:
            raise ConfigError(f"impossible shape profile {self}", fix="min_batch <= opt_batch <= max_batch, sizes >= 1")

    @classmethod
    def for_run(cls, n_jobs: int, batch_size: int, height: int, width: int,
                per_call: int | None = None) -> ShapeProfile:
        """The profile of a run that cuts ``n_jobs`` into fixed batches of ``batch_size`` (every full
        batch, and the last, smaller one when the jobs do not divide evenly), each generated in calls
        of at most ``per_call`` jobs (the sampler splits a batch larger than the engine's max batch)."""
        sizes = {min(n_jobs, batch_size)}
        if n_jobs > batch_size and n_jobs % batch_size:
            sizes.add(n_jobs % batch_size)
        if per_call is not None:
            per_call = max(1, per_call)
            sizes = {c for s in sizes for c in ({min(s, per_call)} | ({s % per_call} if s > per_call else set())) if c}
        largest = max(max(sizes), 1)
        return cls(max(1, min(sizes)), largest, height, width, largest)

    @property
    def opt(self) -> int:
        return self.opt_batch if self.opt_batch is not None else self.max_batch

    @property
    def key(self) -> str:
        opt = f"o{self.opt}" if self.opt != self.max_batch else ""
        return f"b{self.min_batch}-{self.max_batch}{opt}_{self.height}x{self.width}"

    def scaled(self, factor: int) -> ShapeProfile:
        """The same profile in graph batch items (``factor`` 2: a guided batch holds each job twice)."""
        return ShapeProfile(self.min_batch * factor, self.max_batch * factor, self.height, self.width,
                            None if self.opt_batch is None else self.opt_batch * factor)


@dataclass(frozen=True)
class TensorrtSettings:
    """TensorRT build options beyond precision and shapes.

    ``workspace_gib``: the most GPU memory TensorRT may use for its tactics while building (None:
    TensorRT's own default, the whole device); lower it when several engines build on one GPU.
    ``layer_norm_fp32``: in fp16 engines, keep LayerNorm/GroupNorm reductions in float32, where half
    precision loses the variance of large activations (ignored for fp32 engines).
    """

    workspace_gib: float | None = None
    layer_norm_fp32: bool = True
    builder_optimization_level: int = 3

    def __post_init__(self) -> None:
        if self.workspace_gib is not None and not self.workspace_gib > 0:
            raise UsageError(f"TensorRT workspace must be a positive number of GiB, got {self.workspace_gib}",
                             fix="use --trt-workspace-gb 4, or leave it out for TensorRT's default")
        if not 0 <= self.builder_optimization_level <= 5:
            raise UsageError(f"TensorRT builder optimisation level must be 0..5, got {self.builder_optimization_level}")

    def cache_tag(self, precision: str) -> str:
        """The part of the cache key these settings change (the workspace only limits the search)."""
        return "-ln32" if precision == "fp16" and self.layer_norm_fp32 else ""


def tensorrt_cache_dir(engine_dir: Path, graph: str, precision: str, profile: ShapeProfile | None,
                       settings: TensorrtSettings | None = None) -> Path:
    """Where TensorRT keeps this graph's engine and timing caches, keyed by what changes the engine.

    Inside the engine folder when it is writable, else in the lesionaug cache folder.
    """
    tag = (settings or TensorrtSettings()).cache_tag(precision)
    key = f"{graph}-{precision}{tag}-trt{tensorrt_version() or 'unknown'}-{profile.key if profile else 'dynamic'}"
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


def trt_shapes(inputs: dict[str, list], profile: ShapeProfile, scale: int) -> dict[str, str]:
    """TensorRT optimisation profile strings (min/opt/max) for a graph's dynamic inputs.

    ``profile`` is in graph batch items; spatial axes are the image size divided by ``scale``
    (pixels per sample cell), except the control image's, which is at full image size.
    """

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
        for kind, batch in (("min", profile.min_batch), ("opt", profile.opt), ("max", profile.max_batch)):
            specs[kind].append(f"{name}:{concrete(name, dims, batch)}")
    return {f"trt_profile_{k}_shapes": ",".join(v) for k, v in specs.items() if v}


def cuda_options(device_id: int, cuda_graph: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": int(device_id), "cudnn_conv_algo_search": "EXHAUSTIVE"}
    if cuda_graph:
        options["enable_cuda_graph"] = "1"
    return options


def provider_entries(provider: str, *, precision: str, engine_dir: Path, graph: str, graph_io: dict,
                     profile: ShapeProfile | None, scale: int, cuda_graph: bool, device_id: int = 0,
                     tensorrt: TensorrtSettings | None = None) -> list:
    """The ``providers=`` list for InferenceSession (best provider first, CPU last for TensorRT).

    ``profile`` is in graph batch items (``ShapeProfile.scaled``), as the graph sees its inputs.
    """
    if provider == "cpu":
        return [ORT_NAMES["cpu"]]
    if provider == "cuda":
        return [(ORT_NAMES["cuda"], cuda_options(device_id, cuda_graph))]
    settings = tensorrt or TensorrtSettings()
    cache = tensorrt_cache_dir(engine_dir, graph, precision, profile, settings)
    trt: dict[str, Any] = {
        "device_id": int(device_id),
        "trt_fp16_enable": precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        # One timing cache for every graph and profile of the engine: a rebuild for a new profile
        # reuses the kernel timings of earlier builds.
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache.parent),
        "trt_builder_optimization_level": settings.builder_optimization_level,
    }
    if precision == "fp16" and settings.layer_norm_fp32:
        trt["trt_layer_norm_fp32_fallback"] = True
    if settings.workspace_gib is not None:
        trt["trt_max_workspace_size"] = int(settings.workspace_gib * GIB)
    if profile is not None:
        trt.update(trt_shapes(graph_io.get("inputs", {}), profile, scale))
    return [(ORT_NAMES["tensorrt"], trt), (ORT_NAMES["cuda"], cuda_options(device_id, False)), ORT_NAMES["cpu"]]
