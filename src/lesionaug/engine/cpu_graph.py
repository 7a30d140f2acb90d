"""Exact rewrites of an exported graph for ONNX Runtime's CPU provider, applied when a session loads.

The graphs on disk stay as exported and verified (GPU providers and TensorRT get them unchanged);
a CPU session gets a rewritten copy in memory. Each rewrite computes the same numbers in fewer
passes over memory, which is what bounds these models on a CPU once convolutions run near the
core's peak (measured at 256 px on the compact model: convolutions 55 % of a sample's time, the
rest mostly memory-bound element-wise work and attention score matrices):

- ``groupnorm_affine``: GroupNorm is exported as Reshape -> InstanceNormalization -> Reshape ->
  Mul(gamma) -> Add(beta) (on NCHW tensors, and on NCL ones in a VAE's attention block). The
  per-channel Mul and Add become one BatchNormalization with mean 0,
  variance 1 and epsilon 0 (``x * gamma + beta``), so the affine step reads and writes the tensor
  once instead of twice. Same results bit for bit in every measurement.
- ``sliced_attention``: in a self-attention, MatMul(q, k^T) -> Softmax -> MatMul(., v) runs on
  slices of the query rows, so each slice's score matrix stays in the core's cache instead of
  streaming ``heads x tokens x tokens`` floats through memory three times (16 MB per sample at
  256 px in the compact model). Rows are independent in all three operations, so the result is the
  same; slices are at least ``MIN_ROWS`` rows and at most ``SLICES`` of them, sized at run time from
  the token count, so small images keep one slice (and the unused slices are empty tensors).
  Cross-attention (keys from the text, a few dozen tokens) is left alone.

Only float32 patterns are rewritten; a graph with nothing to rewrite loads from its file as before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SLICES = 8  # at most this many query slices per self-attention
MIN_ROWS = 128  # and at least this many query rows in each (one slice for 128 tokens or fewer)

_FLOAT = 1  # onnx.TensorProto.FLOAT
# Ops between a projection MatMul and the attention MatMul in exported attention blocks.
_PASS_THROUGH = ("Mul", "Div", "Reshape", "Transpose", "Add")


@dataclass
class TunedGraph:
    """A rewritten graph ready for ``InferenceSession``: its bytes, and what was rewritten."""

    model_bytes: bytes
    rewrites: dict[str, int] = field(default_factory=dict)


class _Graph:
    """Producer/consumer lookups and constant values over one ``GraphProto``."""

    def __init__(self, graph, base_dir: Path | None = None) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.base_dir = base_dir
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.constants = {node.output[0]: node.attribute[0].t for node in graph.node
                          if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"}
        self.ranks = {v.name: len(v.type.tensor_type.shape.dim)
                      for v in [*graph.value_info, *graph.input, *graph.output] if v.type.tensor_type.HasField("shape")}
        self._to_array = numpy_helper.to_array
        self._names: set[str] = {*self.producer, *self.initializers, *(i.name for i in graph.input)}

    def constant(self, name: str):
        """The float32 value of an initializer or Constant node (read from its external data file
        when it has one and ``base_dir`` is known), else None."""
        tensor = self.initializers.get(name) or self.constants.get(name)
        if tensor is None or tensor.data_type != _FLOAT:
            return None
        if tensor.data_location == 1:  # external data
            if self.base_dir is None:
                return None
            return self._to_array(tensor, base_dir=str(self.base_dir))
        return self._to_array(tensor)

    def only_consumer(self, name: str, op_type: str):
        users = self.consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in self._outputs():
            return users[0]
        return None

    def made_by(self, name: str, op_type: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def fresh(self, stem: str) -> str:
        name, k = stem, 0
        while name in self._names:
            k += 1
            name = f"{stem}_{k}"
        self._names.add(name)
        return name

    def _outputs(self) -> set[str]:
        return {o.name for o in self.graph.output}


def _attribute(node, name: str, default: Any) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


# -- groupnorm_affine ---------------------------------------------------------------------------


def _channel_vector(value, rank: int):
    """A per-channel constant for a rank-``rank`` NC... tensor, (C, 1, ...) or (1, C, 1, ...), as a
    (C,) vector; else None."""
    if value is None or rank < 3 or value.ndim not in (rank - 1, rank):
        return None
    lead = value.shape[: value.ndim - (rank - 1)]
    if any(d != 1 for d in lead) or any(d != 1 for d in value.shape[-(rank - 2):]):
        return None
    return value.reshape(-1)


def _fold_groupnorm_affine(g: _Graph, replace: dict, new_inits: list) -> int:
    import numpy as np
    from onnx import helper, numpy_helper

    count = 0
    for mul in list(g.graph.node):
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        x, gamma_name = mul.input
        reshape = g.made_by(x, "Reshape")
        if reshape is None or g.made_by(reshape.input[0], "InstanceNormalization") is None:
            continue
        add = g.only_consumer(mul.output[0], "Add")
        rank = g.ranks.get(add.output[0], 0) if add is not None else 0
        if add is None or add.input[0] != mul.output[0] or rank < 3:
            continue
        gamma = _channel_vector(g.constant(gamma_name), rank)
        beta = _channel_vector(g.constant(add.input[1]), rank)
        if gamma is None or beta is None or gamma.shape != beta.shape:
            continue
        channels = gamma.shape[0]
        names = [g.fresh(f"{mul.name or 'groupnorm'}_bn_{part}") for part in ("scale", "bias", "mean", "var")]
        for name, value in zip(names, (gamma, beta, np.zeros(channels), np.ones(channels))):
            new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        node = helper.make_node("BatchNormalization", [x, *names], [add.output[0]],
                                name=g.fresh(f"{mul.name or 'groupnorm'}_affine"), epsilon=0.0)
        replace[id(mul)] = [node]
        replace[id(add)] = []
        count += 1
    return count


# -- sliced_attention ---------------------------------------------------------------------------


def _projection_source(g: _Graph, name: str):
    """The activation a q/k operand was projected from: back through reshapes, transposes,
    scalings and bias adds to the projection MatMul, then its activation input."""
    for _ in range(16):
        node = g.producer.get(name)
        if node is None:
            return None
        if node.op_type == "MatMul":
            return node.input[0]
        if node.op_type not in _PASS_THROUGH:
            return None
        name = node.input[0]
    return None


def slice_sizes(tokens: int, slices: int = SLICES, min_rows: int = MIN_ROWS) -> list[int]:
    """The query rows in each slice for ``tokens`` query tokens: what the rewritten graph computes
    at run time (rows = max(min_rows, ceil(tokens / slices)); trailing slices may be empty)."""
    rows = max(min_rows, -(-tokens // slices))
    return [min(max(tokens - i * rows, 0), rows) for i in range(slices)]


def _slice_self_attention(g: _Graph, replace: dict, new_inits: list, opset: int, slices: int, min_rows: int) -> int:
    import numpy as np
    from onnx import helper, numpy_helper

    if opset < 13:  # Softmax over the last axis only from opset 13; Split takes sizes as an input
        return 0
    count = 0
    consts: dict[str, str] = {}

    def const(key: str, value) -> str:
        if key not in consts:
            consts[key] = g.fresh(f"sliced_attention_{key}")
            new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), consts[key]))
        return consts[key]

    for scores in list(g.graph.node):
        if scores.op_type != "MatMul" or id(scores) in replace:
            continue
        softmax = g.only_consumer(scores.output[0], "Softmax")
        if softmax is None or _attribute(softmax, "axis", -1) not in (-1, g.ranks.get(scores.output[0], 0) - 1):
            continue
        out = g.only_consumer(softmax.output[0], "MatMul")
        if out is None or out.input[0] != softmax.output[0]:
            continue
        query, key_t = scores.input
        value = out.input[1]
        rank = g.ranks.get(query)
        source = _projection_source(g, query)
        if rank is None or rank < 2 or source is None or source != _projection_source(g, key_t):
            continue  # not a self-attention, or shapes unknown
        p = g.fresh(f"{scores.name or 'attention'}_sliced")
        # The sizes of slice_sizes(n), computed from the query's row count n at run time.
        n, ceil_part, per, rows, offsets, left, capped, sizes = (f"{p}/{s}" for s in
                                                                 ("n", "sum", "ceil", "rows", "offsets", "left",
                                                                  "capped", "sizes"))
        nodes = [
            helper.make_node("Shape", [query], [n], start=-2, end=-1),
            helper.make_node("Add", [n, const("slices_minus_one", [slices - 1])], [ceil_part]),
            helper.make_node("Div", [ceil_part, const("slices", [slices])], [per]),
            helper.make_node("Max", [per, const("min_rows", [min_rows])], [rows]),
            helper.make_node("Mul", [const("index", np.arange(slices)), rows], [offsets]),
            helper.make_node("Sub", [n, offsets], [left]),
            helper.make_node("Min", [left, rows], [capped]),
            helper.make_node("Max", [capped, const("zero", [0])], [sizes]),
        ]
        parts = [f"{p}/q{i}" for i in range(slices)]
        nodes.append(helper.make_node("Split", [query, sizes], parts, axis=-2))
        outs = []
        for i, part in enumerate(parts):
            nodes += [helper.make_node("MatMul", [part, key_t], [f"{p}/scores{i}"]),
                      helper.make_node("Softmax", [f"{p}/scores{i}"], [f"{p}/probs{i}"], axis=-1),
                      helper.make_node("MatMul", [f"{p}/probs{i}", value], [f"{p}/out{i}"])]
            outs.append(f"{p}/out{i}")
        nodes.append(helper.make_node("Concat", outs, [out.output[0]], axis=-2))
        for k, node in enumerate(nodes):
            node.name = f"{p}/{k}"
        replace[id(scores)] = nodes
        replace[id(softmax)] = []
        replace[id(out)] = []
        count += 1
    return count


# -- entry points -------------------------------------------------------------------------------


def tune_model(model, *, base_dir: Path | None = None, slices: int = SLICES, min_rows: int = MIN_ROWS) -> dict[str, int]:
    """Apply the CPU rewrites to ``model`` (an ``onnx.ModelProto``) in place; the counts by kind.

    ``base_dir``: the folder of the model's external data, for the per-channel constants read.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    g = _Graph(model.graph, base_dir)
    replace: dict[int, list] = {}
    new_inits: list = []
    counts = Counter()
    counts["groupnorm_affine"] = _fold_groupnorm_affine(g, replace, new_inits)
    counts["sliced_attention"] = _slice_self_attention(g, replace, new_inits, opset, slices, min_rows)
    if not replace:
        return {}
    nodes = []
    for node in model.graph.node:
        nodes.extend(replace.get(id(node), [node]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_inits)
    return {kind: n for kind, n in counts.items() if n}


def tuned_graph(path: Path) -> TunedGraph | None:
    """The CPU-tuned graph of the ONNX file at ``path``, or None when nothing applies.

    External weights are not loaded: the rewritten graph keeps pointing at them (only GroupNorm's
    per-channel vectors are read), and the session is told the folder they are in (``session_config``).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    rewrites = tune_model(model, base_dir=Path(path).parent)
    if not rewrites:
        return None
    try:
        data = model.SerializeToString()
    except ValueError:  # over protobuf's 2 GB: run the graph as exported
        return None
    return TunedGraph(data, rewrites)


def session_config(path: Path) -> dict[str, str]:
    """Session config entries a graph loaded from bytes needs to find its external weights."""
    return {"session.model_external_initializers_file_folder_path": str(Path(path).resolve().parent)}
