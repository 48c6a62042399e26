"""Fixtures shared by the test folders (which mirror the packages: restormer/, export/, calibration/,
engines/, cli/). Test modules never import each other or this file: what they share is a fixture
here. A builder that a module needs at import time (a ``parametrize`` list) stays a constant in that
module. No test folder is on sys.path (``--import-mode=importlib``): tests/restormer/, tests/engines/, ...
would shadow the packages of the same names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from restormer_deploy.restormer.presets import shared_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_dir()

# Small versions of every family: the same code paths as the presets at a fraction of the size.
SMALL = {
    "converse-dncnn": {"num_blocks": 2, "num_features": 8},
    "converse-srresnet": {"num_blocks": 1, "num_features": 8},
    "conversenet-deblur": {"num_iterations": 2, "in_channels": 8, "num_blocks": 2},
    "converse-usrnet": {"num_iterations": 2, "in_channels": 8, "num_blocks": 1},
    "restormer-denoise-color": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
    "restormer-derain": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
    "restormer-defocus-dual": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
}

# A tiny Restormer for the training tests (seconds on a CPU).
TINY_MODEL = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 0, "heads": [1, 1, 1, 1]}


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("restore-cache")


@pytest.fixture(autouse=True)
def _export_cache(request, monkeypatch, _session_cache):
    """restore-run's ONNX export cache (engines/export_cache.py) is a per-session temporary folder,
    never ~/.cache. Presets and checkpoints stay on PyTorch under ``--backend auto`` (an export costs
    10-40 s per model, and most tests make fresh checkpoints) unless the test asks for the
    ``fast_path`` fixture."""
    monkeypatch.setenv("RESTORE_CACHE_DIR", str(_session_cache))
    if "fast_path" not in request.fixturenames:
        from restormer_deploy.engines import export_cache

        monkeypatch.setattr(export_cache, "fast_provider", lambda: None)


@pytest.fixture
def fast_path():
    """Keep restore-run's verified-ONNX fast path on (see ``_export_cache``)."""


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids OpenMP synchronisation, which dominates on a shared machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- repository and ../shared


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def _need_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared beside the project root, or RESTORMER_SHARED)")
    return path


@pytest.fixture(scope="session")
def converse2d_official():
    """The official Converse2D algorithm written out plainly (tests/converse_reference.py, also the
    baseline of benchmarks/converse2d_speed.py): an independent reference, loaded from its file."""
    spec = importlib.util.spec_from_file_location("converse_reference", REPO_ROOT / "tests" / "converse_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.converse2d_official


@pytest.fixture(scope="session")
def need_shared():
    """``need_shared(*parts)``: the path of a file or folder of ../shared; skips (with the reason) when it
    is absent, e.g. in a user's fresh clone."""
    return _need_shared


# ----------------------------------------------------------------------------- small models and exports


def _small_spec(preset: str):
    from restormer_deploy.restormer.presets import PRESETS, ModelSpec

    base = PRESETS[preset]
    return ModelSpec(**{**base.to_json(), "name": f"{preset}-small", "weights": None,
                        "config": {**base.config, **SMALL[preset]}})


def _small_checkpoint(root: Path, preset: str):
    from restormer_deploy.restormer.checkpoints import save_checkpoint
    from restormer_deploy.restormer.converse_arch import Converse2D
    from restormer_deploy.restormer.presets import build
    from restormer_deploy.restormer.restormer_arch import Attention

    spec = _small_spec(preset)
    torch.manual_seed(0)
    model = build(spec).eval()
    with torch.no_grad():  # random but non-trivial Converse2D regularisation and attention temperatures
        for m in model.modules():
            if isinstance(m, Converse2D):
                m.bias.uniform_(-2, 4)
            if isinstance(m, Attention):
                m.temperature.uniform_(0.5, 2)
    return save_checkpoint(root / f"{preset}.safetensors", model, {"model": spec.to_json()}), model, spec


@pytest.fixture(params=list(SMALL))
def small_preset(request) -> str:
    """Each preset that has a small version (``SMALL``), in turn."""
    return request.param


@pytest.fixture(scope="session")
def small_spec():
    """``small_spec(preset)``: the preset's ModelSpec with the small configuration of ``SMALL``."""
    return _small_spec


@pytest.fixture(scope="session")
def small_checkpoint():
    """``small_checkpoint(root, preset) -> (path, model, spec)``: a random small model of the preset
    (seeded) saved as ROOT/PRESET.safetensors."""
    return _small_checkpoint


@pytest.fixture(scope="session")
def art(tmp_path_factory):
    """A small random Converse-DnCNN whose outputs sit inside [0, 1] (so that clamping does not hide
    differences), its checkpoint, an FP32 ONNX export and an FP16-IO export, and a second, different
    checkpoint of the same architecture (for failing parity). Built once per test process."""
    from restormer_deploy.export.onnx_export import ExportOptions, export
    from restormer_deploy.restormer.checkpoints import save_checkpoint

    root = tmp_path_factory.mktemp("rt_small")
    _, net, spec = _small_checkpoint(root, "converse-dncnn")
    with torch.no_grad():
        x = torch.rand(1, 1, 32, 32)
        net.m_tail[0].bias += 0.5 - net(x).mean()
    ckpt = save_checkpoint(root / "dncnn.safetensors", net, {"model": spec.to_json()})
    export(str(ckpt), root / "m.onnx", options=ExportOptions(verify_size=24))
    export(str(ckpt), root / "m16.onnx", options=ExportOptions(precision="fp16", io_fp16=True, verify_size=24))
    torch.manual_seed(1)
    other = type(net)(**spec.config).eval()
    with torch.no_grad():
        other.m_tail[0].bias += 0.5 - other(x).mean()
    other_ckpt = save_checkpoint(root / "other.safetensors", other, {"model": spec.to_json()})
    return {"root": root, "ckpt": ckpt, "net": net, "spec": spec, "fp32": root / "m.onnx", "fp16": root / "m16.onnx",
            "other": other_ckpt}


@pytest.fixture(scope="session")
def int8_file():
    """``int8_file(net, spec, opts, *, target="ort") -> (model, report)``: the INT8 file as the exporter
    builds it (not verified, not written) and the quantizer's report."""
    from restormer_deploy.calibration.int8 import Int8Quantizer
    from restormer_deploy.export.stages import ExportOptions, finish, prepare, trace

    def build(net, spec, opts, *, target: str = "ort"):
        quantized = Int8Quantizer(opts, log=lambda *_: None)(prepare(trace(net, spec), target=target), spec, net)
        return finish(quantized, spec, ExportOptions(precision="int8", target=target)), quantized.report

    return build


# ----------------------------------------------------------------------------- image files


@pytest.fixture(scope="session")
def random_image():
    """``random_image(shape, dtype=np.uint8, seed=0)``: uniform random pixels over the dtype's range."""
    def make(shape, dtype=np.uint8, seed=0):
        return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)

    return make


