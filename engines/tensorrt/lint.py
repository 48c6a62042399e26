"""Static TensorRT lint: three verdicts per node and TensorRT line, never a false one.

``lint(model, version)`` prepares the model as the engine builder does (``core.prepare_onnx``:
TransposedAttention's function inlined, Converse2D left to the plugin) and checks every node, in
subgraphs too. A node *parses* when its form is in the allow-list (``allowlist.py``: each rule with
the parser source it was read from); it is *refused* only by a rule whose source refuses it (each
finding cites it); anything else is *not verified* (its own exit status, never reported as a
refusal). Operators with no allow-list rule, opsets outside the documented range and forms no read
source covers are "not verified". Plugin-backed nodes are checked against the plugin creator's
fields (``lint_forms.PLUGIN_FIELDS``). No TensorRT needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from restormer_deploy.engines.tensorrt import allowlist, lint_forms
from restormer_deploy.engines.tensorrt.lint_forms import REFUSED, UNVERIFIED
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


# Types the parser imports for graph inputs and initializers (utl-10.1 convertDtype L314-335, wc-10.1 L354-453)
_IMPORTABLE = {"FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "UINT8", "BOOL", "DOUBLE", "INT4", "FP8"}


@dataclass(frozen=True)
class LintIssue:
    node: str
    op: str
    message: str
    verdict: str = UNVERIFIED  # REFUSED (a cited rule) or UNVERIFIED

    @property
    def refused(self) -> bool:
        return self.verdict == REFUSED

    def __str__(self) -> str:
        return f"{self.node} [{self.op}] {self.verdict}: {self.message}"


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


def _infos(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, tuple | None]]:
    """Element types and shapes by tensor name (shape dims None when unknown; shape None when the rank is)."""
    types: dict[str, int] = {}
    shapes: dict[str, tuple | None] = {}

    def visit(graph):
        for vi in (*graph.input, *graph.output, *graph.value_info):
            if vi.type.HasField("tensor_type"):
                tt = vi.type.tensor_type
                if tt.elem_type:
                    types[vi.name] = tt.elem_type
                if tt.HasField("shape"):
                    shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        for init in graph.initializer:
            types[init.name] = init.data_type
            shapes[init.name] = tuple(init.dims)
        for node in graph.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        types[node.output[0]] = a.t.data_type
                        shapes[node.output[0]] = tuple(a.t.dims)
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
    except Exception:  # types are a bonus: without them fewer forms are verified
        inferred = model
    visit(inferred.graph)
    return types, shapes


def _types(model: onnx.ModelProto) -> dict[str, int]:
    return _infos(model)[0]


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto | None]:
    consts: dict[str, onnx.TensorProto | None] = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            consts[node.output[0]] = value
    return consts


def _attr_value(attr: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if attr.name == "to" and isinstance(value, int):
        return onnx.TensorProto.DataType.Name(value)
    return value


def _output_issues(node, rule: allowlist.Rule, line: str) -> list[tuple[str, str]]:
    """Declared and named outputs against what the importer returns: mi-10.1 L220-223 (declared, empty names
    included, at most returned: L222-225), mi-11.0 parseNode (named exactly as many as returned)."""
    declared, named = len(node.output), sum(1 for o in node.output if o)
    returned = declared if rule.outputs is None else rule.outputs
    if line == "10.3" and declared > returned:
        return [(REFUSED, f"{declared} outputs declared (empty names count on 10.3-10.6); the importer returns "
                          f"{returned} [mi-10.1 L222-225; inferred for 10.3]")]
    if line in ("11.0", "11.2") and named != returned:
        inferred = "; inferred for 11.2" if line == "11.2" else ""
        return [(REFUSED, f"{named} named output(s); the importer returns {returned} [mi-11.0 parseNode{inferred}]")]
    if line in ("10.7", "10.13"):
        if named > returned:
            return [(REFUSED, f"{named} named outputs; the importer returns {returned} [mi-10.1 L222-225, mi-11.0 "
                              f"parseNode; inferred for {line}]")]
        if declared != returned or named != declared:
            return [(UNVERIFIED, f"{declared} declared / {named} named outputs, the importer returns {returned}: "
                                 f"10.1-GA and 11.0 count them differently and {line} is not readable here")]
    return []


def _allow_list_issues(node, rule: allowlist.Rule, line: str, ctx: lint_forms.Ctx, name) -> list[LintIssue]:
    """Every way the node leaves the allow-list ``rule`` (not verified), and every cited refusal."""
    op, found = node.op_type, []

    def add(verdict: str, what: str) -> None:
        found.append(LintIssue(name, op, what, verdict))

    def outside(what: str) -> None:
        add(UNVERIFIED, f"{what}: not in the allow-list [{rule.sources}]")

    at = allowlist.LINES.index(line)
    if at < allowlist.LINES.index(rule.since):
        if op == "DFT":
            add(REFUSED, f"no importer before TensorRT {rule.since}: the static checker refuses DFT [chk-10.1 DFT "
                         f"L904-907; inferred for {line}]")
        else:
            outside(f"not in the allow-list before TensorRT {rule.since}")
        return found
    if op == "DFT":
        outside("DFT from 11.2 rests on release notes not readable here (rn-11.2)")
        return found
    given = len(node.input)
    if not rule.inputs[0] <= given <= rule.inputs[1]:
        outside(f"{given} input(s); the allow-list takes {rule.inputs[0]} to {rule.inputs[1]}")
    for verdict, what in _output_issues(node, rule, line):
        add(verdict, what)
    attrs = {a.name: a for a in node.attribute}
    for attr in node.attribute:
        if attr.name not in rule.attrs:
            outside(f"attribute {attr.name!r} ({', '.join(rule.attrs) or 'none'} are)")
            continue
        allowed = rule.attrs[attr.name]
        if allowed is not allowlist.ANY:
            value = _attr_value(attr)
            if value not in allowed:
                outside(f"{attr.name}={value!r} (only {', '.join(map(str, allowed))})")
    for required in rule.required:
        if required not in attrs:
            outside(f"attribute {required!r} missing")
    for idx in range(given):
        first = rule.empty_inputs.get(idx)
        if not node.input[idx] and first is not None and at < allowlist.LINES.index(first):
            outside(f"input {idx} omitted (empty name) before TensorRT {first}")
    for idx, from_line in rule.const_inputs.items():
        if idx < given and node.input[idx] and node.input[idx] not in ctx.consts:
            if from_line is None or at < allowlist.LINES.index(from_line):
                when = "" if from_line is None else f" before TensorRT {from_line}"
                outside(f"input {idx} ({node.input[idx]!r}) is a runtime tensor{when}")
    if given and node.input[0]:
        tag = ctx.tag(node.input[0])
        if tag and tag not in rule.types:
            outside(f"input type {tag} (only {', '.join(rule.types)})")
    special = lint_forms.SPECIAL.get(op)
    for verdict, what in special(node, ctx) if special else ():
        add(verdict, what)
    return _refusals_first(found)


def _refusals_first(found: list[LintIssue]) -> list[LintIssue]:
    """A node's findings, refusals first; a rule check that refuses is not repeated as 'not verified' for the
    same reason (an input the rule leaves out is still reported)."""
    return sorted(found, key=lambda i: i.verdict != REFUSED)


def _graph_io_issues(graph, ctx: lint_forms.Ctx, outputs: set[str]) -> list[LintIssue]:
    """Graph inputs and initializers the parser cannot import (types, ranks), and tensors it cannot carry."""
    found = []
    for vi in graph.input:
        tag, shape = ctx.tag(vi.name), ctx.shape(vi.name)
        if tag and tag not in _IMPORTABLE:
            found.append(LintIssue(vi.name, "input", f"type {tag} [mi-10.1 importInput L361-363; utl-10.1 "
                                                     f"convertDtype L329-332]", REFUSED))
        if shape is not None and len(shape) > 8:
            found.append(LintIssue(vi.name, "input", f"rank {len(shape)} > 8 [utlh-10.1 convertOnnxDims L461-464; "
                                                     f"dims-10.3]", REFUSED))
    for init in graph.initializer:
        tag = lint_forms_tag(init.data_type)
        if tag not in _IMPORTABLE:
            found.append(LintIssue(init.name, "initializer", f"type {tag} [wc-10.1 L450-453]", REFUSED))
        if len(init.dims) > 8:
            found.append(LintIssue(init.name, "initializer", f"rank {len(init.dims)} > 8 [wc-10.1 L104-109; "
                                                             f"dims-10.3]", REFUSED))
    for i, node in enumerate(graph.node):
        for out in node.output:
            tag, shape = ctx.tag(out), ctx.shape(out)
            where = node.name or f"node {i}"
            if tag == "UINT8" and out not in outputs and node.op_type != "Constant":
                found.append(LintIssue(where, node.op_type, f"output {out!r} is UINT8: TensorRT takes UINT8 only as "
                                                            f"a network input or output [mi-10.1 L241-255]", REFUSED))
            elif out and tag and tag not in _IMPORTABLE:
                found.append(LintIssue(where, node.op_type, f"output {out!r} of type {tag}: no TensorRT type"))
            if out and shape is not None and len(shape) > 8:
                found.append(LintIssue(where, node.op_type, f"output {out!r} of rank {len(shape)} > 8 (dims-10.3)"))
    return found


def lint_forms_tag(data_type: int) -> str:
    return _TYPE_TAGS.get(data_type) or onnx.TensorProto.DataType.Name(data_type)


def _walk(graph, infos, issues, outer_consts, functions, line):
    consts = {**outer_consts, **_constants(graph)}
    ctx = lint_forms.Ctx(consts=consts, tags=infos[0], shapes=infos[1], line=line,
                         producers={o: n for n in graph.node for o in n.output if o})
    for i, node in enumerate(graph.node):
        name = node.name or f"node {i}"
        if node.domain == DOMAIN and node.op_type in PLUGIN_OPS:
            if plugin_backed(node):
                issues.extend(LintIssue(name, f"{DOMAIN}::{node.op_type}", m, v)
                              for v, m in lint_forms.plugin_fields(node))
            else:
                want = ", ".join(f'{k}="{v}"' for k, v in PLUGIN_OPS[node.op_type].items())
                issues.append(LintIssue(name, f"{DOMAIN}::{node.op_type}",
                                        f"custom node without the plugin attributes {want}: no importer and no "
                                        f"plugin takes it (re-export, or --converse-lowering matmul)"))
            continue
        rule = allowlist.rule_for(node.op_type, line)  # the parser dispatches by op type (mi-10.1 L125-157)
        if rule is None:
            where = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            known = (node.domain, node.op_type) in functions
            issues.append(LintIssue(name, where, "a local function" if known else
                                    "no allow-list rule for this operator: its form was not read in the parser source"))
        else:
            if node.domain not in ("", "ai.onnx"):
                rule_issues = _allow_list_issues(node, rule, line, ctx, name)
                issues.extend(LintIssue(i.node, f"{node.domain}::{i.op}", i.message, i.verdict) for i in rule_issues)
            else:
                issues.extend(_allow_list_issues(node, rule, line, ctx, name))
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _walk(a.g, infos, issues, consts, functions, line)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _walk(g, infos, issues, consts, functions, line)


def _opset_issues(model: onnx.ModelProto, version) -> list[LintIssue]:
    low, high, source = allowlist.opset_range(parse_version(version))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not low <= opset <= high:
        return [LintIssue("model", "opset", f"default-domain opset {opset}; TensorRT {version} documents {low} to "
                                            f"{high} [{source}]; the importer does not refuse it (mi-10.1 L729-742)")]
    return []


def lint(model: onnx.ModelProto | str | Path, version) -> list[LintIssue]:
    """Every finding for the TensorRT ``version`` parser: refusals (``issue.refused``, each citing its
    rule) and forms not verified; an empty list: every node parses."""
    return lint_versions(model, [version])[version]


def lint_versions(model: onnx.ModelProto | str | Path, versions) -> dict:
    """``lint`` for several versions, inferring the tensor types once: {version: issues}."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    for version in versions:
        table_version(version)  # every version checked before any work
    typed, _ = prepare_onnx(model, (10, 15), strict=False)  # same node names; keeps plugin functions for inference
    types, shapes = _infos(typed)
    infos = ({k: lint_forms_tag(v) for k, v in types.items()}, shapes)
    return {version: _lint_one(model, version, infos) for version in versions}


