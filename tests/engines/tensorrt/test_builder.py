"""TensorRT engine path without TensorRT: ONNX preprocessing per version, the op-table lint on exports
of every preset family (both Converse2D lowerings, FP32 and FP16), profiles, the sidecar and the
runtime checks. Tests that need TensorRT itself skip with the reason."""

import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import onnx.inliner
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from restormer_deploy.cli.export import app
from restormer_deploy.engines.tensorrt import core
from restormer_deploy.engines.tensorrt.core import RuntimeMismatch, TrtError
from restormer_deploy.engines.tensorrt.lint import VERSIONS, lint, load_table, table_version
from restormer_deploy.export import contract
from restormer_deploy.export.contract import ContractError
from restormer_deploy.export.functions import DOMAIN, ONNX_OPSET, attach_functions
from restormer_deploy.export.stages import ExportOptions, finish, prepare, set_metadata, trace
from restormer_deploy.restormer.fileio import sha256_file
from restormer_deploy.restormer.presets import PRESETS, ModelSpec, build

FLOAT = TensorProto.FLOAT
# Two presets keep the default run short (Converse2D with a kernel input; Restormer attention);
# every preset is linted by tests/engines/tensorrt/test_lint_exports.py (-m slow, run by CI).
FAST = ("converse-usrnet", "restormer-denoise-color")


def _trt_file(traced: onnx.ModelProto, spec: ModelSpec, precision: str, lowering: str) -> onnx.ModelProto:
    """The TensorRT form of a copy of ``traced``."""
    copy = onnx.ModelProto.FromString(traced.SerializeToString())
    return finish(prepare(copy, target="trt"), spec, ExportOptions(precision=precision, converse_lowering=lowering,
                                                                    target="trt"))


