"""The TensorRT lint's allow-list (engines/tensorrt/allowlist.py), rule by rule.

For every operator our exports emit there is a hand-written node that the ONNX spec and the parser
sources accept (``EXAMPLES``); each must lint clean on every line from the rule's ``since``. Each
restriction is then broken on a copy of that node (an unknown attribute, a refused attribute value,
a missing required attribute, a runtime tensor where a constant is needed, a type, an input count,
an extra output, an omitted input), and the lint must name the node on exactly the lines the rule
says. Special rules (Q/DQ, If, Split, UINT8 tensors, opsets, unknown versions) have their own tests.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from restormer_deploy.engines.tensorrt import allowlist
from restormer_deploy.engines.tensorrt.core import TrtError
from restormer_deploy.engines.tensorrt.lint import VERSIONS, lint, verdict_of

F, H, I64, I32, B, U8, I8 = T.FLOAT, T.FLOAT16, T.INT64, T.INT32, T.BOOL, T.UINT8, T.INT8
_NP = {F: np.float32, H: np.float16, I64: np.int64, I32: np.int32, B: np.bool_, U8: np.uint8, I8: np.int8, T.DOUBLE: np.float64}


def const(value, dtype=F):
    return ("const", np.asarray(value, dtype=_NP[dtype]))


def tensor(dtype, shape):
    return ("input", dtype, shape)


# op -> (inputs: name -> const(...) | tensor(...) | "" for omitted, attrs, number of outputs)
X4 = tensor(F, [1, 4, 8, 8])
EXAMPLES = {
    "Add": ([X4, X4], {}, 1), "Sub": ([X4, X4], {}, 1), "Mul": ([X4, X4], {}, 1), "Div": ([X4, X4], {}, 1),
    "Max": ([X4, X4], {}, 1), "Equal": ([X4, X4], {}, 1),
    "Mod": ([tensor(I64, [4]), const([3, 3, 3, 3], I64)], {}, 1),
    "Pow": ([X4, const(2.0)], {}, 1),
    "Neg": ([X4], {}, 1), "Sqrt": ([X4], {}, 1), "Reciprocal": ([X4], {}, 1), "Cos": ([X4], {}, 1),
    "Sin": ([X4], {}, 1), "Erf": ([X4], {}, 1), "Relu": ([X4], {}, 1), "Sigmoid": ([X4], {}, 1),
    "LeakyRelu": ([X4], {"alpha": 0.1}, 1), "PRelu": ([X4, const(np.full((1, 4, 1, 1), 0.2))], {}, 1),
    "Gelu": ([X4], {"approximate": "tanh"}, 1), "Identity": ([X4], {}, 1),
    "Cast": ([X4], {"to": H}, 1), "CastLike": ([X4, tensor(H, [1])], {}, 1),
    "Concat": ([X4, X4], {"axis": 1}, 1),
    "Constant": ([], {"value": numpy_helper.from_array(np.ones(3, np.float32))}, 1),
    "Reshape": ([X4, const([1, 4, 64], I64)], {"allowzero": 0}, 1),
    "Shape": ([X4], {"start": 2}, 1), "Gather": ([X4, const(1, I64)], {"axis": 1}, 1),
    "Expand": ([tensor(F, [1, 4, 1, 1]), const([1, 4, 8, 8], I64)], {}, 1),
    "Tile": ([X4, const([1, 1, 2, 2], I64)], {}, 1),
    "Range": ([const(0, I64), tensor(I64, []), const(1, I64)], {}, 1),
    "Transpose": ([X4], {"perm": [0, 2, 3, 1]}, 1),
    "DepthToSpace": ([X4], {"blocksize": 2, "mode": "CRD"}, 1),
    "SpaceToDepth": ([X4], {"blocksize": 2}, 1),
    "Split": ([X4, const([2, 2], I64)], {"axis": 1}, 2),
    "Slice": ([X4, const([1], I64), const([3], I64), const([1], I64)], {}, 1),
    "Squeeze": ([tensor(F, [1, 4, 1, 8]), const([2], I64)], {}, 1),
    "Unsqueeze": ([X4, const([0], I64)], {}, 1),
    "Pad": ([X4, const([1, 1, 1, 1], I64), "", const([2, 3], I64)], {"mode": "reflect"}, 1),
    "ReduceMean": ([X4, const([1], I64)], {"keepdims": 1}, 1),
    "ReduceSum": ([X4, const([1], I64)], {"keepdims": 0}, 1),
    "ReduceProd": ([tensor(I64, [4]), const([0], I64)], {"keepdims": 0}, 1),
    "ReduceSumSquare": ([X4, const([-1], I64)], {"keepdims": 1}, 1),
    "ReduceMax": ([X4, const([1], I64)], {"keepdims": 1}, 1),
    "Conv": ([X4, const(np.ones((4, 4, 3, 3))), const(np.zeros(4))],
             {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1], "dilations": [1, 1], "group": 1,
              "auto_pad": "NOTSET"}, 1),
    "MatMul": ([X4, const(np.ones((8, 8)))], {}, 1),
    "Gemm": ([tensor(F, [2, 8]), const(np.ones((8, 3))), const(np.zeros(3))], {"alpha": 1.0, "transB": 0}, 1),
    "Softmax": ([X4], {"axis": -1}, 1),
    "LayerNormalization": ([tensor(F, [1, 8, 8, 4]), const(np.ones(4)), const(np.zeros(4))],
                           {"axis": -1, "epsilon": 1e-5}, 1),
    "Resize": ([X4, "", const([1, 1, 2, 2])], {"mode": "linear", "coordinate_transformation_mode": "half_pixel",
                                               "antialias": 0, "keep_aspect_ratio_policy": "stretch"}, 1),
    "If": ([tensor(B, [])], "branches", 1),
    "QuantizeLinear": ([X4, const(0.05), const(0, I8)], {}, 1),
    "DequantizeLinear": ([tensor(I8, [4, 4, 3, 3]), const(np.full(4, 0.05)), const(np.zeros(4), I8)], {"axis": 0}, 1),
    "DFT": ([tensor(F, [1, 4, 8, 8, 1]), "", const(-2, I64)], {"inverse": 0, "onesided": 0}, 1),
    # the operators the spandrel architectures add (issue 32; tests/engines/tensorrt/test_lint_zoo_ops.py)
    "Tanh": ([X4], {}, 1), "Softplus": ([X4], {}, 1), "Not": ([tensor(B, [1, 4, 8, 8])], {}, 1),
    "Clip": ([X4, const(0.0), const(6.0)], {}, 1), "GlobalAveragePool": ([X4], {}, 1),
    "Where": ([tensor(B, [1, 4, 8, 8]), X4, const(0.0)], {}, 1),
    "ConstantOfShape": ([tensor(I64, [4])], {"value": numpy_helper.from_array(np.array([1.0], np.float32))}, 1),
    "ScatterND": ([X4, const([[0, 0, 0, 0]], I64), const([1.0])], {}, 1),
    "ReduceL2": ([X4, const([1], I64)], {"keepdims": 1}, 1),
    "ConvTranspose": ([X4, const(np.ones((4, 2, 2, 2))), const(np.zeros(2))],
                      {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                       "group": 1, "output_padding": [0, 0], "auto_pad": "NOTSET"}, 1),
    "MaxPool": ([X4], {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                       "ceil_mode": 0, "storage_order": 0, "auto_pad": "NOTSET"}, 1),
    "Einsum": ([X4, X4], {"equation": "bhid, bhjd -> bhij"}, 1),
    "BatchNormalization": ([X4, const(np.ones(4)), const(np.zeros(4)), const(np.zeros(4)), const(np.ones(4))],
                           {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0}, 1),
    "TopK": ([tensor(F, [1, 8]), const([2], I64)], {"axis": -1, "largest": 1, "sorted": 1}, 2),
    "Exp": ([X4], {}, 1), "Floor": ([X4], {}, 1), "Atan": ([X4], {}, 1), "Greater": ([X4, X4], {}, 1),
    "Less": ([X4, const(0.5)], {}, 1), "Flatten": ([X4], {"axis": 1}, 1),
    "ReduceMin": ([X4, const([1], I64)], {"keepdims": 1}, 1),
    "InstanceNormalization": ([tensor(F, [1, 4, 16]), const(np.ones(4)), const(np.zeros(4))], {"epsilon": 1e-6}, 1),
    "ArgMax": ([tensor(F, [2, 64]), ], {"axis": 1, "keepdims": 0, "select_last_index": 0}, 1),
    "ArgMin": ([tensor(F, [2, 64]), ], {"axis": 1, "keepdims": 0, "select_last_index": 0}, 1),
    "ScatterElements": ([tensor(F, [2, 8]), const([[1], [3]], I64), tensor(F, [2, 1])], {"axis": 1,
                                                                                         "reduction": "none"}, 1),
    "AveragePool": ([X4], {"kernel_shape": [4, 4], "strides": [4, 4], "pads": [0, 0, 0, 0], "ceil_mode": 0,
                           "count_include_pad": 1}, 1),
}

# attribute values the rules refuse (hand-written, from the sources the rules cite)
BAD_VALUES = {
    ("Mod", "fmod"): 2, ("Gelu", "approximate"): "erf", ("Cast", "to"): T.DOUBLE, ("Reshape", "allowzero"): 2,
    ("DepthToSpace", "mode"): "XYZ", ("Pad", "mode"): "symmetric", ("Conv", "auto_pad"): "EXPLICIT_ROUND_UP",
    ("Resize", "antialias"): 1, ("Resize", "mode"): "bicubic",
    ("Resize", "keep_aspect_ratio_policy"): "not_larger", ("Resize", "coordinate_transformation_mode"): "tf_crop_and_resize",
    ("Resize", "exclude_outside"): 2, ("Resize", "nearest_mode"): "up", ("Gemm", "transA"): 2,
    ("ReduceMean", "noop_with_empty_axes"): 2, ("ReduceSum", "noop_with_empty_axes"): 2,
    ("ReduceProd", "noop_with_empty_axes"): 2, ("ReduceSumSquare", "noop_with_empty_axes"): 2,
    ("ReduceMax", "noop_with_empty_axes"): 2, ("Gemm", "transB"): 2, ("DFT", "onesided"): 1, ("DFT", "inverse"): 2,
    ("ReduceL2", "noop_with_empty_axes"): 2, ("ConvTranspose", "auto_pad"): "SAME_UPPER",
    ("MaxPool", "auto_pad"): "EXPLICIT_ROUND_UP", ("MaxPool", "ceil_mode"): 2, ("MaxPool", "storage_order"): 1,
    ("BatchNormalization", "training_mode"): 1, ("TopK", "largest"): 2, ("TopK", "sorted"): 0,
    ("AveragePool", "auto_pad"): "EXPLICIT_ROUND_UP", ("AveragePool", "ceil_mode"): 2,
    ("AveragePool", "count_include_pad"): 2, ("ArgMax", "keepdims"): 2, ("ArgMax", "select_last_index"): 2,
    ("ArgMin", "keepdims"): 2, ("ArgMin", "select_last_index"): 2, ("ScatterElements", "reduction"): "add",
    ("ReduceMin", "noop_with_empty_axes"): 2,
}
# a type of input 0 each rule refuses
BAD_TYPES = {"Mod": B, "Range": F, "Equal": U8, "Relu": I32, "Gelu": I32, "MatMul": I64, "QuantizeLinear": I64,
             "DequantizeLinear": U8, "If": F, "Not": F, "Where": F, "ConstantOfShape": F, "Einsum": I64,
             "ScatterND": B, "TopK": B, "Clip": B, "Tanh": I32, "Exp": I64,
             "InstanceNormalization": I64, "ArgMax": B, "Floor": I64, "Greater": B}


def _branch(value: float):
    out = helper.make_tensor_value_info("b", F, [1])
    return helper.make_graph([helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(
        np.array([value], np.float32)))], "branch", [], [out])


def build(op, inputs, attrs, n_out, *, opset=20, out_types=None, infer=True):
    """A one-node model: constants become initializers, tensors graph inputs, '' omitted inputs."""
    names, inits, graph_inputs = [], [], []
    for i, spec in enumerate(inputs):
        if spec == "":
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if spec[0] == "const":
            inits.append(numpy_helper.from_array(spec[1], name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, spec[1], spec[2]))
    if attrs == "branches":
        attrs = {"then_branch": _branch(1.0), "else_branch": _branch(0.0)}
    outputs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outputs, name="n0", **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    # graph outputs typed as the ONNX shape inference types them (a checker-valid model)
    try:  # (infer=False: forms whose shape inference aborts the process, e.g. Split with extra outputs)
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info} if infer else {}
    except onnx.shape_inference.InferenceError:  # the broken variants of some tests
        inferred = {}
    for o in outputs:
        if o in (out_types or {}) or o not in inferred:
            model.graph.output.append(helper.make_tensor_value_info(o, (out_types or {}).get(o, F), [None]))
        else:
            model.graph.output.append(inferred[o])
    return model


def verdicts(model) -> dict[str, bool]:
    """line -> whether node n0 has a finding there (refused or not verified)."""
    return {v: any(i.node == "n0" for i in lint(model, v)) for v in VERSIONS}


def kinds(model) -> dict[str, str]:
    """line -> the verdict of node n0 there: parses, refused or not verified."""
    return {v: verdict_of([i for i in lint(model, v) if i.node == "n0"]) for v in VERSIONS}


# DFT from 11.2 rests only on release notes not readable here: it never parses (test_dft_verdicts)
VERIFIED = sorted(op for op in EXAMPLES if op != "DFT")


def lines_from(first: str | None) -> set[str]:
    return set() if first is None else set(allowlist.LINES[allowlist.LINES.index(first):])


def test_every_rule_has_an_example_and_every_example_a_rule():
    assert set(EXAMPLES) == set(allowlist.RULES)
    for rule in allowlist.RULES.values():
        assert rule.sources and all(label.split()[0] in allowlist.SOURCES or label.split()[0] == "cl"
                                    for label in rule.sources.split("; ")), rule.op


@pytest.mark.parametrize("op", VERIFIED)
def test_example_parses_from_since(op):
    model = build(op, *EXAMPLES[op])
    onnx.checker.check_model(model)
    bad = {v for v, found in verdicts(model).items() if found}
    assert bad == set(allowlist.LINES) - lines_from(allowlist.RULES[op].since), (op, lint(model, "10.3"))


@pytest.mark.parametrize("op", VERIFIED)
def test_unknown_attribute_is_denied(op):
    inputs, attrs, n = EXAMPLES[op]
    attrs = {**(attrs if isinstance(attrs, dict) else {"then_branch": _branch(1.0), "else_branch": _branch(0.0)}),
             "bogus": 1}
    issues = lint(build(op, inputs, attrs, n), allowlist.LINES[-1])
    assert any(i.node == "n0" and "'bogus'" in i.message for i in issues), issues


def test_every_restricted_attribute_has_a_refused_value():
    restricted = {(op, a) for op, r in allowlist.RULES.items() for a, v in r.attrs.items() if v is not allowlist.ANY}
    assert restricted - {("DFT", "inverse"), ("DFT", "onesided")} == set(BAD_VALUES) - {("DFT", "inverse"),
                                                                                      ("DFT", "onesided")}


@pytest.mark.parametrize("op,attr", sorted(k for k in BAD_VALUES if k[0] != "DFT"))
def test_refused_attribute_value(op, attr):
    inputs, attrs, n = EXAMPLES[op]
    allowed = allowlist.RULES[op].attrs[attr]
    bad = BAD_VALUES[(op, attr)]
    assert allowed is not allowlist.ANY and bad not in allowed
    model = build(op, inputs, {**attrs, attr: bad}, n)
    assert all(verdicts(model).values())
    assert any(attr in i.message for i in lint(model, "11.2") if i.node == "n0")


@pytest.mark.parametrize("op", sorted(op for op, r in allowlist.RULES.items() if r.required))
def test_required_attribute(op):
    inputs, attrs, n = EXAMPLES[op]
    attrs = attrs if isinstance(attrs, dict) else {"then_branch": _branch(1.0), "else_branch": _branch(0.0)}
    rule = allowlist.RULES[op]
    for name in rule.required:
        model = build(op, inputs, {k: v for k, v in attrs.items() if k != name}, n)
        required_on = {line for line in allowlist.LINES if name in rule.at(line).required}
        assert {v for v, found in verdicts(model).items() if found} == required_on, (op, name)


CONST_CASES = [(op, idx) for op, r in sorted(allowlist.RULES.items()) for idx in r.const_inputs
               if idx < len(EXAMPLES[op][0]) and EXAMPLES[op][0][idx] != ""]


@pytest.mark.parametrize("op,idx", CONST_CASES)
def test_constant_input(op, idx):
    """The constant input as a graph input: found on the lines before the rule's first tensor line."""
    inputs, attrs, n = EXAMPLES[op]
    kind, array = inputs[idx]
    dtype = {v: k for k, v in _NP.items()}[array.dtype.type]
    inputs = [*inputs[:idx], tensor(dtype, list(array.shape)), *inputs[idx + 1:]]
    model = build(op, inputs, attrs, n)
    first = allowlist.RULES[op].const_inputs[idx]
    since = lines_from(allowlist.RULES[op].since)
    expected = since - lines_from(first)
    found = {v for v, f in verdicts(model).items() if f}
    assert found == expected | (set(allowlist.LINES) - since), (op, idx, found)


