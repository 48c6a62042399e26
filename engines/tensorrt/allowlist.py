"""What the TensorRT ONNX parser accepts of the operators our exports emit, per TensorRT line.

A node *parses* only in a form its ``RULES`` entry allows: listed attributes and values, required
attributes, an input count in range, omitted inputs and runtime tensors only where the line takes
them, a listed type of input 0, a line from ``since``. Anything outside the rule is *not verified*
(``lint.py``); a *refusal* needs a check whose cited source refuses the form (``lint_forms.py`` and
the output, type and rank checks of ``lint.py``). Operators with no rule are not verified.

Every rule names its sources (labels of ``SOURCES``), each a ref read here: onnx-tensorrt at tag
release/10.1-GA (git), the 10.13, 10.16 and 11.0 pins (code index), NVIDIA/TensorRT headers and
CHANGELOG. ``LINE_REFS`` says which read ref stands for each line; where a line's own pin cannot be
read (10.3, 10.7, 11.2) its rules are inferred and the findings say so. docs/TENSORRT_LINT.md lists
every rule (``scripts/lint_rules_doc.py``).

Lines, named by their first release; a version uses the newest line at or below it:
``10.3``: 10.3-10.6;  ``10.7``: 10.7-10.12;  ``10.13``: 10.13-10.16;  ``11.0``: 11.0-11.1;
``11.2``: 11.2 and later.
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
_TRT = "NVIDIA/TensorRT"
_GA = "at tag release/10.1-GA (96e781103cfc4adf4a6bb557e94bac8e693f6f4c, read with git)"
_IDX = "read in the code index by function (no line numbers there)"
# Every label names a ref that was read. The pins of 10.3 (62bdde2a), 10.6 (4442153a), 10.7 (9c69a24b),
# 10.10 (3b9c961a) and 11.1 (7c51a63a) cannot be read here: LINE_REFS says which read ref stands for each line.
SOURCES = {
    "ops-10.1": f"{_OT} docs/operators.md {_GA}",
    "ops-10.16": f"{_OT} docs/operators.md at the 10.16 pin (6bde6596eca84abf9afe9b4d21c18c32800fd3ad, code index)",
    "imp-10.1": f"{_OT} onnxOpImporters.cpp {_GA}",
    "utl-10.1": f"{_OT} importerUtils.cpp {_GA}",
    "utlh-10.1": f"{_OT} importerUtils.hpp {_GA}",
    "chk-10.1": f"{_OT} onnxOpCheckers.cpp {_GA}",
    "mi-10.1": f"{_OT} ModelImporter.cpp {_GA}",
    "wc-10.1": f"{_OT} WeightsContext.cpp {_GA}",
    "mi-11.0": f"{_OT} ModelImporter.cpp at the 11.0 pin (5ab48c5c), {_IDX}: parseNode dispatches by op type "
               "(a plugin first only for a node with plugin_namespace), and refuses a node whose non-empty outputs "
               "are not as many as the importer returns",
    "imp-10.13": f"{_OT} onnxOpImporters.cpp at the 10.13 pin (346bdcae450e2724ffc16d7e15710d3bbf76d7ed, the "
                 f"parsers/onnx gitlink of {_TRT} v10.13.0), {_IDX}",
    "imp-11.0": f"{_OT} onnxOpImporters.cpp at the 11.0 pin (5ab48c5c436a5686b8574c4a372cbca224273b5a, the "
                f"parsers/onnx gitlink of {_TRT} v11.0), {_IDX}",
    "nvinfer-10.7": f"{_TRT} include/NvInfer.h at release/10.7 (97ff24489d0ea979c418c7a0847dfc14c8483846) "
                    "L7703-7717 addSqueeze: 'Axes must be resolvable to a constant Int32 or Int64 1D shape tensor'",
    "nvinfer-10.3": f"{_TRT} include/NvInfer.h at release/10.3 (5b990f0a739d8faf962dfe54f4829942633c639c) "
                    "L5575-5610 IEinsumLayer: inputs kFLOAT or kHALF; L5606 'TensorRT does not support ellipsis, "
                    "diagonal operations or more than two inputs for Einsum'",
    "nvinfer-10.13": f"{_TRT} include/NvInfer.h at release/10.13 (b8db91e15be2cae4465ac17fab19e0f969e45407) "
                     "L5781-5814 IEinsumLayer: the note on ellipsis and diagonals is gone ('Ellipsis ... can be used')",
    "dims-10.3": f"{_TRT} include/NvInferRuntimeBase.h at release/10.3 (5b990f0a739d8faf962dfe54f4829942633c639c) "
                 "L204-205: 'The maximum rank ... MAX_DIMS{8}'",
    "cl": f"{_TRT} CHANGELOG.md at release/11.1 (905361629f22836090d75ea77cba732a25107148)",
    "plugin": "this repository's engines/plugins/converse2d/converse2d_plugin.cpp, Converse2DPluginCreator::"
              "createPlugin (the fields it reads and the values it refuses)",
    "rn-11.2": f"NOT READ HERE: {_TRT} v11.2 release notes ('Added support for the DFT operator'), cited by an "
               "earlier session; the snapshot here ends at release/11.1: rules resting on it give 'not verified'",
    "rn-11.5": f"NOT READ HERE: {_TRT} v11.5 release notes ('Added support for ONNX opset 25'), cited by an earlier "
               "session; used only for the documented opset range, which never refuses",
}
# The ref each line's rules were read at; "inferred" where that line's own pin cannot be read here.
LINE_REFS = {
    "10.3": "inferred from 10.1-GA (imp-10.1 and its helpers) and the 10.2/10.3 changelog (cl)",
    "10.7": "inferred from 10.1-GA and the 10.13 pin where both agree, and the 10.4-10.7 changelog (cl)",
    "10.13": "the 10.13 pin (imp-10.13) where a rule cites it, else inferred from 10.1-GA",
    "11.0": "the 11.0 pin (imp-11.0) where a rule cites it, else inferred from 10.1-GA",
    "11.2": "inferred from the 11.0 pin (no 11.1+ parser source readable here)",
}

FLOATS = ("FP32", "FP16", "BF16")
NUMBERS = (*FLOATS, "INT32", "INT64")
ALL = (*NUMBERS, "BOOL")
ANY = None  # any value of the attribute

# Documented default-domain opset ranges (the parser's code only warns below 7 and never refuses a
# higher opset, mi-10.1 importModel): (first release, highest opset, source).
# Documented default-domain opset ranges. The importer never refuses an opset (mi-10.1 L729-742: a warning
# below 7 only), so a model outside the documented range is "not verified", never refused.
OPSET_MAX = (
    ((10, 3), 20, "ops-10.1 'opset 9 to opset 20' (10.3-10.14: no later operators.md readable here, kept)"),
    ((10, 15), 24, "ops-10.16 'opset 9 to opset 24' (10.15-11.4: inferred)"),
    ((11, 5), 25, "rn-11.5 (not read here)"),
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


# reduceTensor reads an `axes` attribute first (utl-10.1 L1467-1470, the opset-17 form), else the axes input, which
# must be weights (L1471-1476)
_REDUCE = dict(inputs=(1, 2), attrs={"axes": ANY, "keepdims": ANY, "noop_with_empty_axes": (0, 1)}, types=NUMBERS,
               const_inputs={1: None})
_ELEMENTWISE = dict(inputs=(2, 2), types=NUMBERS)
_QDQ = dict(inputs=(2, 3), attrs={"axis": ANY}, const_inputs={1: None, 2: None})
_EW = "utl-10.1 elementwiseHelper L566-606, elementwiseCheck L522-563 (BOOL refused)"
_UN = "utl-10.1 unaryHelper L1693"
_ACT = "utl-10.1 activationHelper L34-37 (INT32, BOOL, UINT8 refused)"
_POOL = ("utl-10.1 poolingHelper L1382-1447 (kernel_shape read with attrs.at, L1397: required, 2 or 3 spatial axes, or "
         "1 on a rank-3 input, L1399-1401, ceil_mode L1412-1416) and getKernelParams L753-836 (pads, strides, "
         "auto_pad, dilations not passed: chk-10.1 poolingCheckHelper L86-97 refuses any but 1)")

RULES: dict[str, Rule] = {r.op: r for r in [
    _r("Add", f"ops-10.1 Add; imp-10.1 Add L177; {_EW}", **_ELEMENTWISE),
    _r("Sub", f"ops-10.1 Sub; imp-10.1 Sub L5675; {_EW}", **_ELEMENTWISE),
    _r("Mul", f"ops-10.1 Mul; imp-10.1 Mul L3568; {_EW}", **_ELEMENTWISE),
    _r("Div", f"ops-10.1 Div; imp-10.1 Div L1694; {_EW}", **_ELEMENTWISE),
    _r("Max", f"ops-10.1 Max; imp-10.1 Max L3460-3463; {_EW} (no limit on the input count)", inputs=(1, 1 << 16),
       types=NUMBERS),
    _r("Equal", "ops-10.1 Equal; imp-10.1 Equal L1796; utl-10.1 elementwiseCheck L559 (all types)", inputs=(2, 2),
       types=ALL),
    _r("Mod", "ops-10.1 Mod; imp-10.1 Mod L3573-3633: fmod=0 refuses floating-point inputs (L3582-3586), fmod=1 "
              "takes integers (L3594-3600) and floats (L3602-3632); imp-11.0 Mod (the same)", inputs=(2, 2),
       attrs={"fmod": (0, 1)},
       types=NUMBERS),
    _r("Pow", "ops-10.1 Pow; imp-10.1 Pow L4064; utl-10.1 elementwiseCheck kPOW L552-557 (float only)", inputs=(2, 2)),
    _r("Neg", f"ops-10.1 Neg; imp-10.1 Neg L3635; {_UN}", types=NUMBERS),
    _r("Sqrt", f"ops-10.1 Sqrt; imp-10.1 Sqrt L5603; {_UN}"),
    _r("Reciprocal", f"ops-10.1 Reciprocal; imp-10.1 Reciprocal L4274; {_UN}"),
    _r("Cos", f"ops-10.1 Cos; imp-10.1 Cos L1117; {_UN}"),
    _r("Sin", f"ops-10.1 Sin; imp-10.1 Sin L5263; {_UN}"),
    _r("Erf", f"ops-10.1 Erf; imp-10.1 Erf L1801; {_UN}"),
    _r("Floor", f"ops-10.1 Floor; imp-10.1 Floor L1919-1922; imp-10.13 Floor (unaryHelper kFLOOR); {_UN} (floats "
                f"only, L1730-1735)"),
    _r("Atan", f"ops-10.1 Atan; imp-10.1 Atan L167-170; {_UN} (floats only, L1730-1735)"),
    _r("Greater", f"ops-10.1 Greater; imp-10.1 Greater L2137-2140; imp-10.13 Greater; {_EW}", **_ELEMENTWISE),
    _r("Less", f"ops-10.1 Less; imp-10.1 Less L2812-2815; {_EW}", **_ELEMENTWISE),
    _r("Flatten", "ops-10.1 Flatten; imp-10.1 Flatten L1898-1917 (axis, default 1, utl-10.1 flattenTensor L613); "
                  "imp-10.13 Flatten (the same)", attrs={"axis": ANY}, types=ALL),
    _r("Exp", f"ops-10.1 Exp; imp-10.1 Exp L1806-1809; imp-10.13 Exp (unaryHelper kEXP); {_UN} (floats only, "
              f"L1730-1735)"),
    _r("Relu", f"ops-10.1 Relu; imp-10.1 Relu L4374; {_ACT}"),
    _r("Sigmoid", f"ops-10.1 Sigmoid; imp-10.1 Sigmoid L5258; {_ACT}"),
    _r("LeakyRelu", f"ops-10.1 LeakyRelu; imp-10.1 LeakyRelu L2805; {_ACT}", attrs={"alpha": ANY}),
    _r("Tanh", f"ops-10.1 Tanh; imp-10.1 Tanh L5690-5693; {_ACT}"),
    _r("Softplus", f"ops-10.1 Softplus; imp-10.1 Softplus L5420-5423; imp-10.13 Softplus (activationHelper); {_ACT}"),
    _r("Not", "ops-10.1 Not (BOOL); imp-10.1 Not L3743-3746; imp-10.13 Not (unaryHelper kNOT); utl-10.1 unaryHelper "
              "L1703-1706 (kNOT: BOOL only)", types=("BOOL",)),
    _r("Clip", "ops-10.1 Clip; imp-10.1 Clip L563-647: UINT8 refused (L565), a runtime min/max or an integer input "
               "takes the elementwise path (L567-598, FP32/FP16/BF16/INT32/INT64, an omitted min or max skipped, "
               "elementwiseClipHelper L512-561), constant bounds the activation path (L603-646, the min/max attributes "
               "are read only below opset 11, L609 and L641-642: left out); imp-10.13 Clip, imp-11.0 Clip (the "
               "same)", inputs=(1, 3), types=NUMBERS),
    _r("Where", "ops-10.1 Where; imp-10.1 Where L6028-6057 (X and Y not UINT8, L6030-6031, broadcast to one rank, "
                "L6036, before the rank checks); imp-10.13 Where, imp-11.0 Where (the "
                "same)", inputs=(3, 3), types=("BOOL",)),
    _r("ConstantOfShape", "ops-10.1 ConstantOfShape; chk-10.1 ConstantOfShape L211-223 (a UINT8 value refused); "
                          "imp-10.1 ConstantOfShape L724-735 (the shape a tensor, runtime or constant, value defaults "
                          "to a float 0); utl-10.1 constantOfShape L288-298; imp-10.13 ConstantOfShape, imp-11.0 "
                          "ConstantOfShape (the same)",
       attrs={"value": ANY}, types=("INT64",)),
    _r("ScatterElements", "ops-10.1 ScatterElements; imp-10.1 ScatterElements L5188-5202 (reduction other than none "
                          "goes to a plugin, L5196-5199: left out); utl-10.1 addScatterLayer L2039-2090 (data not "
                          "UINT8, L2042, data, indices and updates of one rank, L2055-2059, indices and updates dims "
                          "at most data's where known, L2062-2077)", inputs=(3, 3),
       attrs={"axis": ANY, "reduction": ("none",)}, types=NUMBERS),
    _r("ArgMax", "ops-10.1 ArgMax; chk-10.1 argMinMaxCheckHelper L76-84; imp-10.1 ArgMax L182-185; utl-10.1 "
                 "argMinMaxHelper L66-157 (X not UINT8, L69, TopK with k=1, keepdims and select_last_index read)",
       attrs={"axis": ANY, "keepdims": (0, 1), "select_last_index": (0, 1)}, types=NUMBERS),
    _r("ArgMin", "ops-10.1 ArgMin; chk-10.1 argMinMaxCheckHelper L76-84; imp-10.1 ArgMin L187-190; utl-10.1 "
                 "argMinMaxHelper L66-157 (as ArgMax)",
       attrs={"axis": ANY, "keepdims": (0, 1), "select_last_index": (0, 1)}, types=NUMBERS),
    _r("ScatterND", "ops-10.1 ScatterND '`reduction` is not supported'; imp-10.1 ScatterND L5148-5154 (a reduction "
                    "attribute refused, L5151, any value); utl-10.1 addScatterLayer L2039-2090 (data not UINT8, L2042, "
                    "indices cast to INT32, L2081-2083)", inputs=(3, 3), types=NUMBERS),
    _r("PRelu", "ops-10.1 PRelu; imp-10.1 PRelu L4069-4075 (two inputs, neither INT32 nor INT64)", inputs=(2, 2)),
    _r("Gelu", f"ops-10.1 Gelu; imp-10.1 Gelu L1990-2007 (approximate none|tanh); {_ACT}",
       attrs={"approximate": ("none", "tanh")}),
    _r("Identity", "ops-10.1 Identity; imp-10.1 Identity L2572", types=ALL),
    _r("Cast", "ops-10.1 Cast; chk-10.1 Cast L178-186; imp-10.1 Cast L385; utl-10.1 convertDtype L314-335 (DOUBLE "
               "becomes FLOAT: left out, the result would not be what the graph says)", types=(*ALL, "UINT8"),
       attrs={"to": ("FLOAT", "FLOAT16", "BFLOAT16", "INT32", "INT64", "BOOL", "UINT8"), "saturate": ANY},
       required=("to",)),
    _r("CastLike", "ops-10.1 CastLike; imp-10.1 CastLike L402-412", inputs=(2, 2), types=(*ALL, "UINT8"),
       attrs={"saturate": ANY}),
    _r("Concat", "ops-10.1 Concat; imp-10.1 Concat L649-666 (axis required)", inputs=(1, 1 << 16), attrs={"axis": ANY},
       required=("axis",), types=ALL),
    _r("Constant", "ops-10.1 Constant: 'sparse_value, value_string, and value_strings attributes are unsupported'; "
                   "chk-10.1 Constant L198-209; imp-10.1 Constant L668", inputs=(0, 0),
       attrs={"value": ANY, "value_float": ANY, "value_floats": ANY, "value_int": ANY, "value_ints": ANY}, types=ALL),
    _r("Reshape", "ops-10.1 Reshape; imp-10.1 Reshape L4647-4694 (allowzero honoured)", inputs=(2, 2),
       attrs={"allowzero": (0, 1)}, types=ALL),
    _r("Shape", "ops-10.1 Shape; imp-10.1 Shape L5224-5257; imp-10.13 Shape (start, end)",
       attrs={"start": ANY, "end": ANY}, types=ALL),
    _r("Gather", "ops-10.1 Gather; imp-10.1 Gather L1924-1943", inputs=(2, 2), attrs={"axis": ANY}, types=ALL),
    _r("Expand", "ops-10.1 Expand; imp-10.1 Expand L1811-1844", inputs=(2, 2), types=ALL),
    _r("Tile", "ops-10.1 Tile; imp-10.1 Tile L5702-5723", inputs=(2, 2), types=ALL),
    _r("Range", "ops-10.1 Range; imp-10.1 Range L4180-4273: start and delta of one type (L4182-4186, a comma "
                "operator: limit is not compared), INT32, INT64 or FP32 (L4191-4193), FP32 taken here only with "
                "constant inputs (L4204-4209 read them as shape tensors); imp-10.13 Range, imp-11.0 Range (all "
                "three of one type)", inputs=(3, 3), types=("INT32", "INT64", "FP32")),
    _r("Transpose", "ops-10.1 Transpose; imp-10.1 Transpose L5790-5815", attrs={"perm": ANY}, types=ALL),
    _r("DepthToSpace", "ops-10.1 DepthToSpace; imp-10.1 DepthToSpace L1245-1300 (any mode but DCR is read as CRD)",
       attrs={"blocksize": ANY, "mode": ("DCR", "CRD")}, required=("blocksize",), types=NUMBERS),
    _r("SpaceToDepth", "ops-10.1 SpaceToDepth; imp-10.1 SpaceToDepth L5425-5468; imp-10.13 SpaceToDepth",
       attrs={"blocksize": ANY}, required=("blocksize",), types=NUMBERS),
    _r("Split", "ops-10.1 Split; imp-10.1 Split L5469-5602, imp-10.13 Split, imp-11.0 Split: num_outputs equal to "
                "the outputs (L5543-5547), not with split (L5524-5528), a last chunk known negative refused "
                "(L5554-5557)", inputs=(1, 2), outputs=None, attrs={"axis": ANY, "num_outputs": ANY}, types=ALL),
    _r("Slice", "ops-10.1 Slice; imp-10.1 Slice L5285-5403 (axes: a tensor read with no null check, L5320, and "
                "'does not support dynamic axes', L5322-5323); cl 10.3 'tensor axes inputs for Slice'; imp-10.13 "
                "Slice (an omitted axes input is skipped, isNullTensor, input 4, steps, is read whenever given, with "
                "no null check, runtime axes via setInput(5))", inputs=(3, 5),
       const_inputs={3: "10.13"}, empty_inputs={3: "10.13"}, types=ALL),
    _r("Squeeze", "ops-10.1 Squeeze; imp-10.1 Squeeze L5608-5674 (axes an initializer, L5619, no axes on a dynamic "
                  "shape refused, L5645-5649); imp-10.13 / imp-11.0 Squeeze (runtime axes go to addSqueeze, no axes "
                  "on a dynamic shape refused); nvinfer-10.7 (runtime axes must resolve to constants: the builder's "
                  "check, not the parser's)", inputs=(1, 2), const_inputs={1: None}, types=ALL),
    _r("Unsqueeze", "ops-10.1 Unsqueeze 'axes must be a constant tensor'; imp-10.1 Unsqueeze L5874-5919 "
                    "(L5888-5890: the axes' values must be known)", inputs=(2, 2), const_inputs={1: None}, types=ALL),
    _r("Pad", "ops-10.1 Pad; imp-10.1 Pad L3786-4055: constant_value a scalar (L3818-3826), modes L3997-4050; "
              "imp-11.0 Pad (constant_value a scalar); cl 10.4 'tensor axes for Pad'", inputs=(2, 4),
       attrs={"mode": ("constant", "reflect", "edge", "wrap")},
       const_inputs={3: "10.7"}, types=NUMBERS),
    # reductions: axes an attribute, or an input that must be weights, on every line (reduceTensor)
    _r("ReduceMean", "ops-10.1 ReduceMean 'axes must be an initializer'; utl-10.1 reduceTensor L1456-1501 "
                     "(an axes attribute read first, L1467-1470)", **_REDUCE),
    _r("ReduceSum", "ops-10.1 ReduceSum 'axes must be an initializer'; utl-10.1 reduceTensor L1456-1501 "
                    "(an axes attribute read first, L1467-1470)", **_REDUCE),
    _r("ReduceProd", "ops-10.1 ReduceProd 'axes must be an initializer'; utl-10.1 reduceTensor L1456-1501 "
                     "(an axes attribute read first, L1467-1470)", **_REDUCE),
    _r("ReduceSumSquare", "ops-10.1 ReduceSumSquare 'axes must be an initializer'; utl-10.1 reduceTensor L1456-1501 "
                          "(an axes attribute read first, L1467-1470)",
       **_REDUCE),
    _r("ReduceMax", "ops-10.1 ReduceMax 'axes must be an initializer'; utl-10.1 reduceTensor L1456-1501 "
                    "(an axes attribute read first, L1467-1470)", **_REDUCE),
    _r("ReduceMin", "ops-10.1 ReduceMin 'axes must be an initializer'; imp-10.1 ReduceMin L4345-4349; utl-10.1 "
                    "reduceTensor L1456-1501 (an axes attribute read first, L1467-1470); imp-10.13 ReduceMin",
       **_REDUCE),
    _r("ReduceL2", "ops-10.1 ReduceL2 'axes must be an initializer'; imp-10.1 ReduceL2 L4320-4334 (ReduceSumSquare, "
                   "then unaryHelper kSQRT: floats only, utl-10.1 L1730-1735); utl-10.1 reduceTensor L1456; imp-10.13 "
                   "ReduceL2 (the same)", **{**_REDUCE, "types": FLOATS}),
    # layers
    _r("Conv", "ops-10.1 Conv; imp-10.1 Conv L737-867 (constant weights: the kernel size from the weights, L747, "
               "runtime weights: utl-10.1 convMultiInput L1750); utl-10.1 getKernelParams L753-836 (auto_pad "
               "SAME_UPPER/SAME_LOWER L790-836, refused together with pads L819-822)",
       inputs=(2, 3), attrs={"auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"), "dilations": ANY,
                             "group": ANY, "kernel_shape": ANY, "pads": ANY, "strides": ANY}),
    _r("ConvTranspose", "ops-10.1 ConvTranspose; imp-10.1 ConvTranspose L868-1115: input rank 3 to 5 (L891-894), "
                        "kernel_shape equal to the weights' (L964-971), output_padding (L1005-1024), constant weights "
                        "and bias taken here (runtime ones go to setInput, L1038-1045: left out), output_shape and "
                        "auto_pad other than NOTSET left out; utl-10.1 getKernelParams L753-836; imp-10.13 "
                        "ConvTranspose, imp-11.0 ConvTranspose (the same checks)", inputs=(2, 3),
       attrs={"auto_pad": ("NOTSET",), "dilations": ANY, "group": ANY, "kernel_shape": ANY, "output_padding": ANY,
              "pads": ANY, "strides": ANY}, const_inputs={1: None, 2: None}),
    _r("MaxPool", f"ops-10.1 MaxPool '`Indices` output tensor unsupported. `dilations` must be empty or all ones'; "
                  f"chk-10.1 MaxPool L466-471 (one output); imp-10.1 MaxPool L3465-3468; {_POOL}; imp-10.13 MaxPool "
                  f"(poolingHelper)",
       attrs={"auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"), "ceil_mode": (0, 1), "dilations": ANY,
              "kernel_shape": ANY, "pads": ANY, "storage_order": (0,), "strides": ANY}, required=("kernel_shape",)),
    _r("AveragePool", f"ops-10.1 AveragePool '2D or 3D Pooling only. `dilations` must be empty or all ones'; chk-10.1 "
                      f"AveragePool L165-168; imp-10.1 AveragePool L192-195; {_POOL}; utl-10.1 getKernelParams "
                      f"L775-780 (count_include_pad); imp-10.13 AveragePool (poolingHelper)",
       attrs={"auto_pad": ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"), "ceil_mode": (0, 1),
              "count_include_pad": (0, 1), "dilations": ANY, "kernel_shape": ANY, "pads": ANY, "strides": ANY},
       required=("kernel_shape",)),
    _r("GlobalAveragePool", "ops-10.1 GlobalAveragePool; imp-10.1 GlobalAveragePool L2085-2089 (a reduce over every "
                            "axis after N and C, utl-10.1 globalPoolingHelper L855-864); imp-10.13 GlobalAveragePool "
                            "(the same)"),
    _r("Einsum", "ops-10.1 Einsum; chk-10.1 Einsum L265-283 (letters a-z and '-', '>', '.', ',', ' ' only); imp-10.1 "
                 "Einsum L1745-1787 (ellipsis and more than two inputs rewritten, L1762-1773); nvinfer-10.3 "
                 "(FP32/FP16, no diagonal); imp-10.13 Einsum (UINT8, INT32, INT64 refused, the equation passed to "
                 "addEinsum as given); nvinfer-10.13; cl 10.12 'full Einsum'", inputs=(1, 2), attrs={"equation": ANY},
       required=("equation",), types=("FP32", "FP16")),
    _r("BatchNormalization", "ops-10.1 BatchNormalization; chk-10.1 BatchNormalization L170-176 (training_mode=1 "
                             "refused); imp-10.1 BatchNormalization L306-383 (scale, bias, mean, var 1-D, L308-315, "
                             "all weights folded into a scale layer, L327-381, else the elementwise fallback, "
                             "L322-325, batchnormFallback L197-260, which keeps the parameters' types); imp-10.13 "
                             "BatchNormalization (the same checks, the fallback casts the parameters to the input's "
                             "type in strongly typed networks)", inputs=(5, 5),
       attrs={"epsilon": ANY, "momentum": ANY, "training_mode": (0,)}),
    _r("InstanceNormalization", "ops-10.1 InstanceNormalization; imp-10.1 InstanceNormalization L2675-2699: input FP32 "
                                "or FP16 (L2681-2683), scale and bias of the input's type (L2685-2689), the native "
                                "layer by default (kNATIVE_INSTANCENORM, L2691-2696: engines/tensorrt/builder.py sets "
                                "no parser flag); utl-10.1 normalizationHelper L1300-1344 (rank 3 or more, L1312-1314)",
       inputs=(3, 3), attrs={"epsilon": ANY}, types=("FP32", "FP16")),
    _r("TopK", "ops-10.1 TopK '`sorted` must be 1. `K` input must be less than 3840'; chk-10.1 TopK L733-741; imp-10.1 "
               "TopK L5724-5788 (X not UINT8, L5726, two inputs from opset 10, L5762-5764, K a runtime scalar allowed, "
               "L5765-5767, largest read, L5750-5757, two outputs, L5787)", inputs=(2, 2), outputs=2,
       attrs={"axis": ANY, "largest": (0, 1), "sorted": (1,)}, types=NUMBERS),
    _r("MatMul", "ops-10.1 MatMul; imp-10.1 MatMul L3407-3459 (A not INT32/INT64)", inputs=(2, 2)),
    _r("Gemm", "ops-10.1 Gemm; imp-10.1 Gemm L2009-2084", inputs=(2, 3),
       attrs={"alpha": ANY, "beta": ANY, "transA": (0, 1), "transB": (0, 1)}),
    _r("Softmax", "ops-10.1 Softmax; imp-10.1 Softmax L5404-5414; imp-10.13 Softmax", attrs={"axis": ANY}),
    _r("LayerNormalization", "ops-10.1 LayerNormalization 'Only the first output Y is supported'; imp-10.1 "
                             "LayerNormalization L2752-2804 (stash_type read by convertDtype and otherwise ignored, "
                             "L2781-2782); imp-11.0 LayerNormalization (stash_type read, never checked); "
                             "mi-10.1 L222-225 (declared outputs, empty names included, <= returned)",
       inputs=(2, 3), outputs=1, attrs={"axis": ANY, "epsilon": ANY, "stash_type": ANY}),
    _r("Resize", "ops-10.1 Resize; imp-10.1 Resize L4389-4646: modes nearest, linear, cubic (L4400-4411), axes "
                 "attribute (L4414-4422), exclude_outside and cubic_coeff_a (L4500-4509), coordinate modes "
                 "(L4450-4479, others refused), linear on the 3 and cubic on the 2 innermost axes with constant "
                 "scales (L4612-4623, utl-10.1 canUseNDResize L265-279), non-trivial axes with runtime scales "
                 "refused (L4628-4633), antialias and keep_aspect_ratio_policy are not read (left out); imp-11.0 "
                 "Resize (the same checks)", inputs=(1, 4),
       attrs={"antialias": (0,), "axes": ANY, "coordinate_transformation_mode": ("half_pixel", "pytorch_half_pixel",
              "tf_half_pixel_for_nn", "asymmetric", "align_corners"), "cubic_coeff_a": ANY, "exclude_outside": (0, 1),
              "extrapolation_value": ANY, "keep_aspect_ratio_policy": ("stretch",),
              "mode": ("nearest", "linear", "cubic"),
              "nearest_mode": ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")}),
    _r("If", "ops-10.1 If; chk-10.1 If L368-378 (then and else: the same number of outputs); imp-10.1 If L2579",
       outputs=None, attrs={"then_branch": ANY, "else_branch": ANY}, required=("then_branch", "else_branch"),
       types=("BOOL",)),
    # explicit quantization (imp-10.1 QuantDequantLinearHelper L1346-1658)
    _r("QuantizeLinear", "ops-10.1 QuantizeLinear 'y_zero_point must be 0'; imp-10.1 L1346-1658: scale count > 0 "
                         "(L1383-1384), constant scale all positive (L1403-1404), zero point all zeros "
                         "(L1491-1494), per-channel: the scale count equals the axis dimension (L1536-1539), a "
                         "missing axis is read as 0 (L1521-1531, ONNX says 1: left out)", types=FLOATS, **_QDQ),
    _r("DequantizeLinear", "ops-10.1 DequantizeLinear 'x_zero_point must be zero'; imp-10.1 QuantDequantLinearHelper "
                           "L1346-1658 (as QuantizeLinear)", types=("INT8", "FP8", "INT4"), **_QDQ),
    _r("DFT", "ops-10.1 DFT 'N'; chk-10.1 DFT L904-907 (refused by the static checker); rn-11.2 (not read here: "
              "from 11.2 not verified)", inputs=(1, 3), attrs={"inverse": (0, 1), "onesided": (0,)},
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
