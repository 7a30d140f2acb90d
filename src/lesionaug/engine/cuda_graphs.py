"""Can the CUDA provider run a graph under CUDA graphs? Decided from the graph file, on any machine.

A CUDA graph replays the GPU kernels of one run; nodes that ONNX Runtime runs on the CPU are not
in it, so a graph with CPU nodes cannot be captured (ORT refuses it, or the capture fails on the
first run). The CUDA provider puts nodes on the CPU by a rule of its own (``GetCpuPreferredNodes``
in ORT's ``fallback_cpu_capability.cc``): starting from tensors its kernels leave in host memory
(the output of ``Shape`` and ``Size``), a node whose every input is such a host tensor, an
initializer or a graph input runs on the CPU, and its outputs become host tensors in turn; a node
that reads the host tensor where its CUDA kernel wants it in host memory anyway (the shape of a
``Reshape``, the starts of a ``Slice``) stays on the GPU, as does any node reading float16. The
dynamo exporter writes such shape arithmetic (``Shape -> Gather -> Unsqueeze -> Concat``) for every
dynamic axis, so its graphs usually have CPU nodes; ``cpu_placed_nodes`` finds them the same way,
and the engine does not ask for CUDA graphs where it finds any.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Outputs the CUDA kernels leave in host memory, by op type.
HOST_OUTPUTS = {"Shape": (0,), "Size": (0,)}
# Inputs the CUDA kernels read from host memory, by op type (index of each such input).
HOST_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Slice": (1, 2, 3, 4), "ConstantOfShape": (0,), "Tile": (1,),
    "Resize": (1, 2, 3), "Upsample": (1,), "Unsqueeze": (1,), "Squeeze": (1,), "Range": (0, 1, 2),
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,),
    "ReduceL2": (1,), "Pad": (1, 2, 3), "TopK": (1,), "Split": (1,), "OneHot": (1,),
}
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


def _value_types(model) -> dict[str, int]:
    """Element type of every typed value of the graph (inputs, initializers, inferred intermediates)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is a refinement; without it only declared types are known
        inferred = model
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        types[value.name] = value.type.tensor_type.elem_type
    return types


def cpu_placed_nodes(model) -> Counter:
    """Op type -> how many nodes of ``model`` (a ModelProto) the CUDA provider would run on the CPU."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    graph_inputs = {v.name for v in graph.input}
    types = _value_types(model)
    host: set[str] = set()
    for node in graph.node:  # a valid ONNX graph lists its nodes in topological order
        if node.op_type in HOST_OUTPUTS:
            host.update(node.output[i] for i in HOST_OUTPUTS[node.op_type] if i < len(node.output))
    placed: Counter = Counter()
    for node in graph.node:
        if node.op_type in HOST_OUTPUTS or not any(name in host for name in node.input):
            continue
        on_cpu = True
        for index, name in enumerate(node.input):
            if not name:
                continue
            if types.get(name) == _FLOAT16:
                on_cpu = False
                break
            if name in initializers or name in graph_inputs:
                continue
            if name not in host or index in HOST_INPUTS.get(node.op_type, ()):
                on_cpu = False
                break
        if on_cpu:
            placed[node.op_type] += 1
            host.update(out for out in node.output if out)
    return placed


def cuda_graph_blocker(path: Path) -> str | None:
    """Why the graph at ``path`` cannot run under CUDA graphs, or None when nothing stops it."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    placed = cpu_placed_nodes(model)
    if not placed:
        return None
    kinds = ", ".join(f"{op} {n}" for op, n in placed.most_common(4))
    return (f"the CUDA provider would run {sum(placed.values())} shape nodes of {Path(path).name} on the CPU "
            f"({kinds}), which a CUDA graph cannot capture")
