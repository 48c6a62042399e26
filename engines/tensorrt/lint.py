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

from restormer_deploy.engines.tensorrt import allowlist
from restormer_deploy.engines.tensorrt.core import TrtError, plugin_backed, prepare_onnx
from restormer_deploy.export.contract import DOMAIN, PLUGIN_OPS, parse_version

VERSIONS = ("10.3", "10.7", "10.13", "11.0", "11.2")  # the first release of each allow-list line
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
    from restormer_deploy.engines.tensorrt import onnx_trt_ops

    return {"sources": onnx_trt_ops.SOURCES, "rules": onnx_trt_ops.RULES, "versions": onnx_trt_ops.VERSIONS}


def table_version(version) -> str:
    """The operator-table column for a TensorRT version: the newest release at or below it that
    changed the table (``onnx_trt_ops.CHANGES``; 10.3 is the base). Refuses versions before 10.3
    and after the newest release this lint knows."""
    from restormer_deploy.engines.tensorrt import onnx_trt_ops

    v = parse_version(version)
    if v[:2] < (10, 3):
        raise TrtError(f"TensorRT {version} is not supported: 10.3 or newer (strongly typed networks, IPluginV3)")
    if v[:2] > allowlist.NEWEST:
        newest = ".".join(map(str, allowlist.NEWEST))
        raise TrtError(f"TensorRT {version} is newer than the newest release this lint knows ({newest}; known: "
                       f"{allowlist.known_releases()}); lint for {newest} or update engines/tensorrt/allowlist.py")
    if not allowlist.is_release(v):
        raise TrtError(f"TensorRT {version} is not a release this lint knows: {allowlist.known_releases()}")
    key = tuple(v[:2]) + (0,) * (2 - len(v[:2]))
    return [r for r in onnx_trt_ops.VERSIONS if onnx_trt_ops._key(r) <= key][-1]


def aborts_inference(model: onnx.ModelProto) -> bool:
    from restormer_deploy.engines.tensorrt.core import _all_nodes

    for node in _all_nodes(model.graph):
        if node.op_type == "Split":
            n = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
            if n is not None and n != len(node.output):
                return True
    return False


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
        # onnx's C++ inference aborts the process (an assert, not an exception) on a Split whose
        # num_outputs differs from its outputs: such a file is linted without inferred types.
        inferred = model if aborts_inference(model) else onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False)
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
    """Table check of an operator our exports never emit: at most one issue, the first it breaks."""
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


