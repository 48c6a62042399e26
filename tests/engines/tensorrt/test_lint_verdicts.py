"""Issue 26: the findings of the TensorRT engineer, one small graph each, with the verdict the parser
source gives (parses / refused / not verified). Each failed on the lint before issue 26 (a false pass
or a false refusal). The expected verdicts are read from the sources cited in allowlist.SOURCES, not
from the lint's code: 10.1-GA for the 10.3 line, the 10.13 and 11.0 pins where read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from restormer_deploy.engines.tensorrt.lint import choose_version, lint, version_for

sys.path.insert(0, str(Path(__file__).parent))
from test_lint import X4, build, const, kinds, tensor  # noqa: E402  (the one-node builder of the rule tests)

F, I64 = T.FLOAT, T.INT64
ALL_LINES = ("10.3", "10.7", "10.13", "11.0", "11.2")


def every(verdict: str) -> dict:
    return dict.fromkeys(ALL_LINES, verdict)


def graph_verdicts(model) -> dict:
    """line -> verdict of the whole file (graph-level findings included)."""
    from restormer_deploy.engines.tensorrt.lint import verdict_of

    return {v: verdict_of(lint(model, v)) for v in ALL_LINES}


# ---------------------------------------------------------------- false passes (no longer "parses")

def test_slice_with_omitted_steps_is_not_verified():
    x, starts, ends, axes = ([X4, const([1], I64), const([3], I64), const([1], I64)])
    model = build("Slice", [x, starts, ends, axes, ""], {}, 1)
    assert "parses" not in kinds(model).values()


def test_squeeze_runtime_axes():
    model = build("Squeeze", [tensor(F, [1, 4, 1, 8]), tensor(I64, [1])], {}, 1)
    assert kinds(model) == {"10.3": "refused", **dict.fromkeys(ALL_LINES[1:], "not verified")}


def test_squeeze_without_axes_on_a_dynamic_shape():
    model = build("Squeeze", [tensor(F, [1, "n", 1, 8])], {}, 1)
    assert kinds(model) == {**dict.fromkeys(ALL_LINES[:4], "refused"), "11.2": "not verified"}
    assert kinds(build("Squeeze", [tensor(F, [1, 4, 1, 8])], {}, 1)) == every("parses")  # static: parses


def test_rank_above_8_and_int16_tensors_are_refused():
    nine = build("Relu", [tensor(F, [1] * 9)], {}, 1)
    assert graph_verdicts(nine) == every("refused")
    int16_input = build("Add", [tensor(T.INT16, [4]), tensor(T.INT16, [4])], {}, 1, out_types={"out0": T.INT16})
    assert graph_verdicts(int16_input) == every("refused")
    model = build("Add", [tensor(F, [4]), tensor(F, [4])], {}, 1)
    model.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.int16), "w16"))
    model.graph.node[0].input[1] = "w16"
    del model.graph.input[1]
    assert graph_verdicts(model) == every("refused")


def test_linear_resize_beyond_the_three_innermost_axes():
    x5 = tensor(F, [1, 2, 4, 4, 4])
    model = build("Resize", [x5, "", const([1, 2, 2, 2, 2])], {"mode": "linear"}, 1)
    assert kinds(model) == every("refused")
    assert kinds(build("Resize", [x5, "", const([1, 1, 2, 2, 2])], {"mode": "linear"}, 1)) == every("parses")


def test_conv_transpose_rank_limit():
    """'Deconvolution input must be at least 3D and at most 5D' (imp-10.1 ConvTranspose L891-894, the same at the
    10.13 pin): rank 4 parses, rank 6 is refused, an unknown rank is not verified."""
    w = const(np.ones((4, 4, 3, 3)))
    assert kinds(build("ConvTranspose", [X4, w], {"kernel_shape": [3, 3]}, 1)) == every("parses")
    w6 = const(np.ones((4, 4, 3, 3, 3, 3)))
    six = build("ConvTranspose", [tensor(F, [1, 4, 8, 8, 8, 8]), w6], {"kernel_shape": [3, 3, 3, 3]}, 1)
    assert kinds(six) == every("refused")
    unknown = build("ConvTranspose", [tensor(F, None), w], {"kernel_shape": [3, 3]}, 1, infer=False)
    assert kinds(unknown) == every("not verified")


def test_split_with_a_negative_last_chunk():
    model = build("Split", [tensor(F, [1, 5, 8])], {"axis": 1, "num_outputs": 4}, 4, infer=False)
    assert kinds(model) == every("refused")


def test_pad_with_a_non_scalar_constant_value():
    model = build("Pad", [X4, const([0, 0, 1, 1, 0, 0, 1, 1], I64), const([0.0, 1.0])], {"mode": "constant"}, 1)
    assert kinds(model) == every("refused")


def test_dequantize_per_channel_scale_count_must_match():
    q = tensor(T.INT8, [4, 4, 3, 3])
    model = build("DequantizeLinear", [q, const(np.full(3, 0.05)), const(np.zeros(3), T.INT8)], {"axis": 0}, 1,
                  infer=False)
    assert kinds(model) == every("refused")


def _plugin_model(**attrs):
    node = helper.make_node("Converse2D", ["x", "k"], ["y"], "c0", domain="restormer", plugin_namespace="restormer",
                            plugin_version="1", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [1, 3, 16, 16]),
                                            helper.make_tensor_value_info("k", F, [1, 1, 5, 5])],
                              [helper.make_tensor_value_info("y", F, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("restormer", 1)])


def test_plugin_node_fields_are_checked_against_the_creator():
    good = _plugin_model(scale=1, padding=2, padding_mode="circular")
    assert graph_verdicts(good) == every("parses")
    for bad in ({"padding_mode": "wrap"}, {"scale": 0}, {"constant_kernel": 2}):
        issues = lint(_plugin_model(**bad), "10.13")
        assert [i.verdict for i in issues] == ["refused"] and "[plugin]" in issues[0].message, bad


def test_an_operator_with_no_rule_is_not_verified_never_refused():
    model = build("Hardmax", [X4], {"axis": -1}, 1)
    assert kinds(model) == every("not verified")


# ---------------------------------------------------------------- false refusals (now "parses")

def test_resize_cubic_exclude_outside_and_axes_parse():
    model = build("Resize", [X4, "", const([1, 1, 2, 2])], {"mode": "cubic", "exclude_outside": 1,
                                                            "cubic_coeff_a": -0.5}, 1)
    assert kinds(model) == every("parses")
    axes = build("Resize", [X4, "", const([2, 2])], {"mode": "linear", "axes": [2, 3]}, 1)
    assert kinds(axes) == every("parses")


def test_conv_same_padding_parses_and_not_with_pads():
    w = const(np.ones((4, 4, 3, 3)))
    assert kinds(build("Conv", [X4, w], {"auto_pad": "SAME_UPPER"}, 1)) == every("parses")
    assert kinds(build("Conv", [X4, w], {"auto_pad": "SAME_LOWER", "kernel_shape": [3, 3]}, 1)) == every("parses")
    assert kinds(build("Conv", [X4, w], {"auto_pad": "SAME_UPPER", "pads": [1, 1, 1, 1]}, 1)) == every("refused")


def test_conv_without_kernel_shape_takes_it_from_the_weights():
    assert kinds(build("Conv", [X4, const(np.ones((4, 4, 3, 3)))], {}, 1)) == every("parses")


def test_mod_fmod_1_on_floats_parses_fmod_0_is_refused():
    assert kinds(build("Mod", [X4, X4], {"fmod": 1}, 1)) == every("parses")
    assert kinds(build("Mod", [X4, X4], {}, 1)) == every("refused")


def test_range_on_fp32_constants_and_max_with_nine_inputs():
    assert kinds(build("Range", [const(0.0), const(4.0), const(0.5)], {}, 1)) == every("parses")
    assert kinds(build("Max", [X4] * 9, {}, 1)) == every("parses")


def test_range_types_as_each_parser_compares_them():
    """10.1-GA compares start with delta only (a comma operator, imp-10.1 Range L4182); the 10.13 and 11.0 pins
    all three; 10.7 lies between (its pin is not readable here)."""
    limit_differs = build("Range", [const(0, I64), tensor(T.INT32, []), const(1, I64)], {}, 1)
    assert kinds(limit_differs) == {"10.3": "not verified", "10.7": "not verified", "10.13": "refused",
                                    "11.0": "refused", "11.2": "refused"}
    delta_differs = build("Range", [const(0, I64), tensor(I64, []), const(1, T.INT32)], {}, 1)
    assert kinds(delta_differs) == every("refused")


def test_a_builtin_op_in_another_domain_is_dispatched_by_op_type():
    model = build("Relu", [X4], {}, 1)
    model.graph.node[0].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    assert kinds(model) == every("parses")


def test_an_opset_outside_the_documented_range_is_never_refused():
    model = build("Relu", [X4], {}, 1, opset=23)
    issues = [i for i in lint(model, "10.3") if i.op == "opset"]
    assert issues and not issues[0].refused


def test_layer_normalization_stash_type_parses():
    inputs = [tensor(F, [1, 8, 8, 4]), const(np.ones(4)), const(np.zeros(4))]
    assert kinds(build("LayerNormalization", inputs, {"axis": -1, "stash_type": 0}, 1)) == every("parses")


# ---------------------------------------------------------------- engine path, exit statuses

def test_newer_tensorrt_uses_the_newest_rules_with_a_notice():
    from restormer_deploy.cli.lint_trt import main

    assert choose_version("10.13.3") == ("10.13.3", None)
    chosen, notice = choose_version("12.1.0")
    assert chosen == "11.5" and "12.1.0" in notice and "newer" in notice
    seen: list = []
    assert version_for("12.1.0", notify=seen.append) == "11.5" and seen == [notice]
    assert main(["--version-for", "12.1.0"]) == 0 and main(["--version-for", "9.0"]) == 2


def test_builder_lints_with_the_shared_choice(repo_root):
    src = (repo_root / "engines" / "tensorrt" / "builder.py").read_text()
    assert "lint(model, version_for(version, notify=log))" in src
    assert "lint(model, version)" not in src


def test_check_trt_exit_status_per_verdict(tmp_path):
    from restormer_deploy.cli.export import app

    cases = {"parses": (build("Relu", [X4], {}, 1), 0),
             "refused": (build("Mod", [X4, X4], {}, 1), 1),
             "not verified": (build("Hardmax", [X4], {"axis": -1}, 1), 4)}
    for name, (model, status) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.onnx"
        onnx.save(model, str(path))
        r = CliRunner().invoke(app, [str(path), "--check-trt", "10.13"])
        assert r.exit_code == status, (name, r.output)