@pytest.mark.parametrize("op", sorted(BAD_TYPES))
def test_refused_input_type(op):
    inputs, attrs, n = EXAMPLES[op]
    first = inputs[0]
    shape = first[2] if first[0] == "input" else list(first[1].shape)
    model = build(op, [tensor(BAD_TYPES[op], shape), *inputs[1:]], attrs, n)
    assert all(verdicts(model).values()), op
    assert any("type" in i.message for i in lint(model, "11.2") if i.node == "n0")


@pytest.mark.parametrize("op", sorted(op for op, r in allowlist.RULES.items() if r.inputs[1] < 64 and op != "DFT"))
def test_input_count(op):
    inputs, attrs, n = EXAMPLES[op]
    low, high = allowlist.RULES[op].inputs
    models = [build(op, [*inputs, *[X4] * (high - len(inputs) + 1)], attrs, n)]
    if low > 0:
        models.append(build(op, inputs[: low - 1], attrs, n))
    for model in models:
        assert all(verdicts(model).values()), op
        assert any("input(s)" in i.message for i in lint(model, "11.2") if i.node == "n0"), op


@pytest.mark.parametrize("op", sorted(op for op in VERIFIED if EXAMPLES[op][0]))
def test_double_input_is_refused(op):
    """TensorRT has no FP64: the parser casts DOUBLE down; no rule takes it as an input type."""
    inputs, attrs, n = EXAMPLES[op]
    first = inputs[0]
    shape = first[2] if first[0] == "input" else list(first[1].shape)
    model = build(op, [tensor(T.DOUBLE, shape), *inputs[1:]], attrs, n)
    assert any("DOUBLE" in i.message for i in lint(model, "11.2") if i.node == "n0"), op


