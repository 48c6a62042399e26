"""engines/export_cache.py: restore-run's verified ONNX export, made once per key and reused.

One real export of a small Converse-DnCNN (module fixture ``made``); the tests that are about the
cache's bookkeeping replace the exporter with ``fake_export``, which writes that same verified file,
so the runner-level verification against PyTorch still runs for real."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from restormer_deploy.engines import export_cache
from restormer_deploy.engines.backends import OnnxRuntimeRunner, PyTorchRunner
from restormer_deploy.export import onnx_export
from restormer_deploy.export.contract import PARITY_FLOORS
from restormer_deploy.restormer.checkpoints import save_checkpoint
from restormer_deploy.restormer.fileio import sha256_file
from restormer_deploy.restormer.presets import load_model

pytestmark = pytest.mark.usefixtures("one_thread", "fast_path")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, small_checkpoint):
    return str(small_checkpoint(tmp_path_factory.mktemp("ckpt"), "converse-dncnn")[0])


@pytest.fixture(scope="module")
def made(ckpt, tmp_path_factory):
    """A real first export into a module cache folder."""
    return export_cache.ensure_export(ckpt, root=tmp_path_factory.mktemp("cache"), threads=1)


@pytest.fixture
def fake_export(made, monkeypatch):
    """The exporter replaced by a copy of ``made``'s file; ``calls`` counts the exports."""
    calls = []

    def export(model, out, *, weights=None, options=None, quantizer=None):
        calls.append(model)
        shutil.copyfile(made.path, out)
        return onnx_export.ExportResult(path=str(out), precision="fp32", converse_lowering="matmul",
                                        max_abs_err=made.record["max_abs_err"], psnr_vs_torch=made.record["psnr_vs_torch"])

    monkeypatch.setattr(onnx_export, "export", export)
    return calls


def _torch_output(model, x):
    with PyTorchRunner(model) as ref:
        return ref.run(x)


def test_real_export_is_verified_plugin_free_and_recorded(made, ckpt):
    assert made.status == "exported" and made.runner.name == "ort-cpu" and made.runner.is_active
    record = json.loads(made.path.with_suffix(".json").read_text())
    assert record["onnx_sha256"] == sha256_file(made.path)
    assert record["key"]["weights_sha256"] == sha256_file(ckpt) and record["key"]["converse_lowering"] == "matmul"
    assert record["psnr_vs_torch"] >= PARITY_FLOORS["fp32"] and record["export_seconds"] > 0
    ops = {n.op_type for n in onnx.load(str(made.path)).graph.node}
    assert "Converse2D" not in ops and "MatMul" in ops  # the lowering ONNX Runtime runs fast
    x = np.random.default_rng(0).random((1, 1, 40, 56), dtype=np.float32)
    np.testing.assert_allclose(made.runner.run(x), _torch_output(ckpt, x), atol=1e-4)


def test_miss_then_hit(ckpt, tmp_path, fake_export):
    first = export_cache.ensure_export(ckpt, root=tmp_path)
    second = export_cache.ensure_export(ckpt, root=tmp_path)
    assert (first.status, second.status, len(fake_export)) == ("exported", "reused", 1)
    assert second.path == first.path and second.record == first.record
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".onnx"]  # no temporaries left


def test_key_follows_the_weights_not_the_path(ckpt, tmp_path):
    spec = PyTorchRunner(ckpt).spec
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(ckpt, copy)
    key = export_cache.cache_key(spec, ckpt)
    assert export_cache.cache_key(PyTorchRunner(str(copy)).spec, copy) == key
    net, _ = load_model(str(copy))
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    changed = save_checkpoint(tmp_path / "changed.safetensors", net, {"model": spec.to_json()})
    other = export_cache.cache_key(PyTorchRunner(str(changed)).spec, changed)
    assert other["weights_sha256"] != key["weights_sha256"]
    assert export_cache.cache_paths(other, tmp_path) != export_cache.cache_paths(key, tmp_path)
    assert {k for k in key if key[k] != other[k]} == {"weights_sha256"}


