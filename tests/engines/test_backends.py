"""restormer_deploy.engines.backends: runners and load_runner."""

import numpy as np
import pytest

from restormer_deploy.engines.backends import (
    BackendError, OnnxRuntimeRunner, PyTorchRunner, TensorRTRunner, as_polygraphy, available_backends, load_runner,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _psnr(a, b):
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-20))


def test_load_runner_picks_backends(art):
    assert isinstance(load_runner(art["fp32"]), OnnxRuntimeRunner)
    assert load_runner(art["fp32"]).name == available_backends(str(art["fp32"]))[0]
    assert isinstance(load_runner(art["ckpt"]), PyTorchRunner)
    assert load_runner(art["ckpt"], "torch").name in ("torch-cpu", "torch-cuda")
    with pytest.raises(ValueError, match="cannot run"):
        load_runner(art["fp32"], "torch-cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        load_runner(art["fp32"], "directml")
    with pytest.raises(ValueError, match="unknown artefact"):
        load_runner("model.bin")
    with pytest.raises(FileNotFoundError):
        load_runner("missing.onnx")


def test_onnx_runner_reads_metadata_and_matches_torch(art):
    x = np.random.default_rng(0).random((2, 1, 40, 48), dtype=np.float32)
    with load_runner(art["ckpt"], "torch-cpu") as ref:
        want = ref.run(x)
    for key, floor in (("fp32", 60), ("fp16", 40)):
        with OnnxRuntimeRunner(art[key], threads=1) as runner:
            assert runner.spec.in_channels == 1 and runner.spec.scale == 1 and runner.spec.pad_multiple == 1
            assert runner.precision == key
            meta = runner.get_input_metadata()
            assert meta["input"][0] == (np.float16 if key == "fp16" else np.float32)
            got = runner.run(x)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert _psnr(got, want) >= floor, key


def test_runner_lifecycle_and_polygraphy_wrapper(art):
    runner = PyTorchRunner(net=art["net"], spec=art["spec"])
    with pytest.raises(BackendError, match="activate"):
        runner.run(np.zeros((1, 1, 8, 8), np.float32))
    wrapped = as_polygraphy(runner, "ref")
    with wrapped:
        assert runner.is_active
        out = wrapped.infer({"input": np.zeros((1, 1, 16, 16), np.float32)})
        assert out["output"].shape == (1, 1, 16, 16)
    assert not runner.is_active


def test_ort_cuda_unavailable_is_one_clear_error(art):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(BackendError, match="no CUDAExecutionProvider"):
        with load_runner(art["fp32"], "ort-cuda"):
            pass


def test_tensorrt_runner_needs_sidecar_and_tensorrt(tmp_path, art):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(BackendError, match="sidecar"):
        TensorRTRunner(engine)
    import json

    (tmp_path / "m.engine.json").write_text(json.dumps({"preset": "converse-dncnn", "architecture": "converse-dncnn",
                                                 "in_channels": 1, "out_channels": 1, "scale": 1, "pad_multiple": 1,
                                                 "precision": "fp16", "tensorrt_version": "10.3.0"}))
    runner = TensorRTRunner(engine)
    assert runner.precision == "fp16" and runner.spec.in_channels == 1
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="tensorrt is not installed"):
            runner.activate()
        pytest.skip("TensorRT is not installed: engine inference not tested")
    pytest.skip("a real engine needs a GPU build step (engines/tensorrt)")


def test_pytorch_runner_never_changes_the_feed():
    """A model that changes its input in place (RCAN's mean shift does) must not change the caller's
    array: parity feeds the same array to the reference and the artefact."""
    import dataclasses

    import torch

    from restormer_deploy.engines.backends import PyTorchRunner
    from restormer_deploy.restormer.presets import PRESETS

    class InPlace(torch.nn.Module):
        def forward(self, x):
            return x.sub_(0.5)

    spec = dataclasses.replace(PRESETS["default"], pad_multiple=1)
    x = np.full((1, 3, 8, 8), 0.75, np.float32)
    with PyTorchRunner(net=InPlace(), spec=spec) as runner:
        first, second = runner.run(x), runner.run(x)
    np.testing.assert_array_equal(x, 0.75)
    np.testing.assert_array_equal(first, second)
