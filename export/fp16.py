"""FP16 as a graph property: an FP16-typed graph with FP32 islands and casts at their borders.

Every float tensor becomes FP16 except those computed by an *island* node: LayerNorm statistics and
the Converse2D λ = sigmoid(b − 9) + eps chain (λ ≈ 1e-4 is near FP16's normal range). The custom
nodes take FP16 and compute inside in FP32 (their functions cast), which keeps the attention's
normalisation and softmax and the Converse2D spectral solve in FP32. Graph inputs and outputs stay
FP32 unless ``io_fp16``. The result is strongly typed: every tensor has one declared type, which is
what TensorRT 11 needs.
"""

from __future__ import annotations

import ast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16

# Module classes whose nodes stay FP32 (the dynamo exporter records each node's module classes).
FP32_MODULES = {"LayerNorm", "WithBiasLayerNorm", "BiasFreeLayerNorm", "LayerNorm2d", "Converse2D", "ConverseDataStep"}


def _classes(node: onnx.NodeProto) -> set[str]:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.class_hierarchy":
            try:
                return {str(c).rsplit(".", 1)[-1] for c in ast.literal_eval(prop.value)}
            except (ValueError, SyntaxError):
                return set()
    return set()


def is_island(node: onnx.NodeProto, islands: frozenset[str] = frozenset()) -> bool:
    """Whether a node computes in FP32: a module class of ``FP32_MODULES``, or named in ``islands``
    (the measured islands of ``restormer_deploy.export.islands``)."""
    if node.domain not in ("", "ai.onnx"):
        return False  # custom nodes: FP16 at the border, FP32 inside their functions
    return (bool(node.name) and node.name in islands) or bool(_classes(node) & FP32_MODULES)


# Inputs that stay float32 whatever the data type: Resize's scales (ONNX types them so) and Converse2D's
# λ ≈ 1e-4 (at the edge of FP16's normal range; the TensorRT plugin and the functions read it as FP32).
FP32_INPUTS = {("Resize", 2), ("Converse2D", 2)}


def _wanted(node: onnx.NodeProto, index: int, islands: frozenset[str] = frozenset()) -> int:
    if (node.op_type, index) in FP32_INPUTS or is_island(node, islands):
        return FLOAT
    return HALF


def _float_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {}
    for vi in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def convert_to_fp16(model: onnx.ModelProto, io_fp16: bool = False, islands=()) -> onnx.ModelProto:
    """Return an FP16 copy of an FP32 model exported by this project (value_info must be complete);
    nodes named in ``islands`` stay FP32 besides the module-class islands."""
    islands = frozenset(islands)
    model = onnx.shape_inference.infer_shapes(model, data_prop=False)
    graph = model.graph
    types = _float_types(model)
    is_float = lambda name: types.get(name) == FLOAT  # noqa: E731

    # Each float tensor's new type: decided by its producer.
    new_type: dict[str, int] = {}
    for node in graph.node:
        for out in node.output:
            if is_float(out):
                new_type[out] = FLOAT if is_island(node, islands) else HALF
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, list[int]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            uses.setdefault(name, []).append(_wanted(node, index, islands))
    for name, init in inits.items():
        if init.data_type == FLOAT:
            wanted = uses.get(name, [])
            new_type[name] = FLOAT if wanted and all(w == FLOAT for w in wanted) else HALF
    for vi in graph.input:
        if is_float(vi.name):
            new_type[vi.name] = HALF if io_fp16 else FLOAT

    nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == HALF else 'fp32'}"
            nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"cast_{casts[key]}", to=to))
        return casts[key]

    for node in graph.node:
        want = FLOAT if is_island(node, islands) else HALF
        for i, name in enumerate(node.input):
            if name and name in new_type and new_type[name] != _wanted(node, i, islands):
                node.input[i] = cast(name, _wanted(node, i, islands))
        if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = want
        if node.op_type in ("Constant", "ConstantOfShape"):
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT and want == HALF:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        nodes.append(node)

    for name, init in inits.items():
        if new_type.get(name) == HALF:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name))

    # Graph outputs keep their declared IO type.
    out_type = HALF if io_fp16 else FLOAT
    for vi in graph.output:
        if is_float(vi.name) and new_type.get(vi.name, FLOAT) != out_type:
            produced = vi.name
            renamed = f"{produced}__internal"
            for node in nodes:
                node.output[:] = [renamed if o == produced else o for o in node.output]
                node.input[:] = [renamed if i == produced else i for i in node.input]
            nodes.append(helper.make_node("Cast", [renamed], [produced], name=f"cast_{produced}_out", to=out_type))
            new_type[renamed] = new_type[produced]
            new_type[produced] = out_type

    del graph.node[:]
    graph.node.extend(nodes)
    for vi in graph.input:
        if vi.name in new_type:
            vi.type.tensor_type.elem_type = new_type[vi.name]
    for vi in graph.output:
        vi.type.tensor_type.elem_type = new_type.get(vi.name, vi.type.tensor_type.elem_type)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, data_prop=False)
