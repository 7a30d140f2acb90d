"""The CPU denoiser cut into stages, so that what a generation repeats is computed once.

The fused denoiser's inputs change at different rates while one batch of images is generated:

- ``controlnet_cond`` and ``conditioning_scale`` are the same at every step;
- ``sample`` and ``timestep`` change at every step, but with classifier-free guidance the batch is
  two halves that are equal in them (and in the control image);
- ``encoder_hidden_states`` is where the two halves differ.

``plan_stages`` cuts the graph, once at load time, by what each node depends on:

- *control*: nodes that read only the control inputs (the ControlNet's conditioning embedding).
  ``StagedDenoiser`` runs them once for as long as the control inputs stay the same, on the distinct
  rows of the batch;
- *shared*: the rest of the nodes that do not read the text (the time embeddings, and the down
  blocks of the UNet and the ControlNet before their first cross-attention), run once per step on
  the distinct rows: with guidance, on one half;
- *text*: everything else, on the whole batch.

A stage hands the next one the per-sample float tensors it reads (its *boundary*); shape arithmetic
a later stage needs is recomputed there from the graph inputs, on that stage's own batch. Each batch
item is computed alone by the CPU kernels, so a row computed once is the row the whole graph would
compute twice (the tests compare the two, to 1e-5: the cut changes which operators ORT can fuse).

Measured end to end (benchmarks/results/engine.json, the same run timing the engine with the
denoiser whole as a third side, 20 steps, guidance 7.5, 2 cores): 1.14x faster at 256 px batch 1,
1.13x at 256 px batch 8, 1.17x at 64 px batch 8; at 64 px batch 1 the three smaller runs per step
cost more than the shared part saves (0.94x in that run, 1.01x in another). Graphs that do not have
the fused denoiser's inputs are run whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lesionaug.engine.binding import host_feeds

TEXT = "encoder_hidden_states"
CONTROL_INPUTS = ("controlnet_cond", "conditioning_scale")  # fixed for a whole generation
STEP_INPUTS = ("sample", "timestep")  # change every step, equal in both guidance halves
ALL_INPUTS = (*STEP_INPUTS, TEXT, *CONTROL_INPUTS)
_FLOATS = (1, 10)
# Ops whose output depends on their input's shape only. The exporter takes a batch size from
# whichever input has it (the text's, say) and reuses it; that must not make the nodes using it
# depend on the text. A stage reading such a shape gets that input's rows for its own batch.
_SHAPE_ONLY = ("Shape", "Size")  # onnx.TensorProto.FLOAT, FLOAT16


@dataclass(frozen=True)
class Stage:
    """One stage: its graph (a serialized ModelProto), the graph inputs and earlier-stage tensors it
    reads, and the tensors it hands on."""

    name: str
    model: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: int


@dataclass(frozen=True)
class StagePlan:
    control: Stage
    shared: Stage
    text: Stage

    def describe(self) -> dict[str, int]:
        return {stage.name: stage.nodes for stage in (self.control, self.shared, self.text)}


def _node_stages(graph) -> dict[str, str]:
    """Stage of each tensor produced by a node: 'control', 'shared', 'text' or '' (constants only)."""
    deps: dict[str, frozenset] = {i.name: frozenset([i.name]) for i in graph.input}
    stage: dict[str, str] = {}
    for node in graph.node:  # a valid ONNX graph lists its nodes in topological order
        read: frozenset = frozenset().union(*(deps.get(name, frozenset()) for name in node.input if name))
        if node.op_type in _SHAPE_ONLY:
            read = frozenset()
        if TEXT in read:
            kind = "text"
        elif read and read <= set(CONTROL_INPUTS):
            kind = "control"
        elif read:
            kind = "shared"
        else:
            kind = ""
        for out in node.output:
            deps[out] = read
            stage[out] = kind
    return stage


def plan_stages(model, output: str = "noise_pred") -> StagePlan | None:
    """The three stages of a loaded denoiser ``ModelProto`` (weights may stay external), or None when
    the graph is not the fused denoiser or nothing would be computed less often."""
    import onnx
    from onnx.utils import Extractor

    graph = model.graph
    names = {i.name for i in graph.input}
    if names != set(ALL_INPUTS) or [o.name for o in graph.output] != [output]:
        return None
    infos = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}

    def dims(name: str):
        info = infos.get(name)
        return list(info.type.tensor_type.shape.dim) if info is not None and info.type.HasField("tensor_type") else []

    batch = dims("sample")[0].dim_param if dims("sample") else ""
    if not batch:
        return None

    def per_sample_float(name: str) -> bool:
        d = dims(name)
        return bool(d) and d[0].dim_param == batch and infos[name].type.tensor_type.elem_type in _FLOATS

    stage = _node_stages(graph)
    order = {"control": 0, "shared": 1, "text": 2}
    # Tensors a later stage reads from an earlier one: handed on when they are per-sample floats.
    handed = {"control": set(), "shared": set()}
    for node in graph.node:
        kind = stage[node.output[0]] if node.output else ""
        for name in node.input:
            source = stage.get(name, "")
            if source in handed and kind and order[kind] > order[source] and per_sample_float(name):
                handed[source].add(name)
    if not handed["shared"]:
        return None

    extractor = Extractor(model)

    def extract(inputs: set[str], outputs: list[str], earlier: tuple[str, ...]):
        """The subgraph computing ``outputs`` from ``inputs``; any per-sample float it would recompute
        from an earlier stage (not just shape arithmetic) is handed on instead."""
        while True:
            sub = extractor.extract_model(sorted(inputs), outputs)
            # Read by a node of this stage or by shape arithmetic (which would pull the earlier
            # stage's nodes in to recompute a shape): cut there.
            more = {name for node in sub.graph.node if stage.get(node.output[0], "") not in earlier
                    for name in node.input
                    if stage.get(name, "") in earlier and per_sample_float(name) and name not in inputs}
            if not more:
                break
            for name in more:
                handed[stage[name]].add(name)
            inputs |= more
        read = {name for node in sub.graph.node for name in node.input}
        kept = [i for i in sub.graph.input if i.name in read]
        del sub.graph.input[:]
        sub.graph.input.extend(kept)
        return sub

    text = extract(set(ALL_INPUTS) | handed["control"] | handed["shared"], [output], ("control", "shared"))
    shared_outputs = sorted(handed["shared"])
    # The earlier stages may read the text's shape (for a batch size), never its values.
    shared = extract({*STEP_INPUTS, *CONTROL_INPUTS, TEXT} | handed["control"], shared_outputs, ("control",))
    control_outputs = sorted(handed["control"])
    if control_outputs:
        control = extract({*CONTROL_INPUTS, TEXT}, control_outputs, ())
    else:  # a graph whose control inputs feed the rest directly: an empty control stage
        control = onnx.ModelProto()

    def make(name: str, sub, outputs) -> Stage:
        return Stage(name, sub.SerializeToString(), tuple(i.name for i in sub.graph.input), tuple(outputs),
                     len(sub.graph.node))

    return StagePlan(make("control", control, control_outputs), make("shared", shared, shared_outputs),
                     make("text", text, [output]))


@dataclass
class StagedDenoiser:
    """Runs a ``StagePlan`` on torch tensors, with the same call as ``SplitBatchRunner``.

    ``control``, ``shared`` and ``text`` are ``SplitBatchRunner``s over the stage graphs (None for an
    empty control stage). A batch is *guided* when it is two halves equal in every input but the
    text; the control and shared stages then run on one half.
    """

    plan: StagePlan
    control: Any
    shared: Any
    text: Any
    _control_key: tuple | None = None
    _control_out: dict | None = None

    def __call__(self, inputs: dict, output_shape: tuple[int, ...]):
        import torch

        return torch.from_numpy(self.run(host_feeds(inputs)))

    def run(self, feeds: dict):
        import numpy as np

        batch = feeds["sample"].shape[0]
        half = batch // 2
        guided = batch % 2 == 0 and all(
            np.array_equal(feeds[name][:half], feeds[name][half:]) for name in (*STEP_INPUTS, "controlnet_cond"))
        rows = half if guided else batch
        distinct = {name: (feeds[name][:rows] if name != "conditioning_scale" else feeds[name]) for name in ALL_INPUTS}

        handed = dict(self._control_outputs(distinct))
        shared_feeds = {name: distinct.get(name, handed.get(name)) for name in self.plan.shared.inputs}
        handed.update(zip(self.plan.shared.outputs, self.shared.run(shared_feeds, list(self.plan.shared.outputs))))
        text_feeds = {name: feeds[name] if name in feeds else handed[name] for name in self.plan.text.inputs}
        repeated = frozenset(handed) if guided else frozenset()
        return self.text.run(text_feeds, list(self.plan.text.outputs), repeated)[0]

    def _control_outputs(self, distinct: dict) -> dict:
        """The control stage's tensors for these control inputs, computed again only when they change."""
        import numpy as np

        if self.control is None:
            return {}
        key = tuple(distinct[name] for name in self.plan.control.inputs)
        cached = self._control_key
        if cached is None or not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(key, cached)):
            feeds = dict(zip(self.plan.control.inputs, key))
            values = self.control.run(feeds, list(self.plan.control.outputs))
            self._control_out = dict(zip(self.plan.control.outputs, values))
            self._control_key = tuple(a.copy() for a in key)
        return self._control_out