@pytest.mark.parametrize("damage", ["garbage file", "truncated file", "missing file", "garbage record", "other key"])
def test_damaged_cache_entry_is_made_again(ckpt, tmp_path, fake_export, damage):
    first = export_cache.ensure_export(ckpt, root=tmp_path)
    first.runner.deactivate()
    record = first.path.with_suffix(".json")
    if damage == "garbage file":
        first.path.write_bytes(b"not an onnx file")
    elif damage == "truncated file":
        first.path.write_bytes(first.path.read_bytes()[:1000])
    elif damage == "missing file":
        first.path.unlink()
    elif damage == "garbage record":
        record.write_text("{not json")
    else:
        data = json.loads(record.read_text())
        data["key"]["onnxruntime"] = "0.0"
        record.write_text(json.dumps(data))
    again = export_cache.ensure_export(ckpt, root=tmp_path)
    assert again.status == "remade" and again.reason and len(fake_export) == 2
    assert json.loads(record.read_text())["onnx_sha256"] == sha256_file(again.path)
    assert export_cache.ensure_export(ckpt, root=tmp_path).status == "reused"


def test_unwritable_cache_falls_back_to_pytorch(ckpt, tmp_path, monkeypatch, fake_export):
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setenv("RESTORE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    runner, notice = export_cache.fast_runner(ckpt)
    assert isinstance(runner, PyTorchRunner) and not runner.is_active
    assert notice.startswith("using PyTorch") and "cache folder" in notice and "\n" not in notice
    assert fake_export == []  # refused before minutes of export


def test_failed_verification_falls_back_and_keeps_nothing(ckpt, tmp_path, monkeypatch, fake_export):
    monkeypatch.setattr(export_cache, "_verify", lambda *a: (42.0, 0.01))
    runner, notice = export_cache.fast_runner(ckpt, root=tmp_path)
    assert isinstance(runner, PyTorchRunner) and "42.0 dB" in notice
    assert list(tmp_path.iterdir()) == []


def test_failed_export_falls_back(ckpt, tmp_path, monkeypatch):
    def export(*a, **k):
        raise onnx_export.ExportError("self-check failed: PSNR vs PyTorch 12.0 dB < 60 dB")

    monkeypatch.setattr(onnx_export, "export", export)
    runner, notice = export_cache.fast_runner(ckpt, root=tmp_path)
    assert isinstance(runner, PyTorchRunner) and "self-check failed" in notice


def test_fast_runner_notices(ckpt, tmp_path, fake_export):
    runner, notice = export_cache.fast_runner(ckpt, root=tmp_path)
    assert isinstance(runner, OnnxRuntimeRunner) and runner.is_active
    assert notice.startswith("exported converse-dncnn-small to ONNX and verified it") and str(runner.path) in notice
    assert runner.spec == PyTorchRunner(ckpt).spec  # the model's own spec, not the metadata's
    runner, notice = export_cache.fast_runner(ckpt, root=tmp_path)
    assert notice == f"using the verified ONNX export cached at {runner.path}" and len(fake_export) == 1


def test_what_stays_on_pytorch(tmp_path, small_checkpoint, ckpt, monkeypatch, fake_export):
    usrnet = str(small_checkpoint(tmp_path, "converse-usrnet")[0])  # the export fixes the kernel size
    assert export_cache.fast_runner(usrnet, root=tmp_path)[1] is None
    monkeypatch.setattr(export_cache, "ort_providers", lambda: [])  # no onnxruntime
    assert export_cache.fast_provider() is None
    runner, notice = export_cache.fast_runner(ckpt, root=tmp_path)
    assert isinstance(runner, PyTorchRunner) and notice is None
    monkeypatch.setattr(export_cache, "ort_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(export_cache, "torch_cuda_available", lambda: True)  # PyTorch's GPU beats ORT's CPU
    assert export_cache.fast_provider() is None
    monkeypatch.setattr(export_cache, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert export_cache.fast_provider() == "ort-cuda"
    assert fake_export == []


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RESTORE_CACHE_DIR", str(tmp_path / "mine"))
    assert export_cache.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("RESTORE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert export_cache.cache_root() == tmp_path / "xdg" / "restormer-deploy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export_cache.cache_root() == tmp_path / "home" / ".cache" / "restormer-deploy"