def test_dft_verdicts():
    """Refused before 11.2 (the static checker, chk-10.1 DFT); from 11.2 not verified: no 11.2 source here."""
    model = build("DFT", *EXAMPLES["DFT"])
    assert kinds(model) == {"10.3": "refused", "10.7": "refused", "10.13": "refused", "11.0": "refused",
                            "11.2": "not verified"}


def test_layer_normalization_extra_outputs_the_defect_of_issue_15():
    inputs, attrs, _ = EXAMPLES["LayerNormalization"]
    three = build("LayerNormalization", inputs[:2], attrs, 3)  # our old BiasFree form: Y, Mean, InvStdDev
    assert set(kinds(three).values()) == {"refused"}
    assert "importer returns 1" in lint(three, "10.13")[0].message
    # [Y, "", ""]: refused where empty names count (mi-10.1), parses where only named ones do (mi-11.0); the
    # lines between have no readable ModelImporter
    model = build("LayerNormalization", inputs[:2], attrs, 1)
    model.graph.node[0].output.extend(["", ""])
    assert kinds(model) == {"10.3": "refused", "10.7": "not verified", "10.13": "not verified", "11.0": "parses",
                            "11.2": "parses"}


def test_split_with_an_empty_output_name():
    inputs, attrs, _ = EXAMPLES["Split"]
    model = build("Split", inputs, attrs, 2)
    model.graph.node[0].output[1] = ""
    del model.graph.output[1]
    # the importer returns one output per declared output: mi-10.1 takes it, mi-11.0 wants as many named
    assert kinds(model) == {"10.3": "parses", "10.7": "not verified", "10.13": "not verified", "11.0": "refused",
                            "11.2": "refused"}


