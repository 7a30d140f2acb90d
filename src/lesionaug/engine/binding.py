"""Moving tensors in and out of an ONNX Runtime session.

The sampler keeps its tensors in torch (the diffusers schedulers are torch code) on the engine's
device. On the CPU a run is a zero-copy numpy view in and out. On a GPU with a CUDA torch build the
inputs and output are bound to torch's device memory with IO binding, so nothing goes through the
host between denoising steps; with CUDA graphs, each input shape gets static buffers and a captured
graph that later steps replay.

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

_NUMPY = {"torch.float32": np.float32, "torch.float16": np.float16, "torch.int64": np.int64, "torch.int32": np.int32}


def _np_dtype(tensor) -> Any:
    return _NUMPY[str(tensor.dtype)]


@dataclass
class _CapturedGraph:
    graph_id: int
    inputs: dict
    output: Any
    binding: Any


@dataclass
class GraphRunner:
    """Runs one session on torch tensors; the output comes back on the same device as the inputs."""

    session: Any
    output_name: str
    device: str = "cpu"  # where tensors live: "cpu" or "cuda"
    device_id: int = 0
    cuda_graph: bool = False
    _graphs: dict = field(default_factory=dict)

    def __call__(self, inputs: dict, output_shape: tuple[int, ...]):
        if self.device == "cpu":
            return self._run_host(inputs)
        if self.cuda_graph:
            return self._run_captured(inputs, output_shape)
        return self._run_bound(inputs, output_shape)

    def _run_host(self, inputs: dict):
        import torch

        out = self.session.run([self.output_name], host_feeds(inputs))[0]
        return torch.from_numpy(out)

    def _bind(self, binding, inputs: dict, output) -> None:
        for name, t in inputs.items():
            binding.bind_input(name, "cuda", self.device_id, _np_dtype(t), list(t.shape), t.data_ptr())
        binding.bind_output(self.output_name, "cuda", self.device_id, np.float32, list(output.shape),
                            output.data_ptr())

    def _run_bound(self, inputs: dict, output_shape: tuple[int, ...]):
        import torch

        inputs = {name: t.contiguous() for name, t in inputs.items()}
        output = torch.empty(output_shape, dtype=torch.float32, device=f"cuda:{self.device_id}")
        binding = self.session.io_binding()
        self._bind(binding, inputs, output)
        torch.cuda.synchronize()  # torch's writes must land before ORT's stream reads them
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return output

    def _run_captured(self, inputs: dict, output_shape: tuple[int, ...]):
        import torch

        ort = import_onnxruntime()

        key = tuple(sorted((name, tuple(t.shape), str(t.dtype)) for name, t in inputs.items()))
        graph = self._graphs.get(key)
        if graph is None:
            static = {name: torch.empty_like(t).contiguous() for name, t in inputs.items()}
            output = torch.empty(output_shape, dtype=torch.float32, device=f"cuda:{self.device_id}")
            binding = self.session.io_binding()
            self._bind(binding, static, output)
            graph = self._graphs[key] = _CapturedGraph(len(self._graphs) + 1, static, output, binding)
        for name, t in inputs.items():
            graph.inputs[name].copy_(t)
        torch.cuda.synchronize()
        options = ort.RunOptions()
        options.add_run_config_entry("gpu_graph_id", str(graph.graph_id))
        self.session.run_with_iobinding(graph.binding, options)
        graph.binding.synchronize_outputs()
        return graph.output.clone()


def host_feeds(inputs: dict) -> dict:
    """Torch tensors as numpy feeds (views when they are already contiguous on the CPU)."""
    return {name: t.detach().cpu().contiguous().numpy() for name, t in inputs.items()}


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
