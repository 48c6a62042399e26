"""What the TensorRT ONNX parser accepts of the operators our exports emit, per TensorRT line.

Deny by default: for an operator in ``RULES`` anything its rule does not allow is a finding: an
attribute it does not list, an attribute value outside its set, a required attribute missing, an
input count outside its range, an empty optional input the line cannot skip, a runtime tensor where
the parser needs an initializer or a Constant, more outputs than the importer returns, an input type
it does not list, a line before ``since``. Operators we never emit are checked by the older
operator table (``onnx_trt_ops.py``) in ``lint.py``.

Every rule names its sources (labels of ``SOURCES``): rows of onnx-tensorrt ``docs/operators.md``,
importer and checker functions at the onnx-tensorrt commits that NVIDIA/TensorRT's release branches
pin (read with git), TensorRT changelog and release-notes lines. Where a release's parser source
could not be read (10.11-10.13, 10.15, 11.1, 11.2+), the rule of the nearest read release is kept and
the rule says so; docs/TENSORRT_LINT.md lists every rule.

Lines, named by their first release; a version uses the newest line at or below it. A rule that
changed inside a line takes the strictest form of that line.

* ``10.3``: 10.3-10.6;  ``10.7``: 10.7-10.12 (plugin before local function, dynamic Squeeze /
  Unsqueeze axes);  ``10.13``: 10.13-10.16;  ``11.0``: 11.0-11.1;  ``11.2``: 11.2 and later (DFT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LINES = ("10.3", "10.7", "10.13", "11.0", "11.2")
NEWEST = (11, 5)  # the newest release whose notes were read (NVIDIA/TensorRT v11.5, 2026-11-18)
# The releases (major -> minors) the lint knows; any other major.minor is no TensorRT it can speak for.
RELEASES = {10: range(3, 17), 11: range(NEWEST[1] + 1)}


def is_release(version: tuple[int, ...]) -> bool:
    """Whether the major.minor of a parsed version (``(11,)`` reads as 11.0) is a known release."""
    major, minor = (tuple(version[:2]) + (0,))[:2]
    return minor in RELEASES.get(major, ())


def known_releases() -> str:
    """'10.3-10.16, 11.0-11.5': for messages."""
    return ", ".join(f"{m}.{r[0]}-{m}.{r[-1]}" for m, r in RELEASES.items())

_OT = "onnx/onnx-tensorrt"
SOURCES = {
    "ops-10.1": f"{_OT} docs/operators.md at 10.1-GA (96e781103cfc4adf4a6bb557e94bac8e693f6f4c)",
    "ops-10.6": f"{_OT} docs/operators.md at the 10.6 pin (4442153a4483c29e109241eb11752f3e59be62f8)",
    "ops-10.16": f"{_OT} docs/operators.md at the 10.16 pin (6bde6596eca84abf9afe9b4d21c18c32800fd3ad)",
    "imp-10.3": f"{_OT} onnxOpImporters.cpp at the 10.3 pin (62bdde2a04fcd53c2409cb895ee18db445b7e755)",
    "imp-10.10": f"{_OT} onnxOpImporters.cpp at the 10.10 pin (3b9c961a4318cea6fa1fa5f064562064eb27a9bd)",
    "imp-11.0": f"{_OT} onnxOpImporters.cpp at the 11.0 pin (5ab48c5c436a5686b8574c4a372cbca224273b5a)",
    "chk-10.3": f"{_OT} onnxOpCheckers.cpp at the 10.3 pin (62bdde2a)",
    "chk-10.6": f"{_OT} onnxOpCheckers.cpp at the 10.6 pin (4442153a)",
    "utl-10.3": f"{_OT} importerUtils.cpp at the 10.3 pin (62bdde2a)",
    "utl-10.10": f"{_OT} importerUtils.cpp at the 10.10 pin (3b9c961a)",
    "mi-10.3": f"{_OT} ModelImporter.cpp parseNode at the 10.3 pin (62bdde2a), lines 222-255",
    "mi-10.6": f"{_OT} ModelImporter.cpp parseNode at the 10.6 pin (4442153a), lines 225-229",
    "mi-10.7": f"{_OT} ModelImporter.cpp isNodeInPluginRegistry / parseNode at the 10.7 pin "
               "(9c69a24bc2e20c8a511a4e6b06fd49639ec5300a), lines 111-121, 165-188",
    "mi-10.16": f"{_OT} ModelImporter.cpp shouldImportAsPlugin at the 10.16 pin (6bde6596) and the 11.0 pin (5ab48c5c)",
    "cl": "NVIDIA/TensorRT CHANGELOG.md at release/11.1 (905361629f22836090d75ea77cba732a25107148)",
    "rn-11.2": "NVIDIA/TensorRT v11.2 release (2026-08-04): 'Added support for the DFT operator' (cuFFT FFTPlugin)",
    "rn-11.5": "NVIDIA/TensorRT v11.5 release (2026-11-18): 'Added support for ONNX opset 25'",
    "fft-11.3": "NVIDIA/TensorRT plugin/fftPlugin at v11.3 (98adec82349b3ae22aa3f753d733b9a1a84d497d): "
                "FP16/BF16 need power-of-two lengths",
}

FLOATS = ("FP32", "FP16", "BF16")
NUMBERS = (*FLOATS, "INT32", "INT64")
ALL = (*NUMBERS, "BOOL")
ANY = None  # any value of the attribute

# Documented default-domain opset ranges (the parser's code only warns below 7 and never refuses a
# higher opset, mi-10.3 importModel): (first release, highest opset, source).
OPSET_MAX = (
    ((10, 3), 20, "ops-10.1 'opset 9 to opset 20' (the 10.3-10.5 headers say the same)"),
    ((10, 6), 22, "ops-10.6 'opset 9 to opset 22' (10.6-10.10)"),
    ((10, 11), 22, "10.11-10.14: no operators.md readable; the 10.10 range is kept"),
    ((10, 15), 24, "ops-10.16 'opset 9 to opset 24' (10.15, 10.16, 11.1 alike)"),
    ((11, 5), 25, "rn-11.5 'Added support for ONNX opset 25'"),
)
OPSET_MIN = 9


@dataclass(frozen=True)
class Rule:
    """The forms of one operator the parser takes.

    ``attrs``: name -> allowed values (``ANY``: any value); ``required``: attributes that must be
    present; ``const_inputs``: input index -> the first line that takes a runtime tensor there
    (``None``: no line); ``empty_inputs``: input index -> the first line that skips an empty
    (omitted) optional input there; ``outputs``: how many the importer returns (``None``: one per
    declared output); ``types``: allowed types of input 0; ``changes``: line -> fields that differ
    from that line on."""

    op: str
    sources: str
    inputs: tuple[int, int] = (1, 1)
    outputs: int | None = 1
    attrs: dict = field(default_factory=dict)
    required: tuple[str, ...] = ()
    const_inputs: dict = field(default_factory=dict)
    empty_inputs: dict = field(default_factory=dict)
    types: tuple[str, ...] = FLOATS
    since: str = "10.3"
    changes: dict = field(default_factory=dict)

    def at(self, line: str) -> "Rule":
        """This rule as it holds on ``line`` (the ``changes`` of that line and of those before it)."""
        merged = {}
        for key in LINES[: LINES.index(line) + 1]:
            merged.update(self.changes.get(key, {}))
        return self if not merged else Rule(**{**self.__dict__, **merged, "changes": {}})


def _r(op, sources, **kw) -> Rule:
    return Rule(op, sources, **kw)


_REDUCE = dict(inputs=(1, 2), attrs={"keepdims": ANY, "noop_with_empty_axes": (0, 1)}, types=NUMBERS,
               const_inputs={1: None})
_ELEMENTWISE = dict(inputs=(2, 2), types=NUMBERS)
_QDQ = dict(inputs=(2, 3), attrs={"axis": ANY}, const_inputs={1: None, 2: None})

RULES: dict[str, Rule] = {r.op: r for r in [
    # element-wise: BOOL refused by elementwiseCheck
    _r("Add", "ops-10.1 Add; utl-10.3 elementwiseCheck L514-556", **_ELEMENTWISE),
    _r("Sub", "ops-10.1 Sub; utl-10.3 elementwiseCheck", **_ELEMENTWISE),
    _r("Mul", "ops-10.1 Mul; utl-10.3 elementwiseCheck", **_ELEMENTWISE),
    _r("Div", "ops-10.1 Div; utl-10.3 elementwiseCheck", **_ELEMENTWISE),
    _r("Max", "ops-10.1 Max; utl-10.3 elementwiseCheck", inputs=(1, 8), types=NUMBERS),
    _r("Equal", "ops-10.1 Equal; imp-10.3 Equal L1796", inputs=(2, 2), types=ALL),
    _r("Mod", "ops-10.1 Mod; imp-10.3 Mod L3586-3589: fmod=0 (the default) needs integer inputs", inputs=(2, 2),
       attrs={"fmod": (0,)}, types=("INT32", "INT64")),
    _r("Pow", "ops-10.1 Pow; utl-10.3 elementwiseCheck kPOW: float base and exponent", inputs=(2, 2)),
    # unary (unaryHelper / activationHelper refuse BOOL, INT32, UINT8)
    _r("Neg", "ops-10.1 Neg; utl-10.3 unaryHelper kNEG L1707-1721", types=NUMBERS),
    _r("Sqrt", "ops-10.1 Sqrt; utl-10.3 unaryHelper L1724"),
    _r("Reciprocal", "ops-10.1 Reciprocal; utl-10.3 unaryHelper"),
    _r("Cos", "ops-10.1 Cos; utl-10.3 unaryHelper"),
    _r("Sin", "ops-10.1 Sin; utl-10.3 unaryHelper"),
    _r("Erf", "ops-10.1 Erf; utl-10.3 unaryHelper"),
    _r("Relu", "ops-10.1 Relu; utl-10.3 activationHelper L37 (INT32 refused, against the docs)"),
    _r("Sigmoid", "ops-10.1 Sigmoid; utl-10.3 activationHelper"),
    _r("LeakyRelu", "ops-10.1 LeakyRelu; utl-10.3 activationHelper", attrs={"alpha": ANY}),
    _r("PRelu", "ops-10.1 PRelu; imp-10.10 PRelu L4337-4344 (two float inputs)", inputs=(2, 2)),
    _r("Gelu", "ops-10.1 Gelu; imp-10.3 Gelu L1990-2007 (approximate none|tanh); utl-10.3 activationHelper",
       attrs={"approximate": ("none", "tanh")}),
    _r("Identity", "ops-10.1 Identity; imp-10.3 Identity L2572", types=ALL),
    # types and shapes
    _r("Cast", "ops-10.1 Cast; chk-10.3 Cast L178-186; utl-10.3 convertDtype L313-334 (DOUBLE becomes FLOAT: "
               "refused here, the result would not be what the graph says)", types=(*ALL, "UINT8"),
       attrs={"to": ("FLOAT", "FLOAT16", "BFLOAT16", "INT32", "INT64", "BOOL", "UINT8"), "saturate": ANY},
       required=("to",)),
    _r("CastLike", "ops-10.1 CastLike; imp-10.3 CastLike L402-412", inputs=(2, 2), types=(*ALL, "UINT8"),
       attrs={"saturate": ANY}),
    _r("Concat", "ops-10.1 Concat; imp-10.3 Concat L649-666 (axis required)", inputs=(1, 1 << 16), attrs={"axis": ANY},
       required=("axis",), types=ALL),
    _r("Constant", "ops-10.1 Constant: 'sparse_value, value_string, and value_strings attributes are unsupported'; "
                   "chk-10.3 Constant L198-209", inputs=(0, 0),
       attrs={"value": ANY, "value_float": ANY, "value_floats": ANY, "value_int": ANY, "value_ints": ANY}, types=ALL),
    _r("Reshape", "ops-10.1 Reshape; imp-10.3 Reshape L4652-4698 (allowzero honoured)", inputs=(2, 2),
       attrs={"allowzero": (0, 1)}, types=ALL),
    _r("Shape", "ops-10.1 Shape; imp-10.3 Shape L5229-5261", attrs={"start": ANY, "end": ANY}, types=ALL),
    _r("Gather", "ops-10.1 Gather; imp-10.3 Gather L1924-1943", inputs=(2, 2), attrs={"axis": ANY}, types=ALL),
    _r("Expand", "ops-10.1 Expand; imp-10.3 Expand L1811-1844", inputs=(2, 2), types=ALL),
    _r("Tile", "ops-10.1 Tile; imp-10.3 Tile L5698-5718", inputs=(2, 2), types=ALL),
    _r("Range", "ops-10.1 Range; imp-10.3 Range L4182 'only supports int32, int64, and float' (FP32 start, limit "
                "and delta only as initializers: refused here)", inputs=(3, 3), types=("INT32", "INT64")),
    _r("Transpose", "ops-10.1 Transpose; imp-10.3 Transpose L5786-5810", attrs={"perm": ANY}, types=ALL),
    _r("DepthToSpace", "ops-10.1 DepthToSpace; imp-10.3 DepthToSpace L1245-1300 (any mode but DCR is read as CRD)",
       attrs={"blocksize": ANY, "mode": ("DCR", "CRD")}, required=("blocksize",), types=NUMBERS),
    _r("SpaceToDepth", "ops-10.1 SpaceToDepth; imp-10.3 SpaceToDepth L5421-5431", attrs={"blocksize": ANY},
       required=("blocksize",), types=NUMBERS),
    _r("Split", "ops-10.1 Split; imp-10.3 Split L5465-5541 (num_outputs = the declared outputs, split and "
                "num_outputs not both); mi-10.6 (an empty output name breaks the output count)", inputs=(1, 2),
       outputs=None, attrs={"axis": ANY, "num_outputs": ANY}, types=ALL),
    _r("Slice", "ops-10.1 Slice 'axes must be an initializer'; cl 10.3 'tensor axes inputs for Slice'; imp-10.10 "
                "Slice (an omitted axes/steps input is skipped; imp-10.3 reads it as a tensor)", inputs=(3, 5),
       const_inputs={3: "10.3"}, empty_inputs={3: "10.13", 4: "10.13"}, types=ALL),
    _r("Squeeze", "ops-10.1 Squeeze 'axes must be an initializer'; imp-10.3 Squeeze L5615; cl 10.7 'dynamic axes "
                  "support for Squeeze and Unsqueeze' (axes must still resolve to a build-time constant)",
       inputs=(1, 2), const_inputs={1: "10.7"}, types=ALL),
    _r("Unsqueeze", "ops-10.1 Unsqueeze 'axes must be a constant tensor'; imp-10.3 Unsqueeze L5884-5886; cl 10.7",
       inputs=(2, 2), const_inputs={1: "10.7"}, types=ALL),
    _r("Pad", "ops-10.1 Pad 'axes must be an initializer'; imp-10.3 Pad L3851-3873, modes L3997-4050; cl 10.4 "
              "'tensor axes for Pad'", inputs=(2, 4), attrs={"mode": ("constant", "reflect", "edge", "wrap")},
       const_inputs={3: "10.7"}, types=NUMBERS),
    # reductions: axes must be weights on every line (reduceTensor)
    _r("ReduceMean", "ops-10.1 ReduceMean 'axes must be an initializer'; utl-10.3 reduceTensor L1465-1466", **_REDUCE),
    _r("ReduceSum", "ops-10.1 ReduceSum 'axes must be an initializer'; utl-10.3 reduceTensor", **_REDUCE),
    _r("ReduceProd", "ops-10.1 ReduceProd 'axes must be an initializer'; utl-10.3 reduceTensor", **_REDUCE),
    _r("ReduceSumSquare", "ops-10.1 ReduceSumSquare 'axes must be an initializer'; utl-10.3 reduceTensor", **_REDUCE),
    _r("ReduceMax", "ops-10.1 ReduceMax 'axes must be an initializer'; utl-10.3 reduceTensor", **_REDUCE),
    # layers
    _r("Conv", "ops-10.1 Conv; imp-10.3 Conv L737-863; utl-10.3 getKernelParams L745-826, convMultiInput "
               "L1742-1850 (10.3: a runtime weight, e.g. from DequantizeLinear, needs kernel_shape; cl 10.4 fix)",
       inputs=(2, 3), attrs={"auto_pad": ("NOTSET", "VALID"), "dilations": ANY, "group": ANY, "kernel_shape": ANY,
                             "pads": ANY, "strides": ANY}, required=("kernel_shape",),
       changes={"10.7": {"required": ()}}),
    _r("MatMul", "ops-10.1 MatMul; imp-10.3 MatMul L3409 (A not INT32/INT64)", inputs=(2, 2)),
    _r("Gemm", "ops-10.1 Gemm", inputs=(2, 3), attrs={"alpha": ANY, "beta": ANY, "transA": (0, 1), "transB": (0, 1)}),
    _r("Softmax", "ops-10.1 Softmax; imp-10.3 Softmax L5400-5409 (opset >= 13: one axis)", attrs={"axis": ANY}),
    _r("LayerNormalization", "ops-10.1 LayerNormalization 'Only the first output Y is supported'; mi-10.3 (declared "
                             "outputs, empty names included, <= returned); chk-10.6 LayerNormalization L416-420 "
                             "(emptyOutputChecker)", inputs=(2, 3), outputs=1,
       attrs={"axis": ANY, "epsilon": ANY, "stash_type": (1,)}),
    _r("Resize", "ops-10.1 Resize: transformation, interpolation and nearest modes, aspect-ratio policy 'stretch', "
                 "'Antialiasing is not supported'", inputs=(1, 4),
       attrs={"antialias": (0,), "coordinate_transformation_mode": ("half_pixel", "pytorch_half_pixel",
              "tf_half_pixel_for_nn", "asymmetric", "align_corners"), "cubic_coeff_a": ANY, "exclude_outside": (0,),
              "extrapolation_value": ANY, "keep_aspect_ratio_policy": ("stretch",), "mode": ("nearest", "linear"),
              "nearest_mode": ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")}),
    _r("If", "ops-10.1 If; chk-10.3 If L368-378 (then and else: the same number of outputs)", outputs=None,
       attrs={"then_branch": ANY, "else_branch": ANY}, required=("then_branch", "else_branch"), types=("BOOL",)),
    # explicit quantization (imp-10.3 QuantDequantLinearHelper L1346-1656)
    _r("QuantizeLinear", "ops-10.1 QuantizeLinear 'y_zero_point must be 0'; imp-10.3 L1352-1355 (UINT8 zero point "
                         "refused), L1378-1419 (constant scale > 0), L1521-1528 (per-channel axis default 0 up to "
                         "10.10, 1 from 10.16: written explicitly)", types=FLOATS, **_QDQ),
    _r("DequantizeLinear", "ops-10.1 DequantizeLinear 'x_zero_point must be zero'; imp-10.3 QuantDequantLinearHelper",
       types=("INT8", "FP8", "INT4"), **_QDQ),
    _r("DFT", "ops-10.1 DFT 'N'; chk-10.3 DFT L904 (refused before any function or plugin); rn-11.2; fft-11.3 "
              "(FP32 here: FP16/BF16 only on power-of-two lengths, and with no 11.2+ importer readable, "
              "dft_length and axis must be constants)", inputs=(1, 3), attrs={"inverse": (0, 1), "onesided": (0,)},
       const_inputs={1: None, 2: None}, types=("FP32",), since="11.2"),
]}


def line_of(version: tuple[int, ...]) -> str:
    """The newest line at or below ``version`` (a parsed version tuple, 10.3 or newer)."""
    v = tuple(version[:2]) + (0,) * (2 - len(version[:2]))
    return [line for line in LINES if tuple(int(p) for p in line.split(".")) <= v][-1]


def opset_range(version: tuple[int, ...]) -> tuple[int, int, str]:
    """(lowest, highest, source) of the default-domain opsets documented for ``version``."""
    v = tuple(version[:2]) + (0,) * (2 - len(version[:2]))
    first, high, source = [row for row in OPSET_MAX if row[0] <= v][-1]
    return OPSET_MIN, high, source


def rule_for(op: str, line: str) -> Rule | None:
    rule = RULES.get(op)
    return None if rule is None else rule.at(line)
