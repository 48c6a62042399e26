"""Static TensorRT lint: which nodes of an ONNX file the TensorRT ONNX parser of a version would refuse.

``lint(model, version)`` prepares the model as the engine builder does (``core.prepare_onnx``:
TransposedAttention's function inlined, Converse2D left to the plugin) and checks every node, in
subgraphs too, against ``onnx_trt_ops.py``: the operator table of onnx-tensorrt per TensorRT
version (sources inside the file), with the restrictions that are simple to check statically
(the first input's type, inputs that must be constants, forbidden attributes, zero points, string
attribute values). Plugin-backed nodes (Converse2D with plugin_namespace/plugin_version) are not
linted; their library must be loaded at build time. No TensorRT needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from engines.tensorrt.core import DOMAIN, PLUGIN_OPS, TrtError, parse_version, plugin_backed, prepare_onnx

VERSIONS = ("10.3", "10.13", "11")
_TYPE_TAGS = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.DOUBLE: "DOUBLE",
    onnx.TensorProto.INT4: "INT4", onnx.TensorProto.FLOAT8E4M3FN: "FP8", onnx.TensorProto.STRING: "STRING",
    onnx.TensorProto.COMPLEX64: "COMPLEX64", onnx.TensorProto.COMPLEX128: "COMPLEX128",
}
_NEVER = {"STRING", "COMPLEX64", "COMPLEX128"}


@dataclass(frozen=True)
class LintIssue:
    node: str
    op: str
    message: str

    def __str__(self) -> str:
        return f"{self.node} [{self.op}]: {self.message}"


def load_table() -> dict:
    """{"sources": ..., "rules": ..., "versions": {"10.3" | "10.13" | "11": {op: entry}}}."""
    from engines.tensorrt import onnx_trt_ops

    return {"sources": onnx_trt_ops.SOURCES, "rules": onnx_trt_ops.RULES, "versions": onnx_trt_ops.VERSIONS}


def table_version(version) -> str:
    """The table column for a TensorRT version: 10.3-10.12 -> '10.3', 10.13-10.x -> '10.13', 11.x -> '11'."""
    v = parse_version(version)
    if v[:2] < (10, 3):
        raise TrtError(f"TensorRT {version} is not supported: 10.3 or newer (strongly typed networks, IPluginV3)")
    if v[0] >= 11:
        return "11"
    return "10.13" if v[:2] >= (10, 13) else "10.3"


def _types(model: onnx.ModelProto) -> dict[str, int]:
    types: dict[str, int] = {}

    def visit(graph):
        for vi in (*graph.input, *graph.output, *graph.value_info):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                types[vi.name] = vi.type.tensor_type.elem_type
        for init in graph.initializer:
            types[init.name] = init.data_type
        for node in graph.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        types[node.output[0]] = a.t.data_type
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        visit(g)

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # types are a bonus: the op check works without them
        inferred = model
    visit(inferred.graph)
    return types


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto | None]:
    consts: dict[str, onnx.TensorProto | None] = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            consts[node.output[0]] = value
    return consts


def _check_node(node, entry, consts, types, issues, name):
    """Append at most one issue for the node: the first restriction it breaks."""
    found: list[LintIssue] = []
    _node_issues(node, entry, consts, types, found, name)
    issues.extend(found[:1])


def _node_issues(node, entry, consts, types, issues, name):
    op = node.op_type
    if entry is None or not entry.get("supported"):
        issues.append(LintIssue(name, op, "not supported by the TensorRT ONNX parser" +
                                (" (no TensorRT layer; for Converse2D use the plugin or --converse-lowering matmul)"
                                 if op in ("DFT", "STFT") else "")))
        return
    attrs = {a.name: a for a in node.attribute}
    for bad in entry.get("forbidden_attrs", ()):
        if bad in attrs:
            issues.append(LintIssue(name, op, f"attribute {bad!r} is not supported"))
    for attr, allowed in entry.get("attr_values", {}).items():
        if attr in attrs:
            value = onnx.helper.get_attribute_value(attrs[attr])
            value = value.decode() if isinstance(value, bytes) else value
            if value not in allowed:
                issues.append(LintIssue(name, op, f"{attr}={value!r} is not supported (only {', '.join(allowed)})"))
    for idx in entry.get("const_inputs", ()):
        if idx < len(node.input) and node.input[idx] and node.input[idx] not in consts:
            issues.append(LintIssue(name, op, f"input {idx} ({node.input[idx]!r}) must be an initializer or a "
                                              f"Constant for this TensorRT version"))
    zp = entry.get("zero_point_input")
    if zp is not None and zp < len(node.input) and node.input[zp]:
        tensor = consts.get(node.input[zp])
        if tensor is not None and np.any(numpy_helper.to_array(tensor) != 0):
            issues.append(LintIssue(name, op, "the zero point must be 0 (symmetric quantization)"))
    for value in [*node.input[:1], *node.output]:
        tag = _TYPE_TAGS.get(types.get(value, 0)) if value else None
        if tag in _NEVER:
            issues.append(LintIssue(name, op, f"tensor {value!r} is {tag}, a type TensorRT does not have"))
            return
    if node.input and node.input[0] and entry.get("types"):
        tag = _TYPE_TAGS.get(types.get(node.input[0], 0))
        if tag and tag != "DOUBLE" and tag not in entry["types"]:
            issues.append(LintIssue(name, op, f"input type {tag} is not supported (only {', '.join(entry['types'])})"))


def _walk(graph, table, types, issues, outer_consts, functions):
    consts = {**outer_consts, **_constants(graph)}
    for i, node in enumerate(graph.node):
        name = node.name or f"node {i}"
        if node.domain == DOMAIN:
            if plugin_backed(node):
                continue
            if node.op_type in PLUGIN_OPS:
                want = ", ".join(f'{k}="{v}"' for k, v in PLUGIN_OPS[node.op_type].items())
                issues.append(LintIssue(name, f"{DOMAIN}::{node.op_type}",
                                        f"custom node without the plugin attributes {want}: neither the plugin nor "
                                        f"the parser takes it (re-export, or --converse-lowering matmul)"))
            elif (node.domain, node.op_type) not in functions:
                issues.append(LintIssue(name, f"{DOMAIN}::{node.op_type}", "custom node with no TensorRT plugin and "
                                                                           "no local function"))
            continue
        if node.domain not in ("", "ai.onnx"):
            if (node.domain, node.op_type) in functions:
                continue
            issues.append(LintIssue(name, f"{node.domain}::{node.op_type}",
                                    "custom-domain node: TensorRT needs a plugin of that name loaded"))
            continue
        _check_node(node, table.get(node.op_type), consts, types, issues, name)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _walk(a.g, table, types, issues, consts, functions)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _walk(g, table, types, issues, consts, functions)


def lint(model: onnx.ModelProto | str | Path, version) -> list[LintIssue]:
    """Every node the TensorRT ``version`` parser would not import (plugin-backed nodes excepted)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    key = table_version(version)
    table = load_table()["versions"][key]
    prepared, _ = prepare_onnx(model, version, strict=False)
    typed, _ = prepare_onnx(model, (10, 15), strict=False)  # same node names; keeps plugin functions for inference
    types = _types(typed)
    issues: list[LintIssue] = []
    functions = {(f.domain, f.name) for f in prepared.functions}
    _walk(prepared.graph, table, types, issues, {}, functions)
    return issues


def format_report(issues: list[LintIssue], version, path: str = "") -> str:
    where = f"{path}: " if path else ""
    if not issues:
        return f"{where}TensorRT {version}: every node parses (plugin-backed nodes need the plugin library)"
    lines = [f"{where}TensorRT {version}: {len(issues)} node(s) would not parse"]
    lines += [f"  {issue}" for issue in issues]
    return "\n".join(lines)
