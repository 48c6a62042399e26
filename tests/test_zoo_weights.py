"""Real third-party checkpoints (../shared/weights/zoo/) through the verified path, against the PSNR
that ../shared/README.md measured with spandrel and PyTorch (the independent figure)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("spandrel", reason="spandrel not installed (pip install -e .[zoo])")

from restormer_deploy.restormer.presets import shared_dir  # noqa: E402

ZOO = shared_dir() / "weights" / "zoo"
# ../shared/README.md, "measured (spandrel, PyTorch)"
PUBLISHED = {"dncnn_gray_s25": 30.45, "span_ch28_x4": 31.74}


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo_weights.py"
    spec = importlib.util.spec_from_file_location("zoo_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not ZOO.is_dir(), reason=f"{ZOO} is absent (../shared not beside the project)")
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_real_checkpoint_keeps_its_task_psnr_in_fp32_and_fp16(name, tmp_path):
    row = _bench().evaluate_checkpoint(name, tmp_path, int8=False)
    assert abs(row["pytorch_psnr"] - PUBLISHED[name]) <= 0.1, row  # our protocol reproduces the measured figure
    assert row["fp32_vs_torch"] >= 60 and abs(row["fp32_psnr"] - row["pytorch_psnr"]) <= 0.01, row
    assert row["fp16_arith_vs_torch"] >= 45 and abs(row["fp16_arith_psnr"] - row["pytorch_psnr"]) <= 0.05, row
