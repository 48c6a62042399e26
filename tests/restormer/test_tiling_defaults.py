"""The recommended tiling stored with a model (ModelSpec.tile, checkpoint JSON, ONNX metadata, engine
sidecar), the choice of tiling per image (choose_tiling) and its memory estimate against a measured peak."""

import dataclasses
import json
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from restormer_deploy.export.contract import ContractError, spec_from_metadata
from restormer_deploy.export.stages import set_metadata
from restormer_deploy.restormer.checkpoints import WeightsError
from restormer_deploy.restormer.presets import PRESETS, ModelSpec, tiling_error
from restormer_deploy.restormer.tiling import SAFETY, buffer_bytes_per_pixel, choose_tiling, estimate_bytes

DEFAULT = PRESETS["default"]
DNCNN = PRESETS["converse-dncnn"]


def test_presets_recommend_their_tiling():
    assert (DEFAULT.tile, DEFAULT.tile_overlap) == (256, 32)
    assert all(spec.tile is None for name, spec in PRESETS.items() if name != "default")


# ----------------------------------------------------------------------------- checkpoint JSON


def test_checkpoint_json_round_trip_with_and_without_the_keys():
    spec = dataclasses.replace(DEFAULT, name="mine", tile=128, tile_overlap=16, weights=None)
    data = json.loads(json.dumps(spec.to_json()))
    assert data["tile"] == 128 and data["tile_overlap"] == 16
    assert ModelSpec.from_json(data) == spec
    old = {k: v for k, v in data.items() if k not in ("tile", "tile_overlap")}  # written before the keys existed
    loaded = ModelSpec.from_json(old)
    assert (loaded.tile, loaded.tile_overlap) == (None, 32)
    assert ModelSpec.from_json({**data, "tile": None}).tile is None


@pytest.mark.parametrize("bad, words", [
    ({"tile": "256"}, "tile must be int or null"),
    ({"tile": True}, "tile must be int or null"),
    ({"tile_overlap": 1.5}, "tile_overlap must be int"),
    ({"tile": 0}, "null"),
    ({"tile": 16}, "outside [32,"),              # pad_multiple 8: tiles from 32
    ({"tile": 64, "tile_overlap": 40}, "more than half"),
    ({"tile": 64, "tile_overlap": -1}, ">= 0"),
    ({"tile": 10**6}, "outside"),
])
def test_checkpoint_json_tiling_is_validated(bad, words):
    data = {**DEFAULT.to_json(), "weights": None, **bad}
    with pytest.raises(WeightsError, match="checkpoint config") as info:
        ModelSpec.from_json(data)
    assert words in str(info.value)


def test_checkpoint_file_round_trip(tmp_path, small_checkpoint):
    from restormer_deploy.restormer.checkpoints import read_checkpoint_config, save_checkpoint
    from restormer_deploy.restormer.presets import resolve

    path, model, spec = small_checkpoint(tmp_path, "restormer-denoise-color")
    assert resolve(str(path)).tile is None
    tiled = dataclasses.replace(spec, tile=96, tile_overlap=24)
    save_checkpoint(tmp_path / "t.safetensors", model, {"model": tiled.to_json()})
    assert read_checkpoint_config(tmp_path / "t.safetensors")["model"]["tile"] == 96
    got = resolve(str(tmp_path / "t.safetensors"))
    assert (got.tile, got.tile_overlap) == (96, 24)


# ----------------------------------------------------------------------------- ONNX metadata and sidecars