def test_slice_omitted_axes_before_10_13():
    inputs, attrs, n = EXAMPLES["Slice"]
    model = build("Slice", [*inputs[:3], "", const([1], I64)], attrs, n)
    assert {v for v, f in verdicts(model).items() if f} == {"10.3", "10.7"}


def test_quantize_rules():
    x, scale, zp = EXAMPLES["QuantizeLinear"][0]
    cases = {
        "nonzero zero point": [x, scale, const(3, I8)],
        "UINT8 zero point": [x, scale, const(0, U8)],
        "negative scale": [x, const(-0.05), zp],
        "zero scale": [x, const(0.0), zp],
        "runtime scale": [x, tensor(F, []), zp],
    }
    for what, inputs in cases.items():
        model = build("QuantizeLinear", inputs, {}, 1)
        assert all(verdicts(model).values()), what
    q, s, z = EXAMPLES["DequantizeLinear"][0]
    no_axis = build("DequantizeLinear", [q, s, z], {}, 1)  # per-channel scale, axis left to the default
    assert all(verdicts(no_axis).values())
    assert "no axis" in " ".join(i.message for i in lint(no_axis, "11.0"))


def test_if_branches_with_different_output_counts():
    two = helper.make_graph([helper.make_node("Constant", [], ["b"], value_float=1.0),
                             helper.make_node("Constant", [], ["c"], value_float=2.0)], "two", [],
                            [helper.make_tensor_value_info("b", F, []), helper.make_tensor_value_info("c", F, [])])
    model = build("If", [tensor(B, [])], {"then_branch": two, "else_branch": _branch(0.0)}, 1)
    assert all(verdicts(model).values())


