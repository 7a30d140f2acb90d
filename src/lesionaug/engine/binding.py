"""Moving tensors in and out of an ONNX Runtime session.

The sampler keeps its tensors in CPU torch (the diffusers schedulers are torch code, and noise is
drawn on the CPU). On the CPU provider a run is a zero-copy numpy view in and out (``GraphRunner``).
On a GPU provider, ``DeviceRunner`` binds inputs and output as ONNX Runtime device values
(``OrtValue`` on CUDA), uploading only what changed since the last call; with CUDA graphs, each
input shape gets fixed device buffers and a captured graph that later steps replay. Neither needs
a CUDA build of torch.

On a multi-core CPU, ``SplitBatchRunner`` splits a batch into one slice per core and runs the slices
concurrently on a single-threaded session (ORT releases the GIL in ``run``): each core then runs whole
convolutions on its own instead of all cores meeting at a barrier after every operator. On 2 cores
the compact denoiser at 64 px, batch 16, took 155 ms per call this way against 233 ms with two
intra-op threads (the end-to-end effect is in benchmarks/results/engine.json). The slices' results
measured identical to the whole batch's: the CPU kernels compute each batch item on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lesionaug.engine.providers import import_onnxruntime

@dataclass
class GraphRunner:
    """Runs one session on the CPU provider: torch tensors in, a torch tensor out (numpy views)."""

    session: Any
    output_name: str

    def __call__(self, inputs: dict, output_shape: tuple[int, ...]):
        import torch

        out = self.session.run([self.output_name], host_feeds(inputs))[0]
        return torch.from_numpy(out)


@dataclass
class _Uploaded:
    """A device copy of a host tensor, valid while the tensor is the same object, unchanged."""

    source: Any
    version: int
    value: Any


@dataclass
class _CapturedShape:
    """Fixed device buffers of one input shape: a CUDA graph replays on the same addresses."""

    graph_id: int
    inputs: dict
    output: Any
    binding: Any
    sources: dict = field(default_factory=dict)  # input name -> (tensor, version) last copied in


@dataclass
class DeviceRunner:
    """Runs one session on a GPU provider with inputs and output bound as ONNX Runtime device values.

    The sampler's tensors stay in (CPU) torch; no CUDA build of torch is needed. Per call, only the
    inputs that changed travel to the device: a tensor passed again unchanged (the text embeddings,
    the control image and scale of one generation) is uploaded once and its device copy reused. The
    output is copied back to the host, a few hundred KB per step for a Stable Diffusion latent.

    With ``cuda_graph``, each input shape gets fixed device buffers, updated in place, and a CUDA
    graph that ORT captures on the first runs and replays after. A capture that fails on the first
    run is not fatal: ``rebuild()`` gives a session without graphs, ``on_fallback(reason)`` is told
    once, and the run goes on (``device_type`` "cpu" runs the same code on the CPU, for tests).
    """

    session: Any
    output_name: str
    device_type: str = "cuda"
    device_id: int = 0
    cuda_graph: bool = False
    rebuild: Callable[[], Any] | None = None
    on_fallback: Callable[[str], None] | None = None
    _uploaded: dict = field(default_factory=dict)
    _shapes: dict = field(default_factory=dict)
    _replayed: bool = False

    def __call__(self, inputs: dict, output_shape: tuple[int, ...]):
        import torch

        if self.cuda_graph:
            try:
                out = self._run_captured(inputs, output_shape)
                self._replayed = True
                return torch.from_numpy(out)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own types; only a first failure is caught
                if self._replayed or self.rebuild is None:
                    raise
                self._fall_back(exc)
        return torch.from_numpy(self._run_bound(inputs))

    def _fall_back(self, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.session = self.rebuild()
        self.cuda_graph = False
        self._shapes.clear()
        if self.on_fallback is not None:
            self.on_fallback(f"CUDA graph capture failed on the first run ({reason}); running without CUDA graphs")

    def _device_value(self, name: str, tensor) -> Any:
        ort = import_onnxruntime()
        cached = self._uploaded.get(name)
        version = getattr(tensor, "_version", 0)
        if cached is not None and cached.source is tensor and cached.version == version:
            return cached.value
        value = ort.OrtValue.ortvalue_from_numpy(host_array(tensor), self.device_type, self.device_id)
        self._uploaded[name] = _Uploaded(tensor, version, value)
        return value

    def _run_bound(self, inputs: dict) -> np.ndarray:
        binding = self.session.io_binding()
        for name, tensor in inputs.items():
            binding.bind_ortvalue_input(name, self._device_value(name, tensor))
        binding.bind_output(self.output_name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    def _run_captured(self, inputs: dict, output_shape: tuple[int, ...]) -> np.ndarray:
        ort = import_onnxruntime()
        key = tuple(sorted((name, tuple(t.shape), str(t.dtype)) for name, t in inputs.items()))
        shape = self._shapes.get(key)
        if shape is None:
            buffers = {name: ort.OrtValue.ortvalue_from_shape_and_type(list(t.shape), host_array(t).dtype,
                                                                       self.device_type, self.device_id)
                       for name, t in inputs.items()}
            output = ort.OrtValue.ortvalue_from_shape_and_type(list(output_shape), np.float32, self.device_type,
                                                               self.device_id)
            binding = self.session.io_binding()
            for name, value in buffers.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output(self.output_name, output)
            shape = self._shapes[key] = _CapturedShape(len(self._shapes) + 1, buffers, output, binding)
        for name, tensor in inputs.items():
            seen = shape.sources.get(name)
            version = getattr(tensor, "_version", 0)
            if seen is None or seen[0] is not tensor or seen[1] != version:
                shape.inputs[name].update_inplace(host_array(tensor))
                shape.sources[name] = (tensor, version)
        options = ort.RunOptions()
        options.add_run_config_entry("gpu_graph_id", str(shape.graph_id))
        self.session.run_with_iobinding(shape.binding, options)
        return shape.output.numpy()


def host_array(tensor) -> np.ndarray:
    """A torch tensor (or array) as a contiguous host numpy array (a view when it already is one)."""
    if isinstance(tensor, np.ndarray):
        return np.ascontiguousarray(tensor)
    return tensor.detach().cpu().contiguous().numpy()


def host_feeds(inputs: dict) -> dict:
    """Torch tensors as numpy feeds (views when they are already contiguous on the CPU)."""
    return {name: host_array(t) for name, t in inputs.items()}


def batched_inputs(session) -> frozenset[str]:
    """The inputs whose first axis is the batch (a symbolic dimension in the exported graph)."""
    return frozenset(i.name for i in session.get_inputs() if i.shape and not isinstance(i.shape[0], int))


def split_sizes(batch: int, parts: int) -> list[int]:
    """``batch`` items in ``parts`` contiguous slices whose sizes differ by at most one."""
    base, extra = divmod(batch, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]


def _rows(a: np.ndarray, start: int, size: int, repeated: bool) -> np.ndarray:
    """Rows ``start:start + size`` of ``a``, or of ``a`` stacked twice when ``repeated``."""
    if not repeated:
        return a[start:start + size]
    half = a.shape[0]
    first = start % half
    if first + size <= half:
        return a[first:first + size]
    return np.take(a, np.arange(start, start + size) % half, axis=0)


@dataclass
class SplitBatchRunner:
    """CPU only: a batch of at least ``workers`` items runs as ``workers`` concurrent slices on a
    single-threaded session; a smaller batch runs on a session with ``workers`` intra-op threads,
    built by ``build_threaded`` the first time one comes (so a denoiser that always sees a guided,
    doubled batch never holds a second copy of its weights)."""

    session: Any  # intra_op_num_threads == 1
    output_name: str | None  # what a call returns (``run`` names its outputs)
    workers: int
    build_threaded: Callable[[], Any]
    _threaded: Any = None
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._batched = batched_inputs(self.session)

    def __call__(self, inputs: dict, output_shape: tuple[int, ...]):
        import torch

        return torch.from_numpy(self.run(host_feeds(inputs), [self.output_name])[0])

    def run(self, feeds: dict, outputs: list[str], repeated: frozenset[str] = frozenset()) -> list[np.ndarray]:
        """``outputs`` for numpy ``feeds``, the batch split across the cores when it allows.

        ``repeated``: batched inputs given for the first half of the batch only, the second half being
        the same rows again (a guided batch's shared tensors); a slice reads them without a copy when
        its rows fall in one half.
        """
        batch = next((feeds[name].shape[0] for name in feeds if name in self._batched and name not in repeated), 1)
        if batch < self.workers:
            feeds = {name: (np.concatenate([a, a]) if name in repeated else a) for name, a in feeds.items()}
            return self._threaded_session().run(outputs, feeds)
        slices, start = [], 0
        for size in split_sizes(batch, self.workers):
            slices.append({name: _rows(a, start, size, name in repeated) if name in self._batched else a
                           for name, a in feeds.items()})
            start += size
        parts = list(self._executor().map(lambda part: self.session.run(outputs, part), slices))
        return [np.concatenate([part[k] for part in parts], axis=0) for k in range(len(outputs))]

    def _threaded_session(self):
        with self._lock:
            if self._threaded is None:
                self._threaded = self.build_threaded()
            return self._threaded

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lesionaug-ort")
            return self._pool
