"""Restormer architecture: official checkpoint layout, and float64 parity with an independent re-implementation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restormer_deploy.restormer.presets import shared_dir
from restormer_deploy.restormer.restormer_arch import (
    Attention,
    LayerNorm,
    Restormer,
    crop_to,
    pad_to_multiple,
)

MANIFEST = shared_dir() / "data" / "restormer_state_dict_manifest.json"
EXPECTED_PARAMS = {"default_withbias": 26_126_644, "biasfree": 26_111_668, "dual_pixel": 26_132_548}

TINY = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 2, 4))


def _manifest_configs() -> dict:
    if not MANIFEST.is_file():
        pytest.skip(f"state-dict manifest not found at {MANIFEST} (set RESTORMER_SHARED to the shared directory)")
    return json.loads(MANIFEST.read_text())["configs"]


def _build_meta(**kwargs) -> Restormer:
    with torch.device("meta"):
        return Restormer(**kwargs)


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, so ones/zeros initialisations cannot hide a wiring mistake."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if name.endswith("temperature") or ".norm" in name else 1.0 / math.sqrt(p[0].numel())
            offset = 1.0 if name.endswith("temperature") or name.endswith("norm1.body.weight") else 0.0
            p.copy_(offset + scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# ---------------------------------------------------------------- official checkpoint layout


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_state_dict_matches_official_manifest(name):
    cfg = _manifest_configs()[name]
    model = _build_meta(**cfg["constructor"])
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    want = [(k, list(shape)) for k, shape in cfg["state_dict"]]
    assert dict(got) == dict(want)
    assert got == want, "same keys and shapes but a different order"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == cfg["parameters"] == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_random_state_dict_loads_strictly(name):
    cfg = _manifest_configs()[name]
    model = _build_meta(**cfg["constructor"]).to_empty(device="cpu")
    g = torch.Generator().manual_seed(1)
    sd = {k: torch.randn(shape, generator=g) for k, shape in cfg["state_dict"]}
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.state_dict()
    for key in (cfg["state_dict"][0][0], "latent.7.attn.temperature", cfg["state_dict"][-1][0]):
        assert torch.equal(loaded[key], sd[key])


def test_gdfn_hidden_sizes():
    model = _build_meta()
    levels = {
        "encoder_level1": 127,
        "encoder_level2": 255,
        "encoder_level3": 510,
        "latent": 1021,
        "decoder_level3": 510,
        "decoder_level2": 255,
        "decoder_level1": 255,
        "refinement": 255,
    }
    for level, hidden in levels.items():
        ffn = getattr(model, level)[0].ffn
        assert ffn.project_out.in_channels == hidden, level
        assert ffn.dwconv.groups == ffn.dwconv.in_channels == 2 * hidden, level
    assert [int(d * 2.66) for d in (48, 96, 192, 384)] == [127, 255, 510, 1021]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(LayerNorm_type="Bias_Free"),
        dict(num_blocks=(4, 6, 6)),
        dict(num_blocks=(4, 6, 6, -1)),
        dict(heads=(1, 2, 4)),
        dict(heads=(1, 2, 4, 0)),
        dict(dim=48, heads=(1, 5, 4, 8)),
        dict(dim=7, heads=(1, 1, 1, 1)),
        dict(out_channels=0),
        dict(inp_channels=0),
        dict(num_refinement_blocks=-1),
        dict(ffn_expansion_factor=0.0),
    ],
)
def test_invalid_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        _build_meta(**kwargs)


# ---------------------------------------------------------------- independent float64 references


def _ref_layernorm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                c = x[b, :, i, j]
                var = np.mean((c - c.mean()) ** 2)
                if bias is None:  # BiasFree: scaled by the std but not centred
                    out[b, :, i, j] = c / np.sqrt(var + 1e-5) * weight
                else:
                    out[b, :, i, j] = (c - c.mean()) / np.sqrt(var + 1e-5) * weight + bias
    return out


@pytest.mark.parametrize("ln_type", ["WithBias", "BiasFree"])
def test_layernorm_matches_reference(ln_type):
    torch.manual_seed(0)
    norm = LayerNorm(6, ln_type).double()
    _randomize(norm)
    x = 3.0 + 2.0 * torch.randn(2, 6, 5, 4, dtype=torch.float64)  # offset: BiasFree must not centre
    bias = norm.body.bias.detach().numpy() if ln_type == "WithBias" else None
    want = _ref_layernorm(x.numpy(), norm.body.weight.detach().numpy(), bias)
    np.testing.assert_allclose(norm(x).detach().numpy(), want, rtol=0, atol=1e-10)
    keys = {"body.weight", "body.bias"} if ln_type == "WithBias" else {"body.weight"}
    assert set(norm.state_dict()) == keys


def _ref_mdta_core(q, k, v, temperature, heads):
    b, c, h, w = q.shape
    ch = c // heads
    out = torch.empty_like(v)
    for head in range(heads):
        sl = slice(head * ch, (head + 1) * ch)
        qh, kh, vh = (t[:, sl].reshape(b, ch, h * w) for t in (q, k, v))
        qh = qh / qh.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        kh = kh / kh.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        logits = torch.einsum("bin,bjn->bij", qh, kh) * temperature[head, 0, 0]
        attn = torch.exp(logits - logits.amax(-1, keepdim=True))
        attn = attn / attn.sum(-1, keepdim=True)
        out[:, sl] = torch.einsum("bij,bjn->bin", attn, vh).reshape(b, ch, h, w)
    return out


def _ref_attention(sd, prefix, x, heads):
    c = x.shape[1]
    qkv = F.conv2d(x, sd[prefix + "qkv.weight"], sd.get(prefix + "qkv.bias"))
    qkv = F.conv2d(qkv, sd[prefix + "qkv_dwconv.weight"], sd.get(prefix + "qkv_dwconv.bias"), padding=1, groups=3 * c)
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    out = _ref_mdta_core(q, k, v, sd[prefix + "temperature"], heads)
    return F.conv2d(out, sd[prefix + "project_out.weight"], sd.get(prefix + "project_out.bias"))


def test_attention_matches_reference():
    torch.manual_seed(0)
    attn = _randomize(Attention(16, 4, bias=True).double())
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    sd = {k: v.detach() for k, v in attn.state_dict().items()}
    torch.testing.assert_close(attn(x), _ref_attention(sd, "", x, 4), rtol=0, atol=1e-10)


def _ref_norm(sd, prefix, x):
    w = sd[prefix + "body.weight"][:, None, None]
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    if prefix + "body.bias" in sd:
        return (x - mu) / torch.sqrt(var + 1e-5) * w + sd[prefix + "body.bias"][:, None, None]
    return x / torch.sqrt(var + 1e-5) * w


def _ref_ffn(sd, prefix, x):
    y = F.conv2d(x, sd[prefix + "project_in.weight"], sd.get(prefix + "project_in.bias"))
    y = F.conv2d(y, sd[prefix + "dwconv.weight"], sd.get(prefix + "dwconv.bias"), padding=1, groups=y.shape[1])
    half = y.shape[1] // 2
    x1, x2 = y[:, :half], y[:, half:]
    gelu = 0.5 * x1 * (1 + torch.erf(x1 / math.sqrt(2)))
    return F.conv2d(gelu * x2, sd[prefix + "project_out.weight"], sd.get(prefix + "project_out.bias"))


def _ref_blocks(sd, prefix, x, n, heads):
    for i in range(n):
        p = f"{prefix}.{i}."
        x = x + _ref_attention(sd, p + "attn.", _ref_norm(sd, p + "norm1.", x), heads)
        x = x + _ref_ffn(sd, p + "ffn.", _ref_norm(sd, p + "norm2.", x))
    return x


def _ref_unshuffle(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def _ref_shuffle(x):
    b, c4, h, w = x.shape
    c = c4 // 4
    return x.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


def _ref_restormer(sd, x, num_blocks, num_refinement_blocks, heads, dual_pixel):
    conv3 = lambda t, key: F.conv2d(t, sd[key + ".weight"], sd.get(key + ".bias"), padding=1)  # noqa: E731
    conv1 = lambda t, key: F.conv2d(t, sd[key + ".weight"], sd.get(key + ".bias"))  # noqa: E731
    emb = conv3(x, "patch_embed.proj")
    e1 = _ref_blocks(sd, "encoder_level1", emb, num_blocks[0], heads[0])
    e2 = _ref_blocks(sd, "encoder_level2", _ref_unshuffle(conv3(e1, "down1_2.body.0")), num_blocks[1], heads[1])
    e3 = _ref_blocks(sd, "encoder_level3", _ref_unshuffle(conv3(e2, "down2_3.body.0")), num_blocks[2], heads[2])
    lat = _ref_blocks(sd, "latent", _ref_unshuffle(conv3(e3, "down3_4.body.0")), num_blocks[3], heads[3])
    d3 = conv1(torch.cat([_ref_shuffle(conv3(lat, "up4_3.body.0")), e3], 1), "reduce_chan_level3")
    d3 = _ref_blocks(sd, "decoder_level3", d3, num_blocks[2], heads[2])
    d2 = conv1(torch.cat([_ref_shuffle(conv3(d3, "up3_2.body.0")), e2], 1), "reduce_chan_level2")
    d2 = _ref_blocks(sd, "decoder_level2", d2, num_blocks[1], heads[1])
    d1 = torch.cat([_ref_shuffle(conv3(d2, "up2_1.body.0")), e1], 1)
    d1 = _ref_blocks(sd, "decoder_level1", d1, num_blocks[0], heads[0])
    d1 = _ref_blocks(sd, "refinement", d1, num_refinement_blocks, heads[0])
    if dual_pixel:
        return conv3(d1 + conv1(emb, "skip_conv"), "output")
    return conv3(d1, "output") + x


TINY_VARIANTS = {
    "withbias": dict(LayerNorm_type="WithBias", bias=False),
    "biasfree_bias": dict(LayerNorm_type="BiasFree", bias=True),
    "dual_pixel": dict(LayerNorm_type="WithBias", bias=True, inp_channels=6, out_channels=3, dual_pixel_task=True),
}


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_tiny_restormer_matches_reference(variant):
    kwargs = {**TINY, **TINY_VARIANTS[variant]}
    torch.manual_seed(0)
    model = _randomize(Restormer(**kwargs).double(), seed=2)
    x = torch.randn(1, kwargs.get("inp_channels", 3), 16, 16, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, 16, 16)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    want = _ref_restormer(
        sd, x, TINY["num_blocks"], TINY["num_refinement_blocks"], TINY["heads"], kwargs.get("dual_pixel_task", False)
    )
    torch.testing.assert_close(y, want, rtol=0, atol=1e-10)


def test_zero_output_conv_gives_identity_or_bias():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    model = _randomize(Restormer(**TINY).double())
    with torch.no_grad():
        model.output.weight.zero_()
        assert torch.equal(model(x), x)  # the image residual is the whole output

    dp = _randomize(Restormer(**TINY, inp_channels=6, out_channels=2, bias=True, dual_pixel_task=True).double())
    x6 = torch.randn(1, 6, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        dp.output.weight.zero_()
        y = dp(x6)
    assert y.shape == (1, 2, 16, 16)
    # No image residual in the dual-pixel variant: only the output conv's bias is left.
    torch.testing.assert_close(y, dp.output.bias.detach()[None, :, None, None].expand_as(y), rtol=0, atol=0)


# ---------------------------------------------------------------- padding helpers


def test_pad_to_multiple_reflects_and_round_trips():
    x = torch.randn(2, 3, 17, 23)
    padded, (h, w) = pad_to_multiple(x, 8)
    assert padded.shape == (2, 3, 24, 24) and (h, w) == (17, 23)
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 7), (0, 1)), mode="reflect")
    np.testing.assert_array_equal(padded.numpy(), want)
    assert torch.equal(padded[..., 17, :23], x[..., 15, :])  # reflection excludes the edge row
    assert torch.equal(crop_to(padded, h, w), x)


def test_pad_to_multiple_noop_and_tiny_images():
    x = torch.randn(1, 3, 16, 24)
    padded, size = pad_to_multiple(x)
    assert padded is x and size == (16, 24)

    tiny = torch.randn(1, 1, 3, 5)  # pads of 5 and 3 rows/cols: too many to reflect
    padded, size = pad_to_multiple(tiny, 8)
    assert padded.shape == (1, 1, 8, 8) and size == (3, 5)
    want = np.pad(tiny.numpy(), ((0, 0), (0, 0), (0, 5), (0, 3)), mode="edge")
    np.testing.assert_array_equal(padded.numpy(), want)
    assert torch.equal(crop_to(padded, *size), tiny)


def test_padded_odd_image_through_tiny_model():
    model = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 13, 19)
    padded, (h, w) = pad_to_multiple(x, 8)
    with torch.no_grad():
        y = crop_to(model(padded), h, w)
    assert y.shape == x.shape and torch.isfinite(y).all()