def test_uint8_only_at_the_network_boundary():
    model = build("Cast", [X4], {"to": U8}, 1, out_types={"out0": U8})  # a graph output: fine
    assert not any(verdicts(model).values())
    inner = helper.make_node("Cast", ["out0"], ["y"], name="n1", to=F)
    model.graph.node.append(inner)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("y", F, None))
    issues = lint(model, "10.13")
    assert any(i.node == "n0" and "UINT8" in i.message for i in issues)


def test_opset_against_the_documented_range():
    model = build("Relu", [X4], {}, 1, opset=23)
    found = {v for v in ("10.3", "10.6", "10.10", "10.13", "10.15", "11.0", "11.5")
             if any(i.op == "opset" for i in lint(model, v))}
    assert found == {"10.3", "10.6", "10.10", "10.13"}  # 22 documented up to 10.14, 24 from 10.15
    assert any(i.op == "opset" for i in lint(build("Relu", [X4], {}, 1, opset=25), "11.2"))
    assert not any(i.op == "opset" for i in lint(build("Relu", [X4], {}, 1, opset=25), "11.5"))


def test_versions_outside_what_the_lint_knows():
    model = build("Relu", [X4], {}, 1)
    with pytest.raises(TrtError, match="newer than the newest release"):
        lint(model, "12")
    with pytest.raises(TrtError, match="10.3 or newer"):
        lint(model, "10.2")
    assert allowlist.line_of((10, 6, 1)) == "10.3" and allowlist.line_of((10, 16)) == "10.13"
    assert allowlist.line_of((11, 1)) == "11.0" and allowlist.line_of((11, 5)) == "11.2"