def _lint_one(model: onnx.ModelProto, version, infos) -> list[LintIssue]:
    line = allowlist.line_of(parse_version(version))
    prepared, _ = prepare_onnx(model, version, strict=False)
    issues = _opset_issues(prepared, version)
    functions = {(f.domain, f.name) for f in prepared.functions}
    _walk(prepared.graph, infos, issues, {}, functions, line)
    graph_io = {v.name for v in (*prepared.graph.input, *prepared.graph.output)}
    ctx = lint_forms.Ctx(consts=_constants(prepared.graph), tags=infos[0], shapes=infos[1], line=line)
    issues += _graph_io_issues(prepared.graph, ctx, graph_io)
    return [_mark_inferred(i, line) for i in issues]


_OWN_REF = {"10.13": ("-10.13",), "11.0": ("-11.0",)}  # the lines whose own parser pin was read here


def _mark_inferred(issue: LintIssue, line: str) -> LintIssue:
    """A refusal whose source is not the line's own pin says it is inferred for that line."""
    if not issue.refused or "inferred" in issue.message or "[plugin]" in issue.message:
        return issue
    if any(ref in issue.message for ref in _OWN_REF.get(line, ())):
        return issue
    return LintIssue(issue.node, issue.op, f"{issue.message} (inferred for the {line} line from the cited refs: "
                                           f"its own pin is not readable here)" if line not in _OWN_REF else
                     f"{issue.message} (inferred for {line} from the cited refs)", issue.verdict)