@pytest.fixture(scope="session")
def tiff_header_only():
    """``tiff_header_only(path, width, height)``: an 8-bit grey TIFF whose IFD declares width x height but
    holds 16 bytes of data (a decompression bomb refused from its header)."""
    import struct

    def write(path: Path, width: int, height: int) -> None:
        tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
                (277, 3, 1), (278, 4, height), (279, 4, width * height)]
        data_at = 8 + 2 + 12 * len(tags) + 4
        ifd = b"".join(struct.pack("<HHII", tag, kind, 1, data_at if tag == 273 else value)
                       for tag, kind, value in tags)
        path.write_bytes(b"II*\x00" + struct.pack("<IH", 8, len(tags)) + ifd + b"\x00" * 4 + b"\x00" * 16)

    return write


# ----------------------------------------------------------------------------- training set-ups


@pytest.fixture(scope="session")
def smooth_images():
    """``smooth_images(folder, n=6, size=48, seed=0) -> folder``: smooth colour images (sums of
    low-frequency waves): easy to denoise, so PSNR rises fast."""
    from PIL import Image

    def make(folder: Path, n: int = 6, size: int = 48, seed: int = 0) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size] / size
        for i in range(n):
            f = rng.uniform(0.5, 3, (3, 2))
            ph = rng.uniform(0, 6, 3)
            img = np.stack([np.sin(2 * f[c, 0] * yy + ph[c]) * np.cos(2 * f[c, 1] * xx) for c in range(3)], -1)
            Image.fromarray((img * 0.4 * 255 + 127.5).round().astype(np.uint8)).save(folder / f"img{i}.png")
        return folder

    return make


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(tmp, images, **sections) -> dict``: a config for a tiny Restormer: 2 progressive
    stages, cosine restarts, validation; ``sections`` update data/train/val/checkpoint or set a key."""
    def make(tmp: Path, images: Path, **sections) -> dict:
        cfg = {
            "model": "default",
            "model_config": dict(TINY_MODEL),
            "run_dir": str(tmp / "run"),
            "seed": 3,
            "data": {"clean": [str(images)], "sigma": [10, 30], "mixup": 0.5},
            "train": {"iterations": 8, "lr": 2e-3, "lr_periods": [3, 5], "lr_mins": [1e-3, 1e-5],
                      "patch_sizes": [16, 24], "batch_sizes": [3, 2], "stage_iters": [5, 3], "log_every": 1},
            "val": {"data": [str(images / "img0.png")], "degrade": "noise:25", "every": 4},
            "checkpoint": {"every": 4},
        }
        for name, values in sections.items():
            if name in ("data", "train", "val", "checkpoint"):
                cfg[name].update(values)
            else:
                cfg[name] = values
        return cfg

    return make


@pytest.fixture(scope="session")
def write_config():
    """``write_config(path, cfg) -> path``: the config as YAML."""
    import yaml

    def write(path: Path, cfg: dict) -> Path:
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write