def test_rules_document_is_current(repo_root):
    import subprocess
    import sys

    script = repo_root / "scripts" / "lint_rules_doc.py"
    assert subprocess.run([sys.executable, str(script), "--check"]).returncode == 0, \
        "docs/TENSORRT_LINT.md is out of date: run python scripts/lint_rules_doc.py"


def test_split_num_outputs_must_match_and_stand_alone():
    x = EXAMPLES["Split"][0][0]
    good = build("Split", [x], {"axis": 1, "num_outputs": 2}, 2)
    assert not any(verdicts(good).values())
    for inputs, n in (([x], 3), ([x, const([2, 2], I64)], 2)):
        model = build("Split", inputs, {"axis": 1, "num_outputs": 2}, n, infer=False)
        assert all(verdicts(model).values()), (len(inputs), n)


def test_a_file_that_aborts_onnx_shape_inference_is_still_linted(tmp_path):
    """onnx's C++ shape inference asserts (aborts the process) on a Split with more outputs than
    num_outputs: --check-trt on such a crafted file must report it, not die."""
    from typer.testing import CliRunner

    from restormer_deploy.cli.export import app

    model = build("Split", [EXAMPLES["Split"][0][0]], {"axis": 1, "num_outputs": 2}, 3, infer=False)
    path = tmp_path / "crafted.onnx"
    onnx.save(model, str(path))
    r = CliRunner().invoke(app, [str(path), "--check-trt", "10.13"])
    assert r.exit_code == 1 and "num_outputs=2 but 3 outputs" in r.output, r.output