def _onnx_with_metadata(spec) -> dict:
    node = helper.make_node("Identity", ["input"], ["output"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    model = helper.make_model(graph)
    set_metadata(model, spec, "fp32", "ab" * 32)
    model = onnx.load_from_string(model.SerializeToString())
    return {p.key: p.value for p in model.metadata_props}


def test_onnx_metadata_round_trip():
    props = _onnx_with_metadata(DEFAULT)
    assert (props["tile"], props["tile_overlap"]) == ("256", "32")
    spec, _ = spec_from_metadata(props, "m.onnx")
    assert (spec.tile, spec.tile_overlap) == (256, 32)
    mine = dataclasses.replace(DNCNN, name="my-dncnn", tile=48, tile_overlap=8)
    spec, _ = spec_from_metadata(_onnx_with_metadata(mine), "m.onnx")
    assert (spec.tile, spec.tile_overlap) == (48, 8)
    props = _onnx_with_metadata(DNCNN)
    assert props["tile"] == "none" and spec_from_metadata(props, "m.onnx")[0].tile is None


def test_onnx_files_without_the_keys_still_load():
    """Files written before the keys: the preset's recommendation, none for other names."""
    old = {k: v for k, v in _onnx_with_metadata(DEFAULT).items() if k not in ("tile", "tile_overlap")}
    assert spec_from_metadata(old, "old.onnx")[0].tile == 256
    assert spec_from_metadata({**old, "preset": "mine"}, "old.onnx")[0].tile is None


@pytest.mark.parametrize("tile, overlap", [("abc", "32"), ("0", "32"), ("64", "40"), ("8", "2"), ("64", "x")])
def test_bad_tiling_metadata_is_a_contract_error(tile, overlap):
    props = {**_onnx_with_metadata(DEFAULT), "tile": tile, "tile_overlap": overlap}
    with pytest.raises(ContractError, match="m.onnx"):
        spec_from_metadata(props, "m.onnx")


def test_engine_sidecar_carries_the_tiling(tmp_path):
    from restormer_deploy.engines.backends import engine_metadata
    from restormer_deploy.engines.tensorrt import core

    meta = _onnx_with_metadata(DEFAULT)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    core.write_sidecar(engine, core.build_sidecar(meta, "10.3.0", "gpu", "8.9", {}))
    assert spec_from_metadata(engine_metadata(engine), str(engine))[0].tile == 256
    old = {k: v for k, v in meta.items() if k not in ("tile", "tile_overlap")}
    core.write_sidecar(engine, core.build_sidecar({**old, "preset": "mine"}, "10.3.0", "gpu", "8.9", {}))
    assert spec_from_metadata(engine_metadata(engine), str(engine))[0].tile is None


# ----------------------------------------------------------------------------- the choice


def test_tiling_rule():
    assert tiling_error(256, 32, 8) is None and tiling_error(16, 8, 1) is None and tiling_error(None, 99) is None
    assert "more than half" in tiling_error(20, 16, 1) and "tile 20 overlap 5" in tiling_error(20, 16, 1)
    assert "outside [32," in tiling_error(20, 4, 8) and "outside [16," in tiling_error(12, 2, 1)


def test_choice_follows_request_then_model_then_memory():
    big = 10**15
    assert choose_tiling(DEFAULT, 3000, 4000, available_bytes=big)[:3] == (256, 32, "model")
    assert choose_tiling(DEFAULT, 3000, 4000, 0, available_bytes=big)[:3] == (None, 32, "whole")
    assert choose_tiling(DEFAULT, 3000, 4000, 128, 16, available_bytes=big)[:3] == (128, 16, "requested")
    assert choose_tiling(DEFAULT, 3000, 4000, 48, available_bytes=big)[:2] == (48, 12)  # the model's 32 > half of 48
    assert choose_tiling(DNCNN, 3000, 4000, available_bytes=big) == (None, 32, "whole", None)


def test_auto_tiling_when_the_whole_image_does_not_fit():
    need = estimate_bytes(DNCNN, 3000, 4000)
    whole = choose_tiling(DNCNN, 3000, 4000, available_bytes=int(need * SAFETY) + 1)
    assert whole.tile is None and whole.notice is None
    tight = int(estimate_bytes(DNCNN, 3000, 4000, 512) * SAFETY) + 1
    auto = choose_tiling(DNCNN, 3000, 4000, available_bytes=tight)
    assert auto[:3] == (512, 32, "auto")
    assert auto.notice.startswith("notice: 4000x3000 needs ~") and "tiling 512 overlap 32" in auto.notice
    tiny = choose_tiling(DNCNN, 3000, 4000, available_bytes=1)  # nothing fits: the smallest tile
    assert tiny.tile == 16 and tiny.overlap == 4
    forced = choose_tiling(DNCNN, 3000, 4000, 0, available_bytes=tight)  # --tile 0: warned, not refused
    assert forced.tile is None and forced.notice.startswith("warning: ") and "--tile 0" in forced.notice


def test_estimate_grows_with_the_image_and_the_tile():
    assert estimate_bytes(DEFAULT, 2000, 2000) > estimate_bytes(DEFAULT, 1000, 1000) > estimate_bytes(DEFAULT, 1000, 1000, 256)
    full = PRESETS["restormer-denoise-color"]  # dim 48 against the default's 16
    assert estimate_bytes(full, 1000, 1000) > 2 * estimate_bytes(DEFAULT, 1000, 1000)
    assert estimate_bytes(DEFAULT, 1000, 1000, 256) > buffer_bytes_per_pixel(DEFAULT) * 10**6


# A forward in a fresh process: the growth of its peak RSS over its RSS before the forward, after a
# warm-up forward on a small input (libraries and kernels loaded). The kernel's peak (VmHWM) is reset
# first (clear_refs 5), so a peak from the imports or the warm-up is not counted.
_FORWARD = """
import sys, torch
from restormer_deploy.restormer.presets import PRESETS, build

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

torch.set_num_threads(1)
spec = PRESETS[sys.argv[1]]
net = build(spec).eval()
h, w = int(sys.argv[2]), int(sys.argv[3])
with torch.inference_mode():
    net(torch.rand(1, spec.in_channels, 32, 32))
    x = torch.rand(1, spec.in_channels, h, w)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss = status("VmRSS")
    y = net(x).numpy()
print(status("VmHWM") - rss)
"""


def test_estimate_covers_a_measured_forward():
    """The default model on 384x512 (whole): the estimate is at least the measured peak, and not wildly more."""
    h, w = 384, 512
    proc = subprocess.run([sys.executable, "-c", _FORWARD, "default", str(h), str(w)], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    measured = int(proc.stdout.split()[-1])
    estimate = estimate_bytes(PRESETS["default"], h, w)
    assert measured <= estimate <= 3 * measured, (estimate, measured)
