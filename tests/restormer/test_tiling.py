"""restormer_deploy.restormer.tiling: tiled inference with feathered blending."""

import numpy as np
import pytest
import torch
from torch import nn

from restormer_deploy.engines.backends import load_runner
from restormer_deploy.restormer.presets import ModelSpec
from restormer_deploy.restormer.tiling import ramp_weights, restore_array, tile_count, tile_starts

pytestmark = pytest.mark.usefixtures("one_thread")


def _psnr(a, b):
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-20))


class PlainConv(nn.Module):
    """Translation-equivariant (zero padding, receptive field radius 4), small but non-trivial."""

    def __init__(self, c=1, f=8, scale=1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(f, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, c * scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale) if scale > 1 else nn.Identity()
        self.scale = scale

    def forward(self, x):
        up = nn.functional.interpolate(x, scale_factor=self.scale) if self.scale > 1 else x
        return up + self.shuffle(self.body(x))


def _spec(c=1, scale=1, pad_multiple=1):
    return ModelSpec("plain", "converse-dncnn", "denoise", {}, in_channels=c, out_channels=c, scale=scale,
                     pad_multiple=pad_multiple)


def _torch_fn(net):
    def fn(x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()
    return fn


def test_tile_starts_cover_the_axis():
    assert tile_starts(100, 128, 32) == [0]
    assert tile_starts(512, 128, 32) == [0, 96, 192, 288, 384]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] == 300 - 128
    assert all(b - a <= 128 - 32 for a, b in zip(starts, starts[1:]))
    assert tile_count(512, 512, 128, 32) == 25 and tile_count(64, 64, 128, 32) == 1


def test_ramps_are_positive_and_one_inside():
    w = ramp_weights(128, 32, True, True)
    assert w.min() > 0 and w.max() == 1 and (w[32:96] == 1).all()
    assert (np.diff(w[:32]) >= 0).all() and (ramp_weights(128, 32, False, False) == 1).all()


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("shape", [(200, 170), (64, 300), (1, 1)])
def test_blending_is_exact_for_identity_and_constant(scale, shape):
    """Weighted tiles / accumulated weights: an identity (or nearest x2) net gives back its input,
    a constant net a constant, whatever the tiling."""
    x = np.random.default_rng(0).random((3,) + shape, dtype=np.float32)
    spec = _spec(3, scale, pad_multiple=8)

    def ident(t):
        return np.repeat(np.repeat(t, scale, -2), scale, -1)

    want = ident(x[None])[0]
    for tile, overlap, batch in [(None, 0, 1), (64, 16, 1), (48, 40, 3), (32, 0, 2)]:
        got = restore_array(ident, spec, x, tile=tile, overlap=overlap, batch=batch)
        np.testing.assert_allclose(got, want, atol=1e-6)
        const = restore_array(lambda t: np.full_like(ident(t), 0.25), spec, x, tile=tile, overlap=overlap, batch=batch)
        np.testing.assert_allclose(const, 0.25, atol=1e-6)


def test_tiles_are_padded_to_the_multiple():
    seen = []

    def fn(t):
        seen.append(t.shape)
        return t

    restore_array(fn, _spec(pad_multiple=8), np.zeros((1, 61, 75), np.float32), tile=30, overlap=6)
    assert all(s[-1] % 8 == 0 and s[-2] % 8 == 0 for s in seen)
    assert len(seen) == tile_count(61, 75, 30, 6, 8)


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_matches_untiled_plain_conv_512(scale):
    """Translation-equivariant net, 512² image, tile 128 overlap 32: >= 50 dB vs one whole-image pass."""
    torch.manual_seed(0)
    net = PlainConv(1, 8, scale).eval()
    spec = _spec(1, scale)
    x = np.random.default_rng(1).random((1, 512, 512), dtype=np.float32)
    full = restore_array(_torch_fn(net), spec, x)
    tiled = restore_array(_torch_fn(net), spec, x, tile=128, overlap=32, batch=4)
    assert tiled.shape == (1, 512 * scale, 512 * scale)
    assert _psnr(tiled, full) >= 50


def test_tiled_converse_dncnn_official_small(need_shared):
    need_shared("weights", "conversenet", "converse_dncnn.pth")
    runner = load_runner("converse-dncnn", "torch-cpu")
    with runner:
        x = np.random.default_rng(0).random((1, 128, 128), dtype=np.float32) * 0.5 + 0.25
        full = restore_array(runner.run, runner.spec, x)
        tiled = restore_array(runner.run, runner.spec, x, tile=64, overlap=32, batch=4)
    assert _psnr(tiled, full) >= 45


@pytest.mark.slow
def test_tiled_converse_dncnn_official_512(need_shared):
    path = need_shared("data", "denoise", "Set12")
    from restormer_deploy.restormer.imageio import list_images, read_image

    big = [p for p in list_images(path) if min(read_image(p, 1).shape[:2]) >= 512]
    img = read_image(big[0], 1)[:512, :512].transpose(2, 0, 1).astype(np.float32) / 255
    assert img.shape == (1, 512, 512)
    x = img + np.random.default_rng(0).normal(0, 25 / 255, img.shape).astype(np.float32)
    with load_runner("converse-dncnn", "torch-cpu") as runner:
        full = restore_array(runner.run, runner.spec, x)
        tiled = restore_array(runner.run, runner.spec, x, tile=128, overlap=32, batch=4)
    assert _psnr(tiled, full) >= 50


def test_bad_tiling_arguments():
    spec = _spec()
    x = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        restore_array(lambda t: t, spec, x, tile=16, overlap=16)
    with pytest.raises(RuntimeError, match="returned shape"):
        restore_array(lambda t: t[..., :-1], spec, x)


def test_reported_tile_is_the_tile_that_runs():
    import dataclasses

    from restormer_deploy.restormer.presets import PRESETS
    from restormer_deploy.restormer.tiling import choose_tiling

    spec = dataclasses.replace(PRESETS["default"], pad_multiple=8, min_size=0)
    assert choose_tiling(spec, 500, 500, tile=100).tile == 104  # what restore_array runs
    spec = dataclasses.replace(spec, min_size=128)
    assert choose_tiling(spec, 500, 500, tile=100).tile == 128


def test_min_size_and_square_requirements_reach_the_model():
    import dataclasses

    from restormer_deploy.restormer.presets import PRESETS
    from restormer_deploy.restormer.tiling import restore_array

    spec = dataclasses.replace(PRESETS["default"], pad_multiple=4, min_size=40, square=True, scale=2, tile=None)
    seen = []

    def fn(t):
        seen.append(t.shape[-2:])
        return np.repeat(np.repeat(t, 2, axis=-2), 2, axis=-1)  # nearest x2: the reference is exact

    x = np.random.default_rng(0).random((3, 21, 30)).astype(np.float32)
    y = restore_array(fn, spec, x)
    assert seen == [(40, 40)]  # padded up to the minimum, then to a square
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, 2, axis=-2), 2, axis=-1))
