"""Bad input to restore-train (cli/train.py) and to checkpoint loading (restore-run, load_model): one
`error:` line and exit 2, never a traceback (issue 16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from restormer_deploy.cli.run import app as run_app
from restormer_deploy.cli.train import app
from restormer_deploy.restormer.checkpoints import WeightsError, save_checkpoint
from restormer_deploy.restormer.presets import PRESETS, ModelSpec, build, load_model, resolve

runner = CliRunner()
TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 0, "heads": [1, 1, 1, 1]}  # crafted checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, smooth_images):
    return smooth_images(tmp_path_factory.mktemp("bad") / "clean", n=3, size=32)


@pytest.fixture(scope="module")
def config_file(tiny_config, write_config):
    """``config_file(tmp_path, data, **sections) -> path``: a one-iteration training config, written."""
    def make(tmp_path: Path, data: Path, **sections) -> Path:
        base = {"iterations": 1, "patch_sizes": [16], "batch_sizes": [1], "stage_iters": [1]}
        cfg = tiny_config(tmp_path, data, train={**base, **sections.pop("train", {})},
                          data={"mixup": 0.0, **sections.pop("data", {})}, val={"data": []}, **sections)
        return write_config(tmp_path / "c.yaml", cfg)

    return make


def _error(r, *needles: str) -> str:
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(lines) == 1 and lines[0].startswith("error:"), r.output
    for needle in needles:
        assert needle in lines[0], r.output
    return lines[0]


def _train(*args):
    return runner.invoke(app, [str(a) for a in args])


# ----------------------------------------------------------------------------- run_dir


def test_run_dir_is_a_file(tmp_path, data, config_file):
    (tmp_path / "taken").write_text("x")
    _error(_train("--config", config_file(tmp_path, data), f"run_dir={tmp_path / 'taken'}"), "taken")


def test_run_dir_parent_is_a_file(tmp_path, data, config_file):
    (tmp_path / "file").write_text("x")
    _error(_train("--config", config_file(tmp_path, data), f"run_dir={tmp_path / 'file' / 'run'}"), "file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_run_dir_unwritable(tmp_path, data, config_file):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        _error(_train("--config", config_file(tmp_path, data), f"run_dir={locked}"), "locked")
    finally:
        locked.chmod(0o700)


# ----------------------------------------------------------------------------- --config file


def test_config_is_a_png(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "c.png")
    _error(_train("--config", tmp_path / "c.png"), "c.png")


def test_config_is_empty(tmp_path):
    (tmp_path / "c.yaml").write_text("")
    _error(_train("--config", tmp_path / "c.yaml"), "c.yaml")


def test_config_is_a_list(tmp_path):
    (tmp_path / "c.yaml").write_text("- a\n- b\n")
    _error(_train("--config", tmp_path / "c.yaml"), "c.yaml")


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("override, key", [
    ("val.crop=-5", "val.crop"), ("val.crop=0", "val.crop"), ("train.lr=.inf", "train.lr"), ("train.lr=nan", "train.lr"),
    ("train.batch_sizes=[-1]", "train.batch_sizes"), ("train.iterations=-3", "train.iterations"),
    ("train.weight_decay=-1", "train.weight_decay"), ("train.betas=[1.5,0.9]", "train.betas"),
    ("val.limit=-2", "val.limit"), ("seed=-1", "seed"), ("data.sigma=[0,.inf]", "data.sigma"),
    ("model_config.dim=100000", "4096"), ("model_config.dim=x", "dim"),
])
def test_bad_values(tmp_path, data, override, key, config_file):
    _error(_train("--config", config_file(tmp_path, data), override), key)


def test_patch_bigger_than_every_image(tmp_path, data, config_file):
    line = _error(_train("--config", config_file(tmp_path, data), "train.patch_sizes=[100000]"), "100000", "32x32")
    assert not (tmp_path / "run" / "log.jsonl").exists(), line


# ----------------------------------------------------------------------------- resume state


@pytest.fixture(scope="module")
def state_file(tmp_path_factory, data, config_file):
    tmp = tmp_path_factory.mktemp("state")
    r = _train("--config", config_file(tmp, data))
    assert r.exit_code == 0, r.output
    return tmp / "run" / "last.state.pt"


def _drop(key):
    return lambda s: s.pop(key)


def _set(key, value):
    return lambda s: s.__setitem__(key, value)


def _first_tensor(s):
    name = next(iter(s["model"]))
    s["model"][name] = torch.zeros(3, 3, 3)


def _optimizer_moment(s):
    st = next(iter(s["optimizer"]["state"].values()))
    st["exp_avg"] = torch.zeros(7)


STATE_CASES = {
    "missing_optimizer": _drop("optimizer"),
    "missing_rng": _drop("rng"),
    "missing_spec_keys": _set("spec", {"name": "x"}),
    "spec_is_a_string": _set("spec", "restormer"),
    "iteration_is_a_string": _set("iteration", "five"),
    "model_is_a_list": _set("model", [1, 2]),
    "window_is_a_number": _set("window", 3),
    "tensor_wrong_shape": _first_tensor,
    "optimizer_state_wrong_shape": _optimizer_moment,
    "rng_wrong_size": lambda s: s["rng"].__setitem__("torch", torch.zeros(10, dtype=torch.uint8)),
    "rng_is_a_list": _set("rng", [1, 2]),
}


@pytest.mark.parametrize("case", STATE_CASES)
def test_resume_state_of_the_wrong_structure(tmp_path, data, state_file, case, config_file):
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    STATE_CASES[case](state)
    bad = tmp_path / f"{case}.state.pt"
    torch.save(state, bad)
    line = _error(_train("--config", config_file(tmp_path, data), f"resume={bad}"), str(bad))
    assert "does not fit this run" in line or "not a restore-train resume state" in line


# ----------------------------------------------------------------------------- checkpoint configs


def _tiny_spec() -> dict:
    return PRESETS["default"].to_json() | {"config": {**PRESETS["default"].config, **TINY}, "weights": None}


def _checkpoint(tmp_path: Path, config: str | None = None) -> Path:
    """A tiny checkpoint; ``config``: the text of the JSON config beside it."""
    spec = _tiny_spec()
    path = save_checkpoint(tmp_path / "w.safetensors", build(ModelSpec.from_json(spec)), {"model": spec, "iteration": 1})
    if config is not None:
        (tmp_path / "w.json").write_text(config)
    return path


def _spec_with(**changes) -> dict:
    return {"model": {**_tiny_spec(), **changes}}


CHECKPOINT_CASES = {
    "list": [1, 2],
    "string": "just text",
    "model_not_a_mapping": {"model": "default"},
    "scale_not_a_number": _spec_with(scale="x"),
    "channels_not_a_number": _spec_with(in_channels=[3]),
    "missing_architecture": {"model": {"name": "x", "task": "denoise"}},
    "huge_dim": _spec_with(config={**TINY, "dim": 100000}),
    "negative_dim": _spec_with(config={**TINY, "dim": -4}),
    "dim_not_a_number": _spec_with(config={**TINY, "dim": "x"}),
    "unknown_constructor_key": _spec_with(config={**TINY, "colour": 1}),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_crafted_checkpoint_config(tmp_path, case):
    config = CHECKPOINT_CASES[case]
    path = _checkpoint(tmp_path, json.dumps(config))
    with pytest.raises(WeightsError) as err:
        load_model(str(path))
    assert "w.safetensors" in str(err.value) or "w.json" in str(err.value)
    if case == "huge_dim":
        assert "4096" in str(err.value)


def test_invalid_json_in_metadata_names_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"config": "{not json"})
    with pytest.raises(WeightsError) as err:
        resolve(str(path))
    assert str(path) in str(err.value)


def test_binary_sidecar_names_the_file(tmp_path):
    path = _checkpoint(tmp_path)
    (tmp_path / "w.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(WeightsError) as err:
        resolve(str(path))
    assert "w.json" in str(err.value)


@pytest.mark.parametrize("case", ["scale_not_a_number", "list", "huge_dim"])
def test_restore_run_refuses_a_crafted_checkpoint_at_load(tmp_path, data, case):
    path = _checkpoint(tmp_path, json.dumps(CHECKPOINT_CASES[case]))
    r = runner.invoke(run_app, [str(path), str(data), "-o", str(tmp_path / "out"), "--backend", "torch"])
    _error(r, "w.")


def test_a_good_checkpoint_still_loads(tmp_path):
    _, spec = load_model(str(_checkpoint(tmp_path)))
    assert spec.config["dim"] == TINY["dim"] and spec.scale == 1
