"""restormer_deploy.export.onnx_export and restore-export: custom nodes, dynamic shapes, parity with PyTorch in ONNX Runtime,
FP16, bad input."""

import functools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.cli.export import app
from restormer_deploy.export.contract import PARITY_FLOORS
from restormer_deploy.export.onnx_export import ExportError, ExportOptions, export
from restormer_deploy.restormer.converse_arch import Converse2D, ConverseDataStep
from restormer_deploy.restormer.imageio import list_images, read_image
from restormer_deploy.restormer.metrics import psnr_peak1
from restormer_deploy.restormer.presets import PRESETS, load_model
from restormer_deploy.restormer.restormer_arch import Attention

SIZES = {"converse": [(24, 24), (29, 37)], "restormer": [(16, 16), (24, 40)]}


def _session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _expected_calls(model, arrays):
    counts = {"Converse2D": 0, "TransposedAttention": 0}

    def hook(kind):
        def fn(*_):
            counts[kind] += 1
        return fn

    handles = [m.register_forward_hook(hook("Converse2D")) for m in model.modules() if isinstance(m, (Converse2D, ConverseDataStep))]
    handles += [m.register_forward_hook(hook("TransposedAttention")) for m in model.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        model(*arrays)
    for h in handles:
        h.remove()
    return counts


def _inputs(spec, h, w, batch, seed=0):
    g = np.random.default_rng(seed)
    x = g.random((batch, spec.in_channels, h, w), dtype=np.float32)
    if spec.needs_kernel:
        k = g.random((batch, 1, 7, 7)).astype(np.float32)
        return x, k / k.sum(axis=(-1, -2), keepdims=True)
    return (x,)


def _torch(model, arrays):
    with torch.no_grad():
        return model(*[torch.from_numpy(a) for a in arrays]).numpy()


@pytest.fixture(scope="module")
def small(tmp_path_factory, small_checkpoint):
    """``small(preset) -> (path, model, spec)``: the preset's small checkpoint, built once per module."""
    root = tmp_path_factory.mktemp("small")
    return functools.cache(lambda preset: small_checkpoint(root, preset))


@pytest.mark.parametrize("lowering", ["function", "matmul"])
def test_fp32_export_matches_pytorch_at_two_sizes(small, tmp_path, small_preset, lowering):
    ckpt, model, spec = small(small_preset)
    out = tmp_path / "m.onnx"
    result = export(str(ckpt), out, options=ExportOptions(converse_lowering=lowering, verify_size=24))
    onnx_model = onnx.load(out)
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    assert {"architecture", "preset", "task", "scale", "in_channels", "out_channels", "value_range",
            "pad_multiple", "precision", "tool_version", "source_sha256"} <= set(meta)
    assert meta["precision"] == "fp32" and meta["architecture"] == spec.architecture
    family = "restormer" if spec.architecture == "restormer" else "converse"
    session = _session(out)
    for batch, (h, w) in zip((1, 2), SIZES[family]):
        arrays = _inputs(spec, h, w, batch)
        got = session.run(None, dict(zip([i.name for i in session.get_inputs()], arrays)))[0]
        ref = _torch(model, arrays)
        assert got.shape == ref.shape == (batch, spec.out_channels, h * spec.scale, w * spec.scale)
        assert np.abs(got - ref).max() <= 1e-4, (small_preset, lowering, h, w)
    calls = _expected_calls(model, [torch.from_numpy(a) for a in _inputs(spec, 16, 16, 1)])
    ops = [(n.domain, n.op_type) for n in onnx_model.graph.node]
    assert ops.count(("restormer", "TransposedAttention")) == calls["TransposedAttention"]
    if lowering == "function":
        assert ops.count(("restormer", "Converse2D")) == calls["Converse2D"]
        for node in onnx_model.graph.node:
            if node.op_type == "Converse2D":
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                assert attrs["plugin_namespace"] == b"restormer" and attrs["plugin_version"] == b"1"
            if node.op_type == "TransposedAttention":
                assert {a.name for a in node.attribute} == {"heads"}
    else:
        assert ("restormer", "Converse2D") not in ops and all(op != "DFT" for _, op in ops)
        assert all(f.name != "Converse2D" for f in onnx_model.functions)
    assert result.max_abs_err <= 1e-4


def test_inline_has_no_custom_nodes(small, tmp_path):
    ckpt, model, spec = small("conversenet-deblur")
    out = tmp_path / "inline.onnx"
    export(str(ckpt), out, options=ExportOptions(inline=True, verify_size=24))
    m = onnx.load(out)
    assert not m.functions and all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    arrays = _inputs(spec, 20, 28, 1)
    got = _session(out).run(None, {"input": arrays[0]})[0]
    assert np.abs(got - _torch(model, arrays)).max() <= 1e-4


def test_fp16_graph_is_fp16_with_fp32_io(small, tmp_path):
    ckpt, model, spec = small("restormer-denoise-color")
    out = tmp_path / "fp16.onnx"
    export(str(ckpt), out, options=ExportOptions(precision="fp16", verify_size=24))
    m = onnx.load(out)
    types = {i.data_type for i in m.graph.initializer if i.data_type in (1, 10)}
    assert onnx.TensorProto.FLOAT16 in types
    convs = [i for i in m.graph.initializer if i.name.endswith(".weight") and len(i.dims) == 4]
    assert convs and all(i.data_type == onnx.TensorProto.FLOAT16 for i in convs)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    export(str(ckpt), tmp_path / "io16.onnx", options=ExportOptions(precision="fp16", io_fp16=True, verify_size=24))
    assert onnx.load(tmp_path / "io16.onnx").graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


# Real images and official weights: FP16 >= 45 dB against PyTorch FP32.
REAL = {
    "converse-dncnn": ("denoise", "Set12"),
    "converse-srresnet": ("sr", "Set5"),
    "conversenet-deblur": ("denoise", "CBSD68"),
    "converse-usrnet": ("denoise", "CBSD68"),
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(REAL))
def test_fp16_official_weights_on_real_images(tmp_path, preset, need_shared):
    spec = PRESETS[preset]
    need_shared(spec.weights)
    images = list_images(need_shared("data", *REAL[preset]))[:2]
    out = tmp_path / "fp16.onnx"
    export(preset, out, options=ExportOptions(precision="fp16", converse_lowering="matmul", verify_size=32))
    model, _ = load_model(preset)
    session = _session(out)
    for path in images:
        img = read_image(path, channels=spec.in_channels)[:48, :48]
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        x = x + np.random.RandomState(0).normal(0, 0.05, x.shape).astype(np.float32)
        arrays = (x, np.full((1, 1, 7, 7), 1 / 49, np.float32)) if spec.needs_kernel else (x,)
        got = session.run(None, dict(zip([i.name for i in session.get_inputs()], arrays)))[0]
        assert psnr_peak1(got, _torch(model, arrays)) >= 45.0, path.name


def test_failed_self_check_writes_nothing(small, tmp_path, monkeypatch):
    ckpt, _, _ = small("converse-dncnn")
    monkeypatch.setitem(PARITY_FLOORS, "fp32", 1e9)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="self-check failed"):
        export(str(ckpt), out, options=ExportOptions(verify_size=24))
    assert list(tmp_path.iterdir()) == []


runner = CliRunner()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["no-such-model"], "unknown model"),
        (["{ckpt}", "--opset", "18"], "must be 20"),
        (["{ckpt}", "--precision", "int4"], "--precision"),
        (["converse-dncnn", "--weights", "{ckpt}"], "do not fit"),
    ],
)
def test_cli_bad_input_exit_2_nothing_written(small, tmp_path, args, needle):
    ckpt, _, _ = small("converse-dncnn")
    out = tmp_path / "m.onnx"
    args = [a.replace("{ckpt}", str(ckpt)) for a in args]
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_cli_missing_folder(small, tmp_path):
    ckpt, _, _ = small("converse-dncnn")
    r = runner.invoke(app, [str(ckpt), "--out", str(tmp_path / "no" / "m.onnx")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_cli_writes_json(small, tmp_path):
    import json

    ckpt, _, _ = small("converse-dncnn")
    r = runner.invoke(app, [str(ckpt), "--out", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert {"path", "precision", "max_abs_err", "psnr_vs_torch"} <= set(data)
