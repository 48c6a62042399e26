"""Every preset's TensorRT export lints clean on every TensorRT line (issue 15).

Each preset keeps its official configuration (widths, heads, LayerNorm type, channels, scale,
padding modes, dual-pixel input) with random weights; only the repeat counts (Restormer blocks per
level, Converse blocks and iterations) are cut to one, which leaves the set of node forms the
TensorRT parser sees unchanged and keeps the traces short. ``-m paper_full`` runs the full depths.

For each: fp32 and fp16, Converse2D as the plugin node (``function``), as MatMuls and as DFT nodes,
written for TensorRT (``target="trt"``); every node parses on 10.3, 10.7, 10.13, 11.0 and 11.2 (the DFT
lowering: refused before 11.2, not verified on 11.2, whose parser source is not readable here), and no LayerNormalization with more than one output. The default
model's INT8 (Q/DQ, FP16 fallback) file is linted too.
"""

from __future__ import annotations

import onnx
import pytest
import torch

from restormer_deploy.engines.tensorrt.lint import lint_versions
from restormer_deploy.export.stages import ExportOptions, finish, prepare, trace
from restormer_deploy.restormer.presets import ASSETS, PRESETS, ModelSpec, build

SHALLOW = {"restormer": {"num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
           "converse-dncnn": {"num_blocks": 1}, "converse-srresnet": {"num_blocks": 1},
           "conversenet": {"num_iterations": 1, "num_blocks": 1}, "converse-usrnet": {"num_iterations": 1, "num_blocks": 1}}
BEFORE_DFT = ("10.3", "10.7", "10.13", "11.0")


def _spec(preset: str, full: bool) -> ModelSpec:
    base = PRESETS[preset]
    config = base.config if full else {**base.config, **SHALLOW[base.architecture]}
    return ModelSpec(**{**base.to_json(), "weights": None, "config": config})


_TRACES: dict = {}


def _traced(preset: str, full: bool):
    spec = _spec(preset, full)
    key = (spec.architecture, repr(sorted(spec.config.items())), spec.in_channels, full)
    if key not in _TRACES:  # presets with the same architecture and configuration trace alike
        torch.manual_seed(0)
        _TRACES[key] = trace(build(spec).eval(), spec)
    return onnx.ModelProto.FromString(_TRACES[key].SerializeToString()), spec


def _trt_file(traced: onnx.ModelProto, spec: ModelSpec, precision: str, lowering: str) -> onnx.ModelProto:
    return finish(prepare(traced, target="trt"), spec,
                  ExportOptions(precision=precision, converse_lowering=lowering, target="trt"))


def _multi_output_layer_norms(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "LayerNormalization" and len(n.output) > 1]


def _check(preset: str, full: bool = False) -> None:
    traced, spec = _traced(preset, full)
    lowerings = ("function",) if spec.architecture == "restormer" else ("function", "matmul", "dft")
    for precision in ("fp32", "fp16"):
        for lowering in lowerings:
            model = _trt_file(onnx.ModelProto.FromString(traced.SerializeToString()), spec, precision, lowering)
            where = (preset, precision, lowering)
            assert not _multi_output_layer_norms(model), where
            found = lint_versions(model, (*BEFORE_DFT, "11.2"))
            clean = () if lowering == "dft" else (*BEFORE_DFT, "11.2")  # DFT on 11.2: not verified (rn-11.2 unread)
            for version in clean:
                assert found[version] == [], (*where, version, found[version][:3])
            if lowering == "dft":
                assert all(found[v] for v in BEFORE_DFT), where
                # 11.2's DFT importer is not readable here: not verified, never refused
                assert found["11.2"] and not any(i.refused for i in found["11.2"]), (*where, found["11.2"][:3])


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_exports_lint_clean(preset):
    _check(preset)


@pytest.mark.paper_full
@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_exports_lint_clean_full_depth(preset):
    _check(preset, full=True)


def test_onnx_runtime_file_is_refused_for_tensorrt():
    """The ONNX Runtime form of a BiasFree Restormer (fused LayerNormalization with InvStdDev) is what
    the parser refuses: the lint must see it, and the TensorRT form must not have it."""
    traced, spec = _traced("default", False)
    ort_file = finish(prepare(traced, target="ort"), spec, ExportOptions(precision="fp16", target="ort"))
    assert _multi_output_layer_norms(ort_file)
    for version, issues in lint_versions(ort_file, (*BEFORE_DFT, "11.2")).items():
        assert issues and all(i.op == "LayerNormalization" for i in issues), version


@pytest.mark.slow
def test_default_int8_tensorrt_file_lints_clean(tmp_path, int8_file):
    from restormer_deploy.calibration.int8 import Int8Options
    from restormer_deploy.restormer.presets import load_model

    net, spec = load_model("default")  # the shipped weights
    opts = Int8Options(calib_dir=ASSETS / "samples", calib_count=2, calib_size=64, search_size=64, sensitivity=False,
                       fallback="fp16", mac_size=64)
    model, _ = int8_file(net, spec, opts, target="trt")
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert not _multi_output_layer_norms(model)
    for version, issues in lint_versions(model, (*BEFORE_DFT, "11.2")).items():
        assert issues == [], (version, issues[:3])
