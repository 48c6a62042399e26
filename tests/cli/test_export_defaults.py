"""restore-export's defaults and words (issue 19): the INT8 fallback and the Converse2D lowering follow
the target, exports are quiet, the tables say only what applies, bad versions and a missing --out are
one clear error, and the Triton backend follows what this machine can build."""

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from rich.console import Console
from typer.testing import CliRunner

import restormer_deploy.cli.export as cli_export
from restormer_deploy.cli.export import app
from restormer_deploy.export.ort_session import cpu_session
from restormer_deploy.export.stages import quiet_exporter

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
# What the issue measured: an INT8 file with FP16 fallback runs 4.4x slower than FP32 on ONNX Runtime's
# CPU, with FP32 fallback 1.34x faster; TensorRT wants the FP16 one.
BEST_FALLBACK = {"ort": "fp32", "trt": "fp16"}
KNOWN = "10.3-10.16, 11.0-11.5"


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def converse_export(art, tmp_path_factory):
    """The small Converse-DnCNN exported with every default, by the console command in its own process
    (so that once-per-process notices of third-party libraries show if they are not silenced)."""
    root = tmp_path_factory.mktemp("defaults")
    out, report = root / "m.onnx", root / "m.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "restormer_deploy.cli.export", str(art["ckpt"]), "--out", str(out),
                           "--json", str(report)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"proc": proc, "onnx": out, "json": json.loads(report.read_text())}


# ----------------------------------------------------------------------------- item 3: INT8 fallback