def _attr_value(attr: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if attr.name == "to" and isinstance(value, int):
        return onnx.TensorProto.DataType.Name(value)
    return value


def _qdq_issues(node, consts, types) -> list[str]:
    """Explicit quantization: symmetric INT8 zero point, positive constant scale, explicit per-channel axis."""
    found = []
    scale = consts.get(node.input[1]) if len(node.input) > 1 else None
    if scale is not None:
        values = numpy_helper.to_array(scale)
        if values.size == 0 or np.any(values <= 0):
            found.append("the scale must be positive (imp-10.3 L1378-1419)")
        if values.size > 1 and not any(a.name == "axis" for a in node.attribute):
            found.append("a per-channel scale needs an explicit axis: its default is 0 up to 10.10 and 1 from "
                         "10.16 (imp-10.3 L1521-1528, imp-11.0)")
    if len(node.input) > 2 and node.input[2]:
        zp = consts.get(node.input[2])
        if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
            found.append("the zero point must be 0 (symmetric quantization)")
        tag = _TYPE_TAGS.get(types.get(node.input[2], 0))
        if tag == "UINT8":
            found.append("a UINT8 zero point is refused (QuantizeLinear, 10.3) or read as INT8 (imp-10.3 L1352-1355, "
                         "L1455-1462): use INT8")
    return found


def _if_issues(node, consts, types) -> list[str]:
    branches = {a.name: len(a.g.output) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    if len(set(branches.values())) > 1:
        return [f"then and else branches have different output counts {branches}"]
    return []


def _split_issues(node, consts, types) -> list[str]:
    """imp-10.3 Split L5517-5541: num_outputs must be the number of declared outputs, and not given
    together with the split sizes."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    found = []
    if "num_outputs" in attrs and attrs["num_outputs"] != len(node.output):
        found.append(f"num_outputs={attrs['num_outputs']} but {len(node.output)} outputs are declared")
    if "num_outputs" in attrs and len(node.input) > 1 and node.input[1]:
        found.append("num_outputs and the split input given together")
    return found


_SPECIAL = {"QuantizeLinear": _qdq_issues, "DequantizeLinear": _qdq_issues, "If": _if_issues, "Split": _split_issues}


def _allow_list_issues(node, rule: allowlist.Rule, line: str, consts, types, name) -> list[LintIssue]:
    """Every way the node leaves the allow-list ``rule`` (deny by default), each with the rule's sources."""
    op, found = node.op_type, []
    at = allowlist.LINES.index(line)

    def deny(what: str) -> None:
        found.append(LintIssue(name, op, f"{what} [{rule.sources}]"))

    if at < allowlist.LINES.index(rule.since):
        deny(f"not imported before TensorRT {rule.since}")
        return found
    given = len(node.input)
    if not rule.inputs[0] <= given <= rule.inputs[1]:
        deny(f"{given} input(s); the parser takes {rule.inputs[0]} to {rule.inputs[1]}")
    declared = len(node.output)
    named = sum(1 for o in node.output if o)
    if rule.outputs is None:
        if named < declared:
            deny("an output with an empty name: from 10.6 the non-empty outputs must match what the importer "
                 "returns (one per declared output)")
    elif (declared if line == "10.3" else named) > rule.outputs:
        deny(f"{declared} outputs; the importer returns {rule.outputs}"
             + (" (10.3-10.5 count empty names too)" if line == "10.3" else ""))
    attrs = {a.name: a for a in node.attribute}
    for attr in node.attribute:
        if attr.name not in rule.attrs:
            deny(f"attribute {attr.name!r} is not in the allow-list ({', '.join(rule.attrs) or 'none'})")
            continue
        allowed = rule.attrs[attr.name]
        if allowed is not allowlist.ANY:
            value = _attr_value(attr)
            if value not in allowed:
                deny(f"{attr.name}={value!r} is not accepted (only {', '.join(map(str, allowed))})")
    for required in rule.required:
        if required not in attrs:
            deny(f"attribute {required!r} is required")
    for idx in range(given):
        first = rule.empty_inputs.get(idx)
        if not node.input[idx] and first is not None and at < allowlist.LINES.index(first):
            deny(f"input {idx} is omitted (empty name): read as a tensor before TensorRT {first}")
    for idx, from_line in rule.const_inputs.items():
        if idx < given and node.input[idx] and node.input[idx] not in consts:
            if from_line is None or at < allowlist.LINES.index(from_line):
                when = "" if from_line is None else f" before TensorRT {from_line}"
                deny(f"input {idx} ({node.input[idx]!r}) must be an initializer or a Constant{when}")
    if given and node.input[0]:
        tag = _TYPE_TAGS.get(types.get(node.input[0], 0))
        if tag and tag not in rule.types:
            deny(f"input type {tag} is not supported (only {', '.join(rule.types)})")
    special = _SPECIAL.get(op)
    for what in special(node, consts, types) if special else ():
        deny(what)
    return found


def _uint8_issues(graph, types, outputs: set[str], name_of) -> list[LintIssue]:
    """UINT8 tensors exist only as network inputs and outputs (mi-10.3 L241-255; ops-10.1 note)."""
    found = []
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out and _TYPE_TAGS.get(types.get(out, 0)) == "UINT8" and out not in outputs and node.op_type != "Constant":
                found.append(LintIssue(name_of(node, i), node.op_type, f"output {out!r} is UINT8: TensorRT takes UINT8 "
                                       f"only as a network input or output [{allowlist.SOURCES['mi-10.3']}]"))
    return found


def _walk(graph, table, types, issues, outer_consts, functions, line):
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
        rule = allowlist.rule_for(node.op_type, line)
        if rule is not None:
            issues.extend(_allow_list_issues(node, rule, line, consts, types, name))
        else:
            _check_node(node, table.get(node.op_type), consts, types, issues, name)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _walk(a.g, table, types, issues, consts, functions, line)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _walk(g, table, types, issues, consts, functions, line)


def _opset_issues(model: onnx.ModelProto, version) -> list[LintIssue]:
    low, high, source = allowlist.opset_range(parse_version(version))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not low <= opset <= high:
        return [LintIssue("model", "opset", f"default-domain opset {opset}; TensorRT {version} documents {low} to "
                                            f"{high} [{source}]")]
    return []


def lint(model: onnx.ModelProto | str | Path, version) -> list[LintIssue]:
    """Every node the TensorRT ``version`` parser would not import (plugin-backed nodes excepted):
    operators our exports emit against the allow-list (``allowlist.py``, deny by default), any other
    against the operator table (``onnx_trt_ops.py``); and the model's opset against the line's range."""
    return lint_versions(model, [version])[version]


def lint_versions(model: onnx.ModelProto | str | Path, versions) -> dict:
    """``lint`` for several versions, inferring the tensor types once: {version: issues}."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    for version in versions:
        table_version(version)  # every version checked before any work
    typed, _ = prepare_onnx(model, (10, 15), strict=False)  # same node names; keeps plugin functions for inference
    types = _types(typed)
    return {version: _lint_one(model, version, types) for version in versions}


def _lint_one(model: onnx.ModelProto, version, types: dict) -> list[LintIssue]:
    key = table_version(version)
    line = allowlist.line_of(parse_version(version))
    table = load_table()["versions"][key]
    prepared, _ = prepare_onnx(model, version, strict=False)
    issues = _opset_issues(prepared, version)
    functions = {(f.domain, f.name) for f in prepared.functions}
    _walk(prepared.graph, table, types, issues, {}, functions, line)
    graph_io = {v.name for v in (*prepared.graph.input, *prepared.graph.output)}
    issues += _uint8_issues(prepared.graph, types, graph_io, lambda node, i: node.name or f"node {i}")
    return issues


def plugin_node_count(model: onnx.ModelProto | str | Path) -> int:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return sum(1 for n in model.graph.node if plugin_backed(n))


@dataclass(frozen=True, kw_only=True)
class LintReport:
    """What ``restore-export --check-trt`` reports for one file and one TensorRT version."""

    path: str
    version: str
    table: str  # the operator-table column (table_version)
    line: str  # the allow-list line (allowlist.line_of)
    issues: tuple[LintIssue, ...]
    plugin_nodes: int

    @property
    def passed(self) -> bool:
        return not self.issues

    def text(self) -> str:
        return format_report(list(self.issues), self.version, self.path, self.plugin_nodes)

    def to_json(self) -> dict:
        return {"version": self.version, "table": self.table, "line": self.line, "passed": self.passed,
                "issues": [str(i) for i in self.issues]}


def lint_report(model: onnx.ModelProto, version: str, *, path: str = "") -> LintReport:
    """``lint`` of a loaded model with what the report needs (TrtError/ContractError on a bad version)."""
    issues = lint(model, version)
    return LintReport(path=path, version=version, table=table_version(version),
                      line=allowlist.line_of(parse_version(version)), issues=tuple(issues),
                      plugin_nodes=plugin_node_count(model))


def format_report(issues: list[LintIssue], version, path: str = "", plugin_nodes: int = 0) -> str:
    where = f"{path}: " if path else ""
    if not issues:
        note = f" ({plugin_nodes} plugin-backed node(s): load the plugin library)" if plugin_nodes else ""
        return f"{where}TensorRT {version}: every node parses{note}"
    lines = [f"{where}TensorRT {version}: {len(issues)} node(s) would not parse"]
    lines += [f"  {issue}" for issue in issues]
    return "\n".join(lines)


def version_for(installed: str) -> str:
    """The version to lint for on a machine with TensorRT ``installed``: itself, or the newest release
    this lint knows when it is newer (TrtError when older than 10.3)."""
    chosen = installed if parse_version(installed)[:2] <= allowlist.NEWEST else ".".join(map(str, allowlist.NEWEST))
    table_version(chosen)  # refuses versions before 10.3
    return chosen
