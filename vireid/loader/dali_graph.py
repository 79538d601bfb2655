"""A pre-flight check of a DALI graph's definition: no GPU operator receives a data type it
has no kernel for.

DALI reports such a mismatch only when the first batch runs on a GPU, so a CPU-only machine
would never see it. The graph is walked as defined (no build, no GPU needed) and each node's
output type is inferred from its operator's arguments; the gaps below are read off DALI's
operator library (the GPU ``erase`` is instantiated for int8 … uint64 and float only, the
CPU one also for float16; ``coord_transform`` for uint8, int16, uint16, int32 and float).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vireid.errors import VireidError

# GPU operator → input types with no GPU kernel (DALI 2.x)
GPU_KERNEL_GAPS = {"Erase": frozenset({"FLOAT16"}),
                   # instantiated for uint8, int16, uint16, int32 and float only
                   "CoordTransform": frozenset({"FLOAT16", "INT8", "UINT32", "INT64",
                                                "UINT64", "FLOAT64"})}
# operators whose output type is their ``dtype`` argument, else this default
TYPED_OUTPUTS = {"CropMirrorNormalize": "FLOAT", "decoders__Image": "UINT8",
                 "decoders__ImageSlice": "UINT8", "CoordTransform": "FLOAT"}


@dataclass(frozen=True)
class Node:
    """One operator of the graph: its schema name, device and its first input's type."""
    operator: str
    device: str
    input_type: str | None
    output_type: str | tuple | None  # a tuple for multi-output sources
    arguments: dict = field(default_factory=dict, compare=False)  # as the graph defines them


def graph_nodes(pipe) -> list[Node]:
    """Every operator reachable from the pipeline's outputs (an empty list if this DALI keeps
    its defined graph elsewhere)."""
    nodes: dict[int, Node] = {}
    for output in getattr(pipe, "_graph_out", None) or ():
        _visit(output, nodes)
    return list(nodes.values())


def _visit(data_node, nodes: dict[int, Node]) -> str | None:
    """The output type of ``data_node``, recording its operator (and its inputs') on the way."""
    instance = data_node.source
    if id(instance) not in nodes:
        inputs = [_visit(node, nodes) for node in getattr(instance, "_inputs", ())]
        operator = instance._op
        name = getattr(operator, "schema_name", type(operator).__name__)
        arguments = dict(getattr(operator, "_init_args", {}))
        declared = arguments.get("dtype", getattr(operator, "_dtype", None))
        first = inputs[0] if inputs else None
        device = getattr(operator, "_device", None) or data_node.device
        nodes[id(instance)] = Node(name, device, first,
                                   _output_type(declared, TYPED_OUTPUTS.get(name, first)),
                                   arguments)
    node = nodes[id(instance)]
    output = node.output_type
    return output[int(getattr(data_node, "index", 0))] if isinstance(output, tuple) else output


def _output_type(declared, default):
    """A declared ``dtype`` (one per output for multi-output sources) or ``default``."""
    if isinstance(declared, (list, tuple)):
        return tuple(_type_name(d) if d is not None else None for d in declared)
    return _type_name(declared) if declared is not None else default


def _type_name(dtype) -> str:
    return getattr(dtype, "name", str(dtype)).upper()


def kernel_gaps(pipe) -> list[str]:
    """The GPU operators of ``pipe`` fed a type they have no kernel for, as sentences."""
    return [f"GPU operator {node.operator} receives {node.input_type} (DALI has no GPU kernel "
            f"for that type)" for node in graph_nodes(pipe)
            if node.device == "gpu" and node.input_type in GPU_KERNEL_GAPS.get(node.operator, ())]


def check_gpu_kernels(pipe) -> None:
    """Refuse, before anything runs, a graph that would fail on its first GPU batch."""
    gaps = kernel_gaps(pipe)
    if gaps:
        raise VireidError("DALI graph", "; ".join(gaps))