@pytest.mark.parametrize("args, target, notice", [
    ([], "ort", True),
    (["--target", "trt", "--trt-version", "10.13"], "trt", True),
    (["--fallback", "fp16"], None, False),  # an explicit --fallback wins, and nothing is said
])
def test_int8_fallback_follows_the_target(monkeypatch, tmp_path, args, target, notice):
    seen = {}

    def fake_export(model, out_path, *, weights, options, quantizer, json_out=None, title=None):
        seen.update(target=options.target, fallback=quantizer.options.fallback)

    monkeypatch.setattr(cli_export, "export_onnx", fake_export)
    r = _invoke("default", "--precision", "int8", "--calib-dir", tmp_path, *args, "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    assert seen["fallback"] == (BEST_FALLBACK[target] if target else "fp16")
    lines = [line for line in r.output.splitlines() if line.startswith("INT8 fallback")]
    if notice:
        other = {"fp32": "fp16", "fp16": "fp32"}[seen["fallback"]]
        assert len(lines) == 1 and lines[0].startswith(f"INT8 fallback {seen['fallback']}: best for ")
        assert f"--fallback {other}" in lines[0]
    else:
        assert lines == []


def test_default_int8_export_is_the_onnx_runtime_file(small_checkpoint, tmp_path):
    """End to end: without --fallback the file written keeps FP32 around the INT8 layers (no FP16
    tensor anywhere) and says so in its metadata."""
    from restormer_deploy.restormer.presets import ASSETS

    ckpt, _, _ = small_checkpoint(tmp_path, "converse-dncnn")
    out = tmp_path / "m.onnx"
    r = _invoke(ckpt, "--precision", "int8", "--calib-dir", ASSETS / "samples", "--calib-count", "2",
                "--calib-size", "32", "--no-search", "--out", out)
    assert r.exit_code == 0, r.output
    model = onnx.load(str(out))
    assert {p.key: p.value for p in model.metadata_props}["int8_fallback"] == "fp32"
    fp16 = onnx.TensorProto.FLOAT16
    assert not any(t.data_type == fp16 for t in model.graph.initializer)
    assert not any(a.name == "to" and a.i == fp16 for n in model.graph.node for a in n.attribute)
    assert "INT8 fallback fp32: best for ONNX Runtime CPU; pass --fallback fp16 for TensorRT" in r.output


# ----------------------------------------------------------------------------- item 4: Converse2D lowering


def test_converse_export_defaults_to_matmul_with_the_function_lowerings_output(art, converse_export):
    """The default ONNX Runtime file has no Converse2D node (the matmul lowering) and restores like the
    function lowering (art's file) and like PyTorch, within the FP32 floor of 60 dB."""
    assert converse_export["json"]["converse_lowering"] == "matmul"
    ops = {(n.domain, n.op_type) for n in onnx.load(str(converse_export["onnx"])).graph.node}
    assert ("restormer", "Converse2D") not in ops and ("", "MatMul") in ops
    assert ("restormer", "Converse2D") in {(n.domain, n.op_type) for n in onnx.load(str(art["fp32"])).graph.node}
    x = np.random.default_rng(0).random((1, 1, 40, 48), dtype=np.float32)
    got = cpu_session(converse_export["onnx"]).run(None, {"input": x})[0]
    function = cpu_session(art["fp32"]).run(None, {"input": x})[0]
    import torch

    with torch.inference_mode():
        ref = art["net"](torch.from_numpy(x)).numpy()
    for other in (function, ref):
        assert 10 * np.log10(1 / np.mean((got - other) ** 2)) >= 60


@pytest.mark.parametrize("trt_version, lowering", [("11.2", "dft"), ("10.13", "matmul")])
def test_tensorrt_target_keeps_the_auto_choice_by_version(monkeypatch, tmp_path, trt_version, lowering):
    from restormer_deploy.export.onnx_export import resolve_lowering

    seen = {}
    monkeypatch.setattr(cli_export, "export_onnx", lambda *a, options, **k: seen.update(options=options))
    r = _invoke("converse-dncnn", "--target", "trt", "--trt-version", trt_version, "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    options = seen["options"]
    assert options.converse_lowering == "auto"
    assert resolve_lowering(options.converse_lowering, None, target=options.target, tensorrt=options.tensorrt) == lowering


# ----------------------------------------------------------------------------- item 6: quiet, honest output


def test_export_output_is_quiet_and_says_only_what_applies(converse_export, art, tmp_path):
    proc = converse_export["proc"]
    assert proc.stderr.strip() == "", proc.stderr  # no torchvision lines, no deprecation warnings
    assert "warning" not in proc.stdout.lower()
    assert re.search(r"Converse2D lowering\s+│\s+matmul \(2 layers\)", proc.stdout), proc.stdout
    # a model without Converse2D: no lowering row
    from restormer_deploy.export.onnx_export import ExportResult

    console = Console(width=100, record=True)
    table_of = {}
    for n in (0, 3):
        monkey = ExportResult(path="m.onnx", precision="fp32", converse_lowering="matmul", max_abs_err=0.0,
                              psnr_vs_torch=99.0, converse2d=n)
        with console.capture() as cap:
            cli_export.out, saved = console, cli_export.out
            try:
                cli_export._print_result(monkey, "ort")
            finally:
                cli_export.out = saved
        table_of[n] = cap.get()
    assert "Converse2D" not in table_of[0] and "matmul (3 layers)" in table_of[3]


def test_quiet_exporter_is_scoped_and_keeps_other_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_exporter():
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
            warnings.warn("something else", FutureWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
    assert [str(w.message)[:14] for w in caught] == ["something else", "`isinstance(tr"]


@pytest.mark.parametrize("version", ["12", "10.99", "11.9", "9.0"])
def test_check_trt_refuses_versions_that_are_no_known_release(art, version):
    r = _invoke(art["fp32"], "--check-trt", version)
    assert r.exit_code == 2 and r.output.startswith("error:") and "every node parses" not in r.output, r.output
    if version != "9.0":
        assert KNOWN in _text(r)


def test_lint_trt_command_refuses_what_is_no_release(capsys):
    from restormer_deploy.cli.lint_trt import main

    assert main(["--version-for", "10.99"]) == 2 and KNOWN in capsys.readouterr().err
    assert main(["--version-for", "10.16.1"]) == 0 and capsys.readouterr().out.strip() == "10.16.1"


def test_plugin_note_only_for_files_with_plugin_nodes(art, converse_export):
    plugin_free = _invoke(converse_export["onnx"], "--check-trt", "10.13")
    assert plugin_free.exit_code == 0 and "every node parses" in plugin_free.output
    assert "plugin" not in plugin_free.output
    with_plugin = _invoke(art["fp32"], "--check-trt", "10.13")  # the function lowering: Converse2D nodes
    assert with_plugin.exit_code == 0 and "plugin-backed node(s)" in with_plugin.output


def test_int8_layer_table_keeps_every_name_at_80_columns():
    from restormer_deploy.cli.int8_report import print_int8_report

    names = ["node_Conv_941", "node_Conv_1018", "node_Conv_947", "node_Conv_1015", "node_MatMul_12"]
    layers = [{"name": n, "op": n.split("_")[1], "mac_share": 0.1, "input_amax": {"a": 1.5, "b": 2.25},
               "output_amax": {"c": 3.0}, "sensitivity_db": 0.01 * i, "precision": "int8"} for i, n in enumerate(names)]
    report = {"calibration": {"count": 2, "dir": "c", "crop": 32, "degrade": "none", "seed": 0, "method": "minmax",
                              "cache": None, "cache_state": "not used"},
              "search": {"count": 2, "dir": "c", "crop": 32}, "fallback": "fp32", "layers_int8": 5, "layers_total": 5,
              "int8_mac_share": 1.0, "mac_reference_size": 256, "psnr_budget_db": 0.3,
              "psnr": {"fp32_vs_gt": 30.0, "int8_vs_gt": 29.9, "drop_db": 0.1, "within_budget": True,
                       "int8_vs_fp32": 45.0},
              "excluded": {}, "layers": layers}
    console = Console(width=80, record=True)
    with console.capture() as cap:
        print_int8_report(console, report)
    text = cap.get()
    assert all(len(line) <= 80 for line in text.splitlines())
    rows = [line for line in text.splitlines() if line.startswith("│ node_")]
    assert sorted(row.split("│")[1].strip() for row in rows) == sorted(names)
    assert "2.25" in text and "3" in text  # the largest input and output range of each layer


# ----------------------------------------------------------------------------- item 7: clear messages


@pytest.mark.parametrize("fmt, example", [("onnx", "--out model.onnx"), ("trt", "--out model.engine"),
                                          ("triton-repo", "--out models/")])
def test_missing_out_is_one_clear_error(fmt, example):
    r = _invoke("converse-dncnn", "--format", fmt)
    assert r.exit_code == 2, r.output
    what = "folder" if fmt == "triton-repo" else "file"
    assert r.output.strip().splitlines() == [f"error: --out is required: where to write the {what} (e.g. {example})"]


def test_linting_an_existing_file_needs_no_out(art):
    r = _invoke(art["fp32"], "--check-trt", "10.13")
    assert r.exit_code == 0 and "--out" not in r.output, r.output


def _tensorrt_usable() -> bool:
    from restormer_deploy.engines.tensorrt import builder
    from restormer_deploy.engines.tensorrt.core import TrtError

    try:
        builder.import_tensorrt()
    except TrtError:
        return False
    return True


def test_triton_backend_auto_follows_tensorrt(monkeypatch, art):
    from restormer_deploy.engines.tensorrt import builder
    from restormer_deploy.engines.tensorrt.core import TrtError
    from restormer_deploy.engines.triton.repository import resolve_backend

    assert resolve_backend("auto", "m.engine") == ("tensorrt", None)
    assert resolve_backend("onnxruntime", "m.onnx") == ("onnxruntime", None)

    def missing():
        raise TrtError("TensorRT is not usable here (ModuleNotFoundError)")

    monkeypatch.setattr(builder, "import_tensorrt", missing)
    backend, note = resolve_backend("auto", "default")
    assert backend == "onnxruntime" and "TensorRT is not usable here" in note
    assert resolve_backend("auto", "default", triton_release="25.01")[0] == "tensorrt"
    monkeypatch.setattr(builder, "import_tensorrt", lambda: object())
    assert resolve_backend("auto", "default") == ("tensorrt", None)


@pytest.mark.skipif(_tensorrt_usable(), reason="needs a machine without TensorRT")
def test_triton_export_without_tensorrt(art, tmp_path):
    """The default backend serves model.onnx with a notice; the table names the --out folder, never a
    temporary one; asking for tensorrt explicitly is refused with the way out."""
    repo = tmp_path / "repo"
    r = _invoke(art["ckpt"], "--format", "triton-repo", "--out", repo)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("Triton backend onnxruntime (model.onnx): TensorRT is not usable here")
    assert len(list(repo.glob("*/1/model.onnx"))) == 1
    joined = "".join(r.output.split())  # rich folds long paths
    assert f"ONNXfortheTritonrepository{repo}" in joined and "/triton_export_" not in joined  # the scratch folder
    r = _invoke(art["fp32"], "--format", "triton-repo", "--backend", "tensorrt", "--out", tmp_path / "repo2")
    assert r.exit_code == 2 and "--backend onnxruntime" in _text(r) and not (tmp_path / "repo2").exists()
