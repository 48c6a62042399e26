"""Third-party checkpoints through spandrel (restormer/zoo.py): resolved once, loaded safely, run tiled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

spandrel = pytest.importorskip("spandrel", reason="spandrel not installed (pip install -e .[zoo])")

from safetensors.torch import save_file  # noqa: E402

from restormer_deploy.cli.zoo_survey import _build  # noqa: E402
from restormer_deploy.restormer.checkpoints import WeightsError  # noqa: E402
from restormer_deploy.restormer.presets import load_model, resolve  # noqa: E402


def _save(net, path):
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path)) if path.suffix == ".safetensors" else torch.save(tensors, path)
    return path


def test_sr_checkpoint_resolves_to_its_description(tmp_path):
    path = _save(_build("Compact"), tmp_path / "compact.safetensors")  # x4, 3 channels
    spec = resolve(str(path))
    assert (spec.architecture, spec.task, spec.scale, spec.in_channels, spec.out_channels) == ("spandrel:Compact", "sr", 4, 3, 3)
    net, spec2 = load_model(str(path))
    x = torch.rand(1, 3, 20, 24)
    with torch.inference_mode():
        assert net(x).shape == (1, 3, 80, 96)


def test_size_requirements_come_from_spandrel(tmp_path):
    spec = resolve(str(_save(_build("CRAFT"), tmp_path / "craft.pth")))
    assert (spec.pad_multiple, spec.min_size, spec.scale) == (16, 16, 2)


def test_pth_is_read_without_unpickling_code(tmp_path):
    path = tmp_path / "evil.pth"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weight": torch.zeros(1), "x": Evil()}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        resolve(str(path))


def test_unknown_state_dict_is_one_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsError, match="not an architecture spandrel recognises"):
        resolve(str(path))


def test_restormer_checkpoint_stays_ours(tmp_path):
    pytest.importorskip("spandrel_extra_arches")
    net = _build("Restormer")
    spec = resolve(str(_save(net, tmp_path / "restormer.pth")))
    assert spec.architecture == "restormer" and spec.config["dim"] == 8
    ours, _ = load_model(str(tmp_path / "restormer.pth"))
    from restormer_deploy.restormer.restormer_arch import Restormer

    assert isinstance(ours, Restormer)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), net(x), rtol=1e-4, atol=1e-5)  # the same function as spandrel's


def test_restore_run_tiles_an_sr_checkpoint_in_output_space(tmp_path, monkeypatch, fast_path):
    from PIL import Image
    from typer.testing import CliRunner

    from restormer_deploy.cli.run import app

    monkeypatch.setenv("RESTORE_CACHE_DIR", str(tmp_path / "cache"))
    net = _build("Compact")
    ckpt = _save(net, tmp_path / "compact_x4.safetensors")
    rng = np.random.default_rng(0)
    img = (rng.random((70, 90, 3)) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(img).save(tmp_path / "in" / "a.png")
    result = CliRunner().invoke(app, [str(ckpt), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--tile", "48",
                                      "--tile-overlap", "24", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "ort-cpu" in result.output  # the verified ONNX export ran, not PyTorch
    got = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(np.float64)
    assert got.shape == (280, 360, 3)
    with torch.inference_mode():  # the reference: PyTorch on the whole image
        ref = net(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255)).clamp(0, 1)[0].numpy()
    ref = np.round(ref.transpose(1, 2, 0) * 255)
    assert np.abs(got - ref).max() <= 2  # tiles blended at the output resolution: no seams
