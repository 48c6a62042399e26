"""Published numbers of the official checkpoints, reproduced with our reference and protocols.

slow: run by CI (`make test`). paper_full: about an hour on 2 cores, run with `make paper-full`.
At the top level, not under a package folder: each test spans the models, the degradations and the
evaluation protocol of restormer/ against a published number, not one module.
"""

import numpy as np
import pytest

from restormer_deploy.restormer.degrade import parse_degradation
from restormer_deploy.restormer.evaluate import evaluate
from restormer_deploy.restormer.imageio import list_images
from restormer_deploy.restormer.presets import load_model

# Official code and checkpoints, first 4 CBSD68 images sorted by name, central 192x192 crops,
# PSNR on RGB uint8 with 1 pixel shaved (PAPERS.md), kernels 1-5.
DEBLUR = {
    "conversenet-deblur": [26.48, 24.30, 32.16, 27.75, 26.85],
    "converse-usrnet": [30.95, 29.85, 37.57, 31.27, 33.54],
}
DEGRADED_INPUT = [24.48, 22.32, 30.04, 21.87, 21.47]


def _mean(results, key="psnr"):
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    return float(np.mean([getattr(r, key) for r in results]))


@pytest.mark.slow
@pytest.mark.parametrize("preset", DEBLUR)
def test_deblurring_matches_official_code(preset, need_shared):
    images = list_images(need_shared("data", "denoise", "CBSD68"))[:4]
    kernels = need_shared("data", "kernels", "conversenet")
    model, spec = load_model(preset)
    for i, (expected, degraded) in enumerate(zip(DEBLUR[preset], DEGRADED_INPUT), start=1):
        degradation = parse_degradation(f"blur:{kernels / f'kernel_{i}.npy'}+noise:2.55")
        results = evaluate(model, spec, images, degradation, seed=0, crop=192)
        assert _mean(results) == pytest.approx(expected, abs=0.05), f"kernel {i}"
        assert _mean(results, "input_psnr") == pytest.approx(degraded, abs=0.05), f"kernel {i} input"


@pytest.mark.slow
def test_converse_dncnn_set12_sigma25(need_shared):
    model, spec = load_model("converse-dncnn")
    results = evaluate(model, spec, list_images(need_shared("data", "denoise", "Set12")), parse_degradation("noise:25"))
    assert _mean(results) >= 30.65  # paper: 30.70


@pytest.mark.slow
def test_converse_srresnet_set5_x4(need_shared):
    model, spec = load_model("converse-srresnet")
    results = evaluate(model, spec, list_images(need_shared("data", "sr", "Set5")), parse_degradation("sr:4"))
    assert _mean(results) >= 32.15  # paper: 32.25


@pytest.mark.paper_full
def test_converse_dncnn_bsd68_sigma25(need_shared):
    model, spec = load_model("converse-dncnn")
    results = evaluate(model, spec, list_images(need_shared("data", "denoise", "BSD68")), parse_degradation("noise:25"))
    assert _mean(results) >= 29.30  # paper: 29.36
