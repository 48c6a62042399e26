"""Issue 32: the operators the spandrel architectures' TensorRT-target exports use, one graph per form.

Each rule's plain form parses (``test_lint.EXAMPLES``); here, the forms its cited source refuses are
refused, the forms no read source covers are not verified, and the forms our exports emit parse. The
expected verdicts are read from the parser source (onnx-tensorrt release/10.1-GA with git, the 10.13
pin 346bdcae where read, NVIDIA/TensorRT NvInfer.h), cited per test, never from the lint's code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto as T
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
from test_lint import X4, build, const, kinds, tensor  # noqa: E402

F, I64, B, U8 = T.FLOAT, T.INT64, T.BOOL, T.UINT8
LINES = ("10.3", "10.7", "10.13", "11.0", "11.2")


def every(verdict: str) -> dict:
    return dict.fromkeys(LINES, verdict)


def test_activations_and_not_take_their_types():
    # activationHelper refuses INT32, BOOL, UINT8 (utl-10.1 L34-37); kNOT takes BOOL only (utl-10.1 L1703-1706)
    assert kinds(build("Tanh", [X4], {}, 1)) == every("parses")
    assert kinds(build("Softplus", [X4], {}, 1)) == every("parses")
    assert kinds(build("Not", [tensor(B, [4])], {}, 1)) == every("parses")
    assert "parses" not in kinds(build("Not", [tensor(F, [4])], {}, 1)).values()


def test_reduce_with_an_axes_attribute_the_opset_17_form():
    # reduceTensor reads the axes attribute before the input (utl-10.1 L1467-1470); ReduceL2 = SumSquare + sqrt
    for op in ("ReduceMean", "ReduceL2", "ReduceSum"):
        model = build(op, [X4], {"axes": [2, 3], "keepdims": 1}, 1, opset=17)
        assert kinds(model) == every("parses"), op
    # a runtime axes input: 'Axis input must be an initializer!' (utl-10.1 L1473-1474)
    assert "parses" not in kinds(build("ReduceL2", [X4, tensor(I64, [1])], {}, 1)).values()


def test_clip_bounds():
    # a runtime bound takes the elementwise path (imp-10.1 Clip L567-598); an omitted min with a max is skipped
    assert kinds(build("Clip", [X4, tensor(F, [])], {}, 1)) == every("parses")
    assert kinds(build("Clip", [X4, "", const(6.0)], {}, 1)) == every("parses")
    # the min/max attributes are read only below opset 11 (L609, L641-642): not in the allow-list
    assert "parses" not in kinds(build("Clip", [X4], {"min": 0.0}, 1, opset=6)).values()


def test_where_refuses_uint8_values():
    cond = tensor(B, [1, 4, 8, 8])
    assert kinds(build("Where", [cond, X4, const(0.0)], {}, 1)) == every("parses")
    # int64 shape arithmetic (our window-attention exports): Where takes every type but UINT8 for X and Y
    assert kinds(build("Where", [tensor(B, [4]), tensor(I64, [4]), const([1, 1, 1, 1], I64)], {}, 1)) == \
        every("parses")
    # checkNotInvalidType(inputs.at(1|2), {"UINT8"}) (imp-10.1 Where L6030-6031, the same at the 10.13 pin)
    u8 = build("Where", [cond, tensor(U8, [1, 4, 8, 8]), tensor(U8, [1, 4, 8, 8])], {}, 1, out_types={"out0": U8})
    assert kinds(u8) == every("refused")


def test_constant_of_shape_value_types():
    value = numpy_helper.from_array(np.array([0], np.int64))
    assert kinds(build("ConstantOfShape", [tensor(I64, [1])], {"value": value}, 1)) == every("parses")
    assert kinds(build("ConstantOfShape", [const([2, 3], I64)], {}, 1)) == every("parses")  # value defaults to 0.0
    # chk-10.1 ConstantOfShape L211-223: a UINT8 value is refused
    u8 = numpy_helper.from_array(np.array([1], np.uint8))
    model = build("ConstantOfShape", [tensor(I64, [1])], {"value": u8}, 1, out_types={"out0": U8})
    assert kinds(model)["10.3"] == "refused"
    assert "parses" not in kinds(model).values()


def test_scatter_nd_reduction():
    inputs = [X4, const([[0, 0, 0, 0]], I64), const([1.0])]
    # 'Attribute reduction is not supported' for any value (imp-10.1 ScatterND L5151); later lines: not read
    model = build("ScatterND", inputs, {"reduction": "none"}, 1)
    assert kinds(model) == {"10.3": "refused", **dict.fromkeys(LINES[1:], "not verified")}


def test_max_pool_forms():
    base = {"kernel_shape": [2, 2], "strides": [2, 2]}
    assert kinds(build("MaxPool", [X4], base, 1)) == every("parses")
    assert kinds(build("MaxPool", [X4], {**base, "auto_pad": "SAME_UPPER"}, 1)) == every("parses")
    # the Indices output (chk-10.1 MaxPool L466-471), dilations other than 1 (chk-10.1 L86-97), a 4-D kernel
    # (utl-10.1 poolingHelper L1399-1401), SAME padding with pads (utl-10.1 getKernelParams L819-822)
    indices = build("MaxPool", [X4], base, 2, out_types={"out1": I64})
    assert kinds(indices) == every("refused")
    assert kinds(build("MaxPool", [X4], {**base, "dilations": [2, 2]}, 1)) == every("refused")
    x6 = tensor(F, [1, 2, 4, 4, 4, 4])
    assert kinds(build("MaxPool", [x6], {"kernel_shape": [2, 2, 2, 2]}, 1)) == every("refused")
    same = build("MaxPool", [X4], {**base, "auto_pad": "SAME_LOWER", "pads": [0, 0, 1, 1]}, 1, infer=False)
    assert kinds(same) == every("refused")


def test_average_pool_forms():
    # GRL's form: count_include_pad read by getKernelParams (utl-10.1 L775-780)
    grl = {"kernel_shape": [4, 4], "strides": [4, 4], "pads": [0, 0, 0, 0], "ceil_mode": 0, "count_include_pad": 1}
    assert kinds(build("AveragePool", [X4], grl, 1)) == every("parses")
    # dilations other than 1 (chk-10.1 poolingCheckHelper L86-97, AveragePool's checker L165-168)
    assert kinds(build("AveragePool", [X4], {**grl, "dilations": [2, 2]}, 1)) == every("refused")


def test_conv_transpose_forms():
    w = const(np.ones((4, 2, 2, 2)))
    assert kinds(build("ConvTranspose", [X4, w, const(np.zeros(2))], {"strides": [2, 2]}, 1)) == every("parses")
    # kernel_shape against the weights (imp-10.1 ConvTranspose L964-971, the same at the 10.13 pin)
    model = build("ConvTranspose", [X4, w], {"kernel_shape": [3, 3]}, 1, infer=False)
    assert kinds(model) == every("refused")
    # runtime weights and output_shape: outside the allow-list
    assert "parses" not in kinds(build("ConvTranspose", [X4, tensor(F, [4, 2, 2, 2])], {}, 1)).values()
    assert "parses" not in kinds(build("ConvTranspose", [X4, w], {"output_shape": [16, 16]}, 1)).values()


def test_einsum_equations():
    # OmniSR's equation, with spaces (chk-10.1 Einsum L265-283 allows ' ')
    assert kinds(build("Einsum", [X4, X4], {"equation": "b h i d, b h j d -> b h i j"}, 1)) == every("parses")
    # an upper-case label: chk-10.1 refuses it; the later checkers are not read here
    upper = build("Einsum", [X4, X4], {"equation": "bhiD,bhjD->bhij"}, 1, infer=False)
    assert kinds(upper) == {"10.3": "refused", **dict.fromkeys(LINES[1:], "not verified")}
    # a diagonal: 'TensorRT does not support ellipsis, diagonal operations' (NvInfer.h release/10.3 L5606), gone
    # from the release/10.13 header, full Einsum from 10.12 (changelog)
    diag = build("Einsum", [tensor(F, [4, 4])], {"equation": "ii->i"}, 1)
    assert kinds(diag) == {"10.3": "not verified", "10.7": "not verified", "10.13": "parses", "11.0": "parses",
                           "11.2": "parses"}


def test_batch_normalization_forms():
    x = X4
    params = [const(np.ones(4)), const(np.zeros(4)), const(np.zeros(4)), const(np.ones(4))]
    # runtime running statistics (MixDehazeNet): the elementwise fallback (imp-10.1 L322-325)
    runtime = [*params[:2], tensor(F, [4]), tensor(F, [4])]
    assert kinds(build("BatchNormalization", [x, *runtime], {"epsilon": 1e-5}, 1)) == every("parses")
    # training_mode=1 (chk-10.1 BatchNormalization L170-176); a 2-D scale (imp-10.1 L308-309)
    train = build("BatchNormalization", [x, *params], {"training_mode": 1}, 1, infer=False)
    assert kinds(train) == every("refused")
    two_d = build("BatchNormalization", [x, const(np.ones((4, 1))), *params[1:]], {}, 1, infer=False)
    assert kinds(two_d) == every("refused")


def test_top_k_k_limit():
    x = tensor(F, [1, 8000])
    assert kinds(build("TopK", [x, const([2], I64)], {"axis": -1}, 2)) == every("parses")
    # ops-10.1: 'K input must be less than 3840' (a build-time limit; a runtime K cannot be checked)
    assert kinds(build("TopK", [x, const([4000], I64)], {"axis": -1}, 2)) == every("not verified")
    assert kinds(build("TopK", [x, tensor(I64, [1])], {"axis": -1}, 2)) == every("not verified")


def _resize_with_runtime_sizes(prefix_end: int):
    """x -> Resize(linear, sizes = Concat(Shape(x)[0:prefix_end], runtime tail)) as our SR exports write it."""
    rank = 4
    nodes = [helper.make_node("Shape", ["x"], ["shp"], name="s0"),
             helper.make_node("Slice", ["shp", "st", "en", "ax"], ["head"], name="s1"),
             helper.make_node("Concat", ["head", "tail"], ["sizes"], name="s2", axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="n0", mode="linear")]
    inits = [numpy_helper.from_array(np.array([v], np.int64), n)
             for n, v in (("st", 0), ("en", prefix_end), ("ax", 0))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [1, 4, None, None]),
                                           helper.make_tensor_value_info("tail", I64, [rank - prefix_end])],
                              [helper.make_tensor_value_info("y", F, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_linear_resize_with_runtime_sizes_keeping_n_and_c():
    """Runtime sizes whose first two entries are the input's own N and C (Shape -> Slice -> Concat) change only the
    two innermost axes: linear on at most the 3 innermost (imp-10.1 Resize L4612-4623, utl-10.1 canUseNDResize)."""
    assert kinds(_resize_with_runtime_sizes(2)) == every("parses")
    assert kinds(_resize_with_runtime_sizes(1)) == every("parses")  # C, H, W: still the 3 innermost
    # sizes that are all a runtime tensor: which axes change is not known statically
    opaque = _resize_with_runtime_sizes(2)
    opaque.graph.node[3].input[3] = "tail"
    assert kinds(opaque) == every("not verified")


def test_instance_normalization_forms():
    scale, bias = const(np.ones(4)), const(np.zeros(4))
    # RestoreFormer's form: rank 3, FP32, the native layer (imp-10.1 L2691-2696)
    assert kinds(build("InstanceNormalization", [tensor(F, [1, 4, 16]), scale, bias], {}, 1)) == every("parses")
    # FP16 input with FP32 scale (imp-10.1 L2685-2689); rank 2 (utl-10.1 normalizationHelper L1312-1314)
    mixed = build("InstanceNormalization", [tensor(T.FLOAT16, [1, 4, 16]), scale, bias], {}, 1,
                  out_types={"out0": T.FLOAT16}, infer=False)
    assert kinds(mixed) == every("refused")
    assert kinds(build("InstanceNormalization", [tensor(F, [4, 16]), scale, bias], {}, 1, infer=False)) == \
        every("refused")


def test_arg_min_and_scatter_elements():
    assert kinds(build("ArgMin", [tensor(F, [2, 64])], {"axis": 1, "keepdims": 0}, 1)) == every("parses")
    data, upd = tensor(F, [2, 8]), tensor(F, [2, 1])
    assert kinds(build("ScatterElements", [data, const([[1], [3]], I64), upd], {"axis": 1}, 1)) == every("parses")
    # one rank for data, indices, updates (utl-10.1 addScatterLayer L2055-2059)
    bad = build("ScatterElements", [data, const([1, 3], I64), upd], {"axis": 1}, 1, infer=False)
    assert kinds(bad) == every("refused")
    # a reduction goes to a plugin (imp-10.1 ScatterElements L5196-5199): not in the allow-list
    assert "parses" not in kinds(build("ScatterElements", [data, const([[1], [3]], I64), upd],
                                       {"axis": 1, "reduction": "add"}, 1, opset=18)).values()


def test_comparisons_floor_atan_flatten_reduce_min():
    """HVICIDNet's and FBCNN's forms: Greater/Less against a scalar (elementwiseHelper broadcasts it, utl-10.1
    L566-606), Floor/Atan on floats (unaryHelper), Flatten axis 1, ReduceMin with the axes attribute."""
    x3 = tensor(F, [1, 48, 48])
    assert kinds(build("Greater", [x3, const(0.5)], {}, 1)) == every("parses")
    assert kinds(build("Less", [x3, const(0.5)], {}, 1)) == every("parses")
    assert kinds(build("Floor", [tensor(F, [5])], {}, 1)) == every("parses")
    assert kinds(build("Atan", [x3], {}, 1)) == every("parses")
    assert kinds(build("Flatten", [tensor(F, [1, 512, 1, 1])], {"axis": 1}, 1)) == every("parses")
    assert kinds(build("ReduceMin", [X4], {"axes": [1], "keepdims": 1}, 1, opset=17)) == every("parses")
    # unaryHelper refuses integer inputs for kFLOOR (utl-10.1 L1730-1735): never parses
    assert "parses" not in kinds(build("Floor", [tensor(I64, [5])], {}, 1)).values()
