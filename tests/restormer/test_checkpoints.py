"""Official ConverseNet checkpoints load unchanged; weights that do not fit give one clear error."""

import pytest
import torch

from restormer_deploy.restormer.checkpoints import WeightsError, load_weights, read_state_dict, save_checkpoint
from restormer_deploy.restormer.converse_arch import ConverseBlock, LayerNorm2d
from restormer_deploy.restormer.presets import PRESETS, build, load_model, resolve

# Parameter counts published with the checkpoints (PAPERS.md).
OFFICIAL = {
    "converse-dncnn": ("converse_dncnn.pth", 796_353),
    "converse-srresnet": ("converse_srresnet.pth", 699_072),
    "conversenet-deblur": ("conversenet.pth", 243_267),
    "converse-usrnet": ("converse_usrnet.pth", 307_987),
}


@pytest.mark.parametrize("preset", OFFICIAL)
def test_official_checkpoint_loads_strict(preset, need_shared):
    name, count = OFFICIAL[preset]
    path = need_shared("weights", "conversenet", name)
    model = build(PRESETS[preset])
    assert sum(p.numel() for p in model.parameters()) == count
    sd = read_state_dict(path)
    assert set(sd) == set(model.state_dict())
    net, spec = load_model(preset)
    assert spec.name == preset
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_builds_and_runs(preset):
    spec = PRESETS[preset]
    if spec.architecture == "restormer":
        # Full-size Restormer is 26M parameters: shrink the width, keep the preset's options.
        spec = type(spec)(**{**spec.to_json(), "config": {**spec.config, "dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1}})
    model = build(spec).eval()
    x = torch.rand(1, spec.in_channels, 16, 16)
    with torch.no_grad():
        y = model(x, torch.full((1, 1, 7, 7), 1 / 49)) if spec.needs_kernel else model(x)
    assert y.shape == (1, spec.out_channels, 16 * spec.scale, 16 * spec.scale)
    assert torch.isfinite(y).all()


def test_mismatched_weights_name_the_keys(tmp_path):
    model = build(PRESETS["conversenet-deblur"])
    sd = model.state_dict()
    sd.pop("conv1.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["conv2.bias"] = torch.zeros(5)
    with pytest.raises(WeightsError) as err:
        load_weights(build(PRESETS["conversenet-deblur"]), sd, "w.pth")
    msg = str(err.value)
    assert "missing keys: conv1.weight" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "conv2.bias (5,) != (3,)" in msg
    assert "\n" not in msg


def test_params_key_and_module_prefix_are_unwrapped(tmp_path):
    model = build(PRESETS["conversenet-deblur"])
    path = tmp_path / "wrapped.pth"
    torch.save({"params": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    sd = read_state_dict(path)
    assert set(sd) == set(model.state_dict())


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weights": LayerNorm2d(3)}, path)  # a module object, not tensors: needs full unpickling
    with pytest.raises(WeightsError, match="weights_only=True"):
        read_state_dict(path)


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        read_state_dict(bad)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="unknown weights format"):
        (tmp_path / "w.npz").write_bytes(b"x")
        read_state_dict(tmp_path / "w.npz")


def test_our_checkpoint_round_trip(tmp_path):
    spec = PRESETS["conversenet-deblur"]
    model = build(spec)
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"model": spec.to_json()})
    assert not list(tmp_path.glob(".*tmp"))
    (tmp_path / "m.json").unlink()  # the config inside the safetensors metadata is enough
    net, loaded = load_model(str(path))
    assert loaded.architecture == "conversenet" and loaded.weights == str(path.resolve())
    for k, v in model.state_dict().items():
        assert torch.equal(v, net.state_dict()[k])


def test_unknown_model_and_bare_pth(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        resolve("restormer-denoise-purple")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve(str(tmp_path / "converse_dncnn.pth"))
    pytest.importorskip("spandrel")
    # an official ConverseNet state dict is no architecture spandrel knows: the message says PRESET --weights
    net = ConverseBlock(8, 8, 3, padding=2, padding_mode="circular")
    torch.save(net.state_dict(), tmp_path / "converse_block.pth")
    with pytest.raises(ValueError, match="PRESET --weights"):
        resolve(str(tmp_path / "converse_block.pth"))


def test_alpha_block_starts_as_identity():
    block = ConverseBlock(8, 8, 3, padding=2, padding_mode="circular", alpha=True)
    x = torch.rand(1, 8, 10, 10)
    assert torch.equal(block(x), x)
