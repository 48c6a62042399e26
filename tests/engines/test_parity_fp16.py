"""restore-parity says what arithmetic ran, and checks an FP16 file under FP16 arithmetic: a file that
overflows in FP16 passes on ONNX Runtime's CPU provider (which computes in FP32) and fails the
emulated FP16-arithmetic check, whose verdict is reported apart."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from restormer_deploy.cli.parity import app
from restormer_deploy.restormer.imageio import write_image

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
UP, DOWN = 1024.0, 2.0 ** -20  # exact powers of two: x * 2^10 * 2^10 * 2^-20 == x in FP32


@pytest.fixture(scope="module")
def fp16_files(art, tmp_path_factory):
    """An FP16-IO export without subgraphs (matmul lowering: emulable), and the same file with the
    input scaled up by 2^20 and back down first: in FP16 that overflows for any pixel above 1/16."""
    from restormer_deploy.export.onnx_export import ExportOptions, export

    root = tmp_path_factory.mktemp("fp16_overflow")
    clean = root / "clean16.onnx"
    export(str(art["ckpt"]), clean, options=ExportOptions(precision="fp16", io_fp16=True, converse_lowering="matmul",
                                                          verify_size=24))
    model = onnx.load(str(clean))
    g = model.graph
    for node in g.node:
        node.input[:] = ["ovf_c" if i == "input" else i for i in node.input]
    g.initializer.extend([numpy_helper.from_array(np.array(UP, np.float16), "ovf_up"),
                          numpy_helper.from_array(np.array(DOWN, np.float16), "ovf_down")])
    for k, node in enumerate([helper.make_node("Mul", ["input", "ovf_up"], ["ovf_a"], name="ovf_a"),
                              helper.make_node("Mul", ["ovf_a", "ovf_up"], ["ovf_b"], name="ovf_b"),
                              helper.make_node("Mul", ["ovf_b", "ovf_down"], ["ovf_c"], name="ovf_c")]):
        g.node.insert(k, node)
    overflow = root / "overflow16.onnx"
    onnx.save(model, str(overflow))
    images = root / "imgs"
    images.mkdir()
    g = np.random.default_rng(0)
    for i in range(2):
        write_image(images / f"{i}.png", (g.random((32, 40)) * 128 + 64).astype(np.uint8)[..., None])
    return {"clean": clean, "overflow": overflow, "images": images}


def test_the_construction_overflows_in_fp16_only():
    x = np.float16(0.5)
    with np.errstate(over="ignore"):
        assert np.isinf(x * np.float16(UP) * np.float16(UP))
    assert np.float32(0.5) * np.float32(UP) * np.float32(UP) * np.float32(DOWN) == np.float32(0.5)


def _parity(path, files, art, out):
    return runner.invoke(app, [str(path), "--reference", str(art["ckpt"]), "--images", str(files["images"]),
                               "--degrade", "noise:15", "--json", str(out)], catch_exceptions=False)


def test_fp16_overflow_passes_ort_cpu_and_fails_fp16_arithmetic(fp16_files, art, tmp_path):
    out = tmp_path / "p.json"
    r = _parity(fp16_files["overflow"], fp16_files, art, out)
    assert r.exit_code == 1, r.output
    data = json.loads(out.read_text())
    assert data["run_passed"] is True and data["worst"]["psnr_vs_reference"] >= 45  # ORT CPU hides it
    assert data["fp16_arithmetic"]["passed"] is False and data["fp16_arithmetic"]["worst"] < 45
    assert all(i["psnr_fp16_arithmetic"] < 45 for i in data["images"])
    assert data["provider"] == "CPUExecutionProvider"
    assert data["arithmetic"].startswith("FP16 weights and activations stored, arithmetic in FP32")
    assert "FP16-arithmetic check" in r.output and "ort-cpu verdict: PASSED" in r.output


def test_a_clean_fp16_file_passes_both(fp16_files, art, tmp_path):
    out = tmp_path / "p.json"
    r = _parity(fp16_files["clean"], fp16_files, art, out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    check = data["fp16_arithmetic"]
    assert check["passed"] is True and 45 <= check["worst"] < 200 and check["mean"] >= check["worst"]