def plugin_node_count(model: onnx.ModelProto | str | Path) -> int:
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    return sum(1 for n in model.graph.node if plugin_backed(n))


PARSES = "parses"


def verdict_of(issues) -> str:
    """The file's verdict: refused if any finding is a cited refusal, else not verified if any, else parses."""
    if any(i.refused for i in issues):
        return REFUSED
    return UNVERIFIED if issues else PARSES


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

    @property
    def verdict(self) -> str:
        return verdict_of(self.issues)

    def text(self) -> str:
        return format_report(list(self.issues), self.version, self.path, self.plugin_nodes)

    def to_json(self) -> dict:
        return {"version": self.version, "table": self.table, "line": self.line, "passed": self.passed,
                "verdict": self.verdict, "line_sources": allowlist.LINE_REFS[self.line],
                "refused": [str(i) for i in self.issues if i.refused],
                "not_verified": [str(i) for i in self.issues if not i.refused],
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
    refused = [i for i in issues if i.refused]
    unverified = [i for i in issues if not i.refused]
    line = allowlist.line_of(parse_version(version))
    head = [f"{where}TensorRT {version}: {len(refused)} refused, {len(unverified)} not verified "
            f"(line {line}: {allowlist.LINE_REFS[line]})"]
    return "\n".join(head + [f"  {issue}" for issue in (*refused, *unverified)])


def choose_version(installed: str) -> tuple[str, str | None]:
    """The version to lint for on a machine with TensorRT ``installed`` and a notice: itself (no notice),
    or the newest release this lint knows when it is newer (with the notice to show). TrtError when
    older than 10.3 or no known release. The one choice for the engine builder, scripts/verify_gpu.sh
    (via ``python -m restormer_deploy.cli.lint_trt --version-for``) and the lint command."""
    newest = ".".join(map(str, allowlist.NEWEST))
    if parse_version(installed)[:2] <= allowlist.NEWEST:
        table_version(installed)  # refuses versions before 10.3 and unknown releases
        return installed, None
    return newest, (f"note: TensorRT {installed} is newer than the newest release the lint knows ({newest}): "
                    f"linting with the {newest} rules, whose verdicts are unverified for {installed}")


def version_for(installed: str, notify=None) -> str:
    """``choose_version``'s version; its notice, if any, goes to ``notify`` (e.g. the builder's log)."""
    chosen, notice = choose_version(installed)
    if notice and notify is not None:
        notify(notice)
    return chosen