def _custom_model(plugin_attrs=True):
    """x -> TransposedAttention(x, x, x, t) -> Converse2D(., kernel, lam), with both local functions."""
    conv_attrs = dict(scale=1, padding=2, padding_mode="circular")
    if plugin_attrs:
        conv_attrs.update(plugin_namespace="restormer", plugin_version="1")
    nodes = [
        helper.make_node("TransposedAttention", ["x", "x", "x", "t"], ["a"], "attn", domain=DOMAIN, heads=2),
        helper.make_node("Converse2D", ["a", "k", "lam"], ["y"], "conv", domain=DOMAIN, **conv_attrs),
    ]
    inits = [
        helper.make_tensor("t", FLOAT, [2, 1, 1], [1.0, 1.0]),
        helper.make_tensor("k", FLOAT, [1, 4, 3, 3], [1 / 9] * 36),
        helper.make_tensor("lam", FLOAT, [1, 4, 1, 1], [0.01] * 4),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, ["n", 4, "h", "w"])],
                              [helper.make_tensor_value_info("y", FLOAT, ["n", 4, "h", "w"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 10
    model = attach_functions(model)
    spec = PRESETS["converse-dncnn"]
    set_metadata(model, ModelSpec(**{**spec.to_json(), "in_channels": 4}), "fp32", "ab" * 32)
    return model


def _ops(model):
    return [(n.domain, n.op_type) for n in model.graph.node]


# ------------------------------------------------------------------ versions and preprocessing


def test_versions():
    assert contract.parse_version("10.3.0.30") == (10, 3, 0, 30) and contract.parse_version("11") == (11,)
    assert not core.plugin_priority("10.6.0") and core.plugin_priority("10.7") and core.plugin_priority("11.1.0")
    assert [table_version(v) for v in ("10.3", "10.8.0.43", "10.13.2", "10.16", "11.1.0.7", "11.5")] == \
        ["10.3", "10.7", "10.7", "10.15", "11.0", "11.2"]
    with pytest.raises(TrtError, match="newer than the newest release"):
        table_version("12")
    assert contract.same_engine_version("10.3.0.30", "10.3.0.30") and not contract.same_engine_version("10.3.0.30", "10.3.0.26")
    with pytest.raises(TrtError, match="10.3 or newer"):
        table_version("8.6")
    with pytest.raises(ContractError, match="not a TensorRT version"):
        contract.parse_version("latest")


@pytest.mark.parametrize("version", ["10.3.0", "10.5", "10.6.1"])
def test_prepare_before_10_7_strips_plugin_function_and_inlines_attention(version):
    model = _custom_model()
    prepared, report = core.prepare_onnx(model, version)
    assert (DOMAIN, "TransposedAttention") not in _ops(prepared)  # expanded into standard ops
    assert (DOMAIN, "Converse2D") in _ops(prepared) and report.plugin_nodes == 1
    assert {f.name for f in prepared.functions} == set()  # Converse2D's function removed: the parser falls back to the plugin
    assert report.stripped == ["restormer::Converse2D"] and report.inlined == ["restormer::TransposedAttention"]
    assert {f.name for f in model.functions} == {"TransposedAttention", "Converse2D"}  # input untouched
    assert any(p.key == "precision" for p in prepared.metadata_props)
    onnx.checker.check_model(prepared)


@pytest.mark.parametrize("version", ["10.7", "10.13.2", "10.15", "11.1"])
def test_prepare_from_10_7_keeps_plugin_function(version):
    prepared, report = core.prepare_onnx(_custom_model(), version)
    assert (DOMAIN, "TransposedAttention") not in _ops(prepared)
    assert [f.name for f in prepared.functions] == ["Converse2D"] and not report.stripped


def test_prepare_refuses_converse_without_plugin_attributes():
    with pytest.raises(TrtError, match="lacks the plugin attributes"):
        core.prepare_onnx(_custom_model(plugin_attrs=False), "10.3")
    issues = lint(_custom_model(plugin_attrs=False), "10.3")
    assert len(issues) == 1 and "plugin attributes" in issues[0].message


# ------------------------------------------------------------------ lint


def test_table_covers_our_ops_and_marks_dft_unsupported():
    table = load_table()
    assert "onnx-tensorrt" in table["sources"]["base"] and "CHANGELOG" in table["sources"]["deltas"]
    for v in table["versions"]:
        ops = table["versions"][v]
        for op in ("QuantizeLinear", "DequantizeLinear", "Conv", "MatMul", "LayerNormalization", "Softmax", "If"):
            assert ops[op]["supported"], (v, op)
        assert ops["DFT"]["supported"] == (v == "11.2")
        assert "INT8" in ops["DequantizeLinear"]["types"]
    assert not table["versions"]["10.3"]["STFT"]["supported"] and table["versions"]["10.5"]["STFT"]["supported"]
    assert not table["versions"]["10.7"].get("Attention", {}).get("supported") and table["versions"]["10.14"]["Attention"]["supported"]


def test_lint_flags_dft_unknown_op_string_constant_and_nonzero_zero_point():
    nodes = [
        helper.make_node("DFT", ["x"], ["d"], "dft0"),
        helper.make_node("Foo", ["d"], ["e"], "foo0", domain="acme"),
        helper.make_node("Constant", [], ["s"], "str0", value_string="circular"),
        helper.make_node("QuantizeLinear", ["e", "sc", "zp"], ["q"], "q0"),
        helper.make_node("DequantizeLinear", ["q", "sc"], ["y"], "dq0"),
    ]
    inits = [helper.make_tensor("sc", FLOAT, [], [0.1]), helper.make_tensor("zp", TensorProto.INT8, [], [3])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [1, 8, 1])],
                              [helper.make_tensor_value_info("y", FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("acme", 1)])
    for version in VERSIONS:
        issues: dict = {}
        for i in lint(model, version):
            issues[i.node] = issues.get(i.node, "") + " " + i.message
        assert set(issues) == {"dft0", "foo0", "str0", "q0"}, (version, issues)  # DFT on 11.2: not verified
        assert version == "11.2" or "no importer before TensorRT 11.2" in issues["dft0"]
        assert "no allow-list rule" in issues["foo0"]
        assert "value_string" in issues["str0"] and "zero point" in issues["q0"]


def test_lint_10_3_needs_constant_pad_axes():
    nodes = [helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], "pad0", mode="reflect")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [1, 1, 4, 4]),
                                           helper.make_tensor_value_info("axes", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", FLOAT, None)],
                              [helper.make_tensor("pads", TensorProto.INT64, [4], [1, 1, 1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    assert [i.node for i in lint(model, "10.3")] == ["pad0"] and lint(model, "10.7") == lint(model, "10.13") == []


@pytest.fixture(scope="module")
def traced(small_spec):
    cache = {}

    def get(preset):
        if preset not in cache:
            spec = small_spec(preset)
            torch.manual_seed(0)
            cache[preset] = (trace(build(spec).eval(), spec), spec)
        return cache[preset]

    return get


def _check_exports_lint_clean(traced, preset):
    model, spec = traced(preset)
    for precision in ("fp32", "fp16"):
        for lowering in ("function", "matmul"):
            m = _trt_file(model, spec, precision, lowering)
            for version in VERSIONS:
                assert lint(m, version) == [], (preset, precision, lowering, version)
            if lowering == "matmul":
                assert all(op != "DFT" and t != "Converse2D" for _, t in _ops(m) for op in [t])
            elif spec.architecture != "restormer":
                # the function lowering inlined for a runtime without the plugin: DFT, which TensorRT lacks
                flat = onnx.inliner.inline_local_functions(m)
                issues = lint(flat, "10.13")
                assert issues and any(i.op == "DFT" for i in issues)


@pytest.mark.parametrize("preset", FAST)
def test_exports_lint_clean(traced, preset):
    _check_exports_lint_clean(traced, preset)


# every preset, with the dft lowering and the INT8 file too: tests/engines/tensorrt/test_lint_exports.py


def test_cli_check_trt(traced, tmp_path):
    model, spec = traced("converse-usrnet")
    good = tmp_path / "usrnet.onnx"
    onnx.save(_trt_file(model, spec, "fp16", "function"), good)
    runner = CliRunner()
    res = runner.invoke(app, [str(good), "--check-trt", "10.3", "--json", str(tmp_path / "lint.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "lint.json").read_text())
    assert report["check_trt"]["passed"] and report["check_trt"]["table"] == "10.3" and report["check_trt"]["line"] == "10.3"
    bad = tmp_path / "inlined.onnx"
    onnx.save(onnx.inliner.inline_local_functions(onnx.load(good)), bad)
    res = runner.invoke(app, [str(bad), "--check-trt", "11"])
    assert res.exit_code == 1 and "[DFT]" in res.output
    res = runner.invoke(app, [str(good), "--check-trt", "9.0"])
    assert res.exit_code == 2 and "10.3 or newer" in res.output
    res = runner.invoke(app, [str(good), "--check-trt", "12"])
    assert res.exit_code == 2 and "newer than the newest release" in res.output
    res = runner.invoke(app, [str(good), "--format", "trt", "--out", str(tmp_path / "m.onnx"), "--tile", "64"])
    assert res.exit_code == 2 and ".engine" in res.output
    res = runner.invoke(app, [str(good), "--format", "trt", "--out", str(tmp_path / "m.engine"), "--tile", "64",
                              "--plugin-lib", str(tmp_path / "missing.so")])
    assert res.exit_code == 2 and "missing.so not found" in res.output and not (tmp_path / "m.engine").exists()
    res = runner.invoke(app, [str(tmp_path / "absent.onnx"), "--check-trt", "10.3"])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["--help"], terminal_width=200)
    assert res.exit_code == 0 and "--check-trt" in res.output and "--plugin-lib" in res.output


# ------------------------------------------------------------------ profiles


INPUTS = [core.InputInfo("input", (None, 3, None, None))]
META = {"in_channels": "3", "pad_multiple": "8"}


def test_profile_from_shapes_and_tile():
    p = core.make_profile(INPUTS, META, "1x3x64x64", "1x3x256x256", "4x3x512x512")
    assert p == {"input": {"min": [1, 3, 64, 64], "opt": [1, 3, 256, 256], "max": [4, 3, 512, 512]}}
    p = core.make_profile(INPUTS, META, tile=256)
    assert p["input"] == {"min": [1, 3, 16, 16], "opt": [1, 3, 256, 256], "max": [1, 3, 256, 256]}
    kernel = [*INPUTS, core.InputInfo("kernel", (None, 1, 7, 7))]
    p = core.make_profile(kernel, META, "1x3x64x64", "2x3x64x64", "2x3x128x128")
    assert p["kernel"] == {"min": [1, 1, 7, 7], "opt": [2, 1, 7, 7], "max": [2, 1, 7, 7]}


@pytest.mark.parametrize("args,match", [
    (("1x3x256x256", "1x3x128x128", "1x3x512x512"), "min <= opt <= max"),
    (("1x3x64x64", "1x3x64x64", "1x1x64x64"), "takes 3 channels"),
    (("1x3x60x64", "1x3x64x64", "1x3x64x64"), "multiples of 8"),
    (("1x3x64", "1x3x64x64", "1x3x64x64"), "NxCxHxW"),
    (("1x3x64x64", None, None), "go together"),
])
def test_bad_profiles(args, match):
    with pytest.raises(TrtError, match=match):
        core.make_profile(INPUTS, META, *args)


def test_bad_tile_dla_and_shape_outside_profile():
    with pytest.raises(TrtError, match="multiple of 8"):
        core.make_profile(INPUTS, META, tile=100)
    with pytest.raises(TrtError, match="not both"):
        core.make_profile(INPUTS, META, "1x3x64x64", "1x3x64x64", "1x3x64x64", tile=64)
    p = core.make_profile(INPUTS, META, tile=64)
    with pytest.raises(TrtError, match="DLA|--dla-core needs fixed shapes"):
        core.check_fixed_profile(p)
    core.check_fixed_profile(core.make_profile(INPUTS, META, "1x3x64x64", "1x3x64x64", "1x3x64x64"))
    core.check_shape_in_profile("input", (1, 3, 32, 48), p)
    with pytest.raises(TrtError, match="outside the engine's profile"):
        core.check_shape_in_profile("input", (1, 3, 64, 72), p)


# ------------------------------------------------------------------ sidecar and runtime checks


def _sidecar(plugin_sha=""):
    meta = core.onnx_metadata(_custom_model())
    profile = core.make_profile(INPUTS, META, tile=64)
    return core.build_sidecar(meta, "10.13.2.6", "NVIDIA GeForce RTX 4090", "8.9", profile, plugin_sha, "cd" * 32)


def test_sidecar_keys_round_trip(tmp_path):
    data = _sidecar()
    assert set(contract.METADATA_KEYS) | set(contract.ENGINE_KEYS) <= set(data)
    assert data["profile"]["input"]["opt"] == [1, 3, 64, 64]
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    assert core.write_sidecar(engine, data) == tmp_path / "m.engine.json"
    assert contract.read_sidecar(engine) == json.loads(json.dumps(data))
    with pytest.raises(TrtError, match="lacks metadata"):
        core.build_sidecar({"preset": "x"}, "10.3", "gpu", "8.7", {})
    with pytest.raises(ContractError, match="no sidecar"):
        contract.read_sidecar(tmp_path / "other.engine")


def test_runtime_checks(tmp_path):
    lib = tmp_path / "libconverse2d_plugin.so"
    lib.write_bytes(b"plugin v1")
    data = _sidecar(sha256_file(lib))
    assert core.check_runtime(data, "10.13.2.6", "NVIDIA GeForce RTX 4090", "8.9", [lib]) == []
    with pytest.raises(RuntimeMismatch, match="built with TensorRT 10.13.2.6, this machine has TensorRT 10.3.0.30"):
        core.check_runtime(data, "10.3.0.30", "NVIDIA GeForce RTX 4090", "8.9", [lib])
    with pytest.raises(RuntimeMismatch, match=r"compute capability 8.9\), this GPU is Orin \(compute capability 8.7"):
        core.check_runtime(data, "10.13.2.6", "Orin", "8.7", [lib])
    warnings = core.check_runtime(data, "10.13.2.6", "NVIDIA GeForce RTX 4080", "8.9", [lib])
    assert len(warnings) == 1 and "tuned for the other GPU" in warnings[0]
    with pytest.raises(RuntimeMismatch, match="pass its library with --plugin-lib"):
        core.check_runtime(data, "10.13.2.6", "NVIDIA GeForce RTX 4090", "8.9", [])
    with pytest.raises(RuntimeMismatch, match="not found"):
        core.check_runtime(data, "10.13.2.6", "NVIDIA GeForce RTX 4090", "8.9", [tmp_path / "missing.so"])
    lib.write_bytes(b"plugin v2")
    with pytest.raises(RuntimeMismatch, match="differs from the one the engine was built with"):
        core.check_runtime(data, "10.13.2.6", "NVIDIA GeForce RTX 4090", "8.9", [lib])
    assert core.check_runtime(_sidecar(), "10.13.2.6", "NVIDIA GeForce RTX 4090", "8.9") == []  # matmul lowering: no plugin


# ------------------------------------------------------------------ with TensorRT


def _tensorrt_or_skip():
    from restormer_deploy.engines.tensorrt.builder import gpu_info, import_tensorrt

    try:
        import_tensorrt()
        gpu_info()
    except TrtError as exc:
        pytest.skip(f"needs TensorRT and an NVIDIA GPU: {exc}")


def test_builder_without_tensorrt_is_one_clear_error(tmp_path):
    from restormer_deploy.engines.tensorrt.builder import build_engine, import_tensorrt

    try:
        import_tensorrt()
        pytest.skip("TensorRT is installed here: the missing-TensorRT path is not reachable")
    except TrtError:
        pass
    path = tmp_path / "m.onnx"
    onnx.save(_custom_model(), path)
    with pytest.raises(TrtError, match="TensorRT is not usable here"):
        build_engine(path, tmp_path / "m.engine", tile=64)
    with pytest.raises(TrtError, match="plugin library .* not found"):
        build_engine(path, tmp_path / "m.engine", tile=64, plugin_libs=[tmp_path / "nope.so"])


def test_build_and_run_matmul_lowering(tmp_path, small_checkpoint):
    _tensorrt_or_skip()

    from restormer_deploy.engines.tensorrt.builder import build_engine
    from restormer_deploy.engines.tensorrt.verify import verify_engine
    from restormer_deploy.export.onnx_export import export

    ckpt, _, _ = small_checkpoint(tmp_path, "converse-usrnet")
    path = tmp_path / "usrnet.onnx"
    export(str(ckpt), path, options=ExportOptions(converse_lowering="matmul", verify_size=24))
    built = build_engine(path, tmp_path / "usrnet.engine", tile=64, timing_cache=tmp_path / "cache.bin")
    sidecar = json.loads(Path(built.sidecar).read_text())
    assert sidecar["plugin_sha256"] == "" and sidecar["onnx_sha256"] == sha256_file(path)
    assert (tmp_path / "cache.bin").is_file()
    result = verify_engine(built.engine, str(ckpt), iterations=2)
    assert result.passed, result


def test_build_engine_wiring_with_fake_tensorrt(tmp_path, monkeypatch):
    """build_engine up to the TensorRT build, with TensorRT and the GPU faked: arguments of the polygraphy
    loaders, the per-version preprocessing handed to the parser, plugin loading, the sidecar."""
    import types

    import polygraphy.backend.trt as ptrt

    from restormer_deploy.engines.tensorrt import builder

    loaded = []
    fake = types.SimpleNamespace(
        __version__="10.13.2.6",
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="ws"),
        get_plugin_registry=lambda: types.SimpleNamespace(load_library=lambda p: loaded.append(p) or object()),
    )
    monkeypatch.setattr(builder, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(builder, "gpu_info", lambda device=0: ("Fake GPU", "8.9"))
    seen = {}

    def fake_build(network, config, save_timing_cache=None):
        seen.update(network=network, config=config, cache=save_timing_cache)
        return lambda: b"plan"

    monkeypatch.setattr(ptrt, "EngineBytesFromNetwork", fake_build)
    path = tmp_path / "m.onnx"
    onnx.save(_custom_model(), path)
    lib = tmp_path / "libconverse2d_plugin.so"
    lib.write_bytes(b"plugin")
    with pytest.raises(TrtError, match="--plugin-lib"):
        builder.build_engine(path, tmp_path / "m.engine", tile=64, log=lambda m: None)
    result = builder.build_engine(path, tmp_path / "m.engine", min_shape="1x4x16x16", opt_shape="1x4x64x64",
                                  max_shape="2x4x128x128", plugin_libs=[lib], timing_cache=tmp_path / "t.cache",
                                  workspace_mb=256, log=lambda m: None)
    assert (tmp_path / "m.engine").read_bytes() == b"plan" and loaded == [str(lib.resolve())]
    parsed = onnx.ModelProto.FromString(seen["network"]._model_bytes)
    # 10.13 (>= 10.7): TransposedAttention inlined, Converse2D's function kept (the registered plugin takes the node)
    assert (DOMAIN, "TransposedAttention") not in _ops(parsed) and [f.name for f in parsed.functions] == ["Converse2D"]
    assert seen["network"].strongly_typed and seen["cache"] == str(tmp_path / "t.cache")
    assert list(seen["config"].profiles[0]["x"].max) == [2, 4, 128, 128]
    sidecar = json.loads(Path(result.sidecar).read_text())
    assert sidecar["tensorrt_version"] == "10.13.2.6" and sidecar["gpu"] == "Fake GPU"
    assert sidecar["plugin_sha256"] == sha256_file(lib) and sidecar["onnx_sha256"] == sha256_file(path)
    assert sidecar["profile"] == {"x": {"min": [1, 4, 16, 16], "opt": [1, 4, 64, 64], "max": [2, 4, 128, 128]}}
    with pytest.raises(TrtError, match="fixed shapes"):
        builder.build_engine(path, tmp_path / "d.engine", tile=64, plugin_libs=[lib], dla_core=0, log=lambda m: None)


def test_load_engine_checks_before_deserialising(tmp_path, monkeypatch):
    import types

    from restormer_deploy.engines.tensorrt import builder

    def no_runtime(*_):
        raise AssertionError("deserialised despite a mismatch")

    fake = types.SimpleNamespace(__version__="10.3.0.30", Runtime=no_runtime, Logger=no_runtime)
    monkeypatch.setattr(builder, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(builder, "gpu_info", lambda device=0: ("NVIDIA GeForce RTX 4090", "8.9"))
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    core.write_sidecar(engine, _sidecar())  # built with 10.13.2.6
    with pytest.raises(RuntimeMismatch, match="TensorRT 10.13.2.6, this machine has TensorRT 10.3.0.30"):
        builder.load_engine(engine)
    with pytest.raises(ContractError, match="no sidecar"):
        (tmp_path / "m.engine.json").unlink()
        builder.load_engine(engine)


# ------------------------------------------------------------------ python -m restormer_deploy.cli.verify_trt (scripts/verify_gpu.sh)


def test_verify_reports_a_failing_step_apart_from_a_parity_verdict(monkeypatch, capsys):
    from restormer_deploy.cli import verify_trt as verify

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nstack...")

    monkeypatch.setattr(verify, "verify_engine", broken)
    assert verify.main(["m.engine", "--reference", "default"]) == verify.EXIT_RUN_FAILED == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: running m.engine failed: RuntimeError: CUDA error: an illegal memory access was encountered"]

    def bad_input(*args, **kwargs):
        raise TrtError("engine m.engine not found")

    monkeypatch.setattr(verify, "verify_engine", bad_input)
    assert verify.main(["m.engine", "--reference", "default"]) == 2
    monkeypatch.setattr(verify, "verify_engine", lambda *a, **k: SimpleNamespace(
        passed=False, to_json=lambda: {"passed": False, "psnr_vs_torch": 20.0}))
    assert verify.main(["m.engine", "--reference", "default"]) == 1


def test_lint_version_for_the_installed_tensorrt():
    from restormer_deploy.engines.tensorrt import allowlist
    from restormer_deploy.engines.tensorrt.lint import version_for

    assert version_for("10.3.0.30") == "10.3.0.30"
    newest = ".".join(map(str, allowlist.NEWEST))
    assert version_for("99.1") == newest
    with pytest.raises(TrtError, match="10.3 or newer"):
        version_for("8.6.2")


def test_lint_trt_command(capsys):
    from restormer_deploy.cli.lint_trt import main

    assert main(["--version-for", "10.3.0.30"]) == 0 and capsys.readouterr().out.strip() == "10.3.0.30"
    assert main(["--version-for", "8.6.2"]) == 2 and "10.3 or newer" in capsys.readouterr().err
    assert main(["--version-for", "latest"]) == 2 and "not a TensorRT version" in capsys.readouterr().err
    assert main([]) == 2 and "usage: python -m restormer_deploy.cli.lint_trt" in capsys.readouterr().err


def test_cli_target_and_save_prepared(traced, tmp_path):
    """--target: the file --check-trt lints is the TensorRT form; --save-prepared writes what the parser gets."""
    model, spec = traced("converse-usrnet")
    good = tmp_path / "usrnet.onnx"
    onnx.save(_trt_file(model, spec, "fp16", "function"), good)
    runner = CliRunner()
    prepared = tmp_path / "usrnet_10_3.onnx"
    res = runner.invoke(app, [str(good), "--check-trt", "10.3", "--save-prepared", str(prepared)])
    assert res.exit_code == 0, res.output
    p = onnx.load(prepared)
    assert not p.functions and any(n.op_type == "Converse2D" for n in p.graph.node)  # < 10.7: function removed
    assert not any(n.op_type == "TransposedAttention" for n in p.graph.node)
    res = runner.invoke(app, [str(good), "--check-trt", "10.13", "--save-prepared", str(tmp_path / "p13.onnx")])
    assert res.exit_code == 0 and [f.name for f in onnx.load(tmp_path / "p13.onnx").functions] == ["Converse2D"]
    res = runner.invoke(app, ["default", "--out", str(tmp_path / "x.onnx"), "--save-prepared", str(tmp_path / "p.onnx")])
    assert res.exit_code == 2 and "--save-prepared needs --check-trt" in res.output
    res = runner.invoke(app, ["default", "--out", str(tmp_path / "x.onnx"), "--check-trt", "10.3", "--target", "ort"])
    assert res.exit_code == 2 and "--target ort" in res.output and not (tmp_path / "x.onnx").exists()
    res = runner.invoke(app, ["default", "--out", str(tmp_path / "x.onnx"), "--target", "tensorrt"])
    assert res.exit_code == 2 and "--target must be" in res.output


def test_resolve_target_and_auto_lowering():
    from restormer_deploy.cli.export import resolve_target
    from restormer_deploy.export.onnx_export import resolve_lowering

    assert resolve_target("auto", "onnx", None, "tensorrt") == "ort"
    assert resolve_target("auto", "onnx", "10.3", "tensorrt") == "trt"
    assert resolve_target("auto", "trt", None, "tensorrt") == "trt"
    assert resolve_target("auto", "triton-repo", None, "tensorrt") == "trt"
    assert resolve_target("auto", "triton-repo", None, "onnxruntime") == "ort"
    assert resolve_target("trt", "onnx", None, "tensorrt") == "trt"
    spec = PRESETS["converse-dncnn"]
    assert resolve_lowering("auto", spec) == "matmul"
    assert resolve_lowering("auto", spec, target="trt", tensorrt=(11, 1)) == "matmul"
    assert resolve_lowering("auto", spec, target="trt", tensorrt=(11, 2, 0)) == "dft"
    assert resolve_lowering("auto", spec, target="trt", tensorrt=None) == "matmul"
    assert resolve_lowering("dft", spec) == "dft"
