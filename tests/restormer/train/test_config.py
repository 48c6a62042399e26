"""restormer_deploy.restormer.train.config: YAML/TOML configs, overrides, and errors that name the key."""

from __future__ import annotations


import pytest

from restormer_deploy.restormer.train import config as C
from restormer_deploy.restormer.train.config import ConfigError, load_config
from restormer_deploy.restormer.train.setup import prepare


def test_yaml_and_toml_with_overrides(tmp_path, write_config):
    y = write_config(tmp_path / "c.yaml", {"model": "converse-dncnn", "data": {"clean": ["a"], "sigma": 25},
                                           "train": {"lr": "3e-4"}})
    cfg = load_config(y, ["train.lr=1e-4", "data.sigma=[0,50]", "model_config.num_blocks=3", "val.crop=null",
                          "data.clean=[${shared}/x, skimage:]", "resume=auto"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.data.sigma == [0.0, 50.0] and cfg.model_config == {"num_blocks": 3} and cfg.val.crop is None
    assert cfg.data.clean[0].endswith("/x") and "${" not in cfg.data.clean[0] and cfg.data.clean[1] == "skimage:"
    assert cfg.resume == "auto"
    t = tmp_path / "c.toml"
    t.write_text('model = "default"\n[data]\nclean = ["a"]\nsigma = 15\n[train]\nlr = 2e-4\nbatch_sizes = [4, 2, 1, 1, 1, 1]\n')
    cfg = load_config(t)
    assert cfg.data.sigma == [15.0] and cfg.train.lr == 2e-4 and cfg.train.batch_sizes[0] == 4
    # YAML reads 3e-4 as a float here (PyYAML alone would give the string '3e-4')
    assert load_config(y).train.lr == 3e-4
    # The Restormer recipe is the default.
    d = load_config(None, ["data.clean=[a]"]).train
    assert (d.optimizer, d.lr, d.betas, d.weight_decay, d.loss, d.iterations) == ("adamw", 3e-4, [0.9, 0.999], 1e-4, "l1", 300_000)
    assert d.lr_periods == [92_000, 208_000] and d.lr_mins == [3e-4, 1e-6] and d.stage_iters[0] == 92_000


@pytest.mark.parametrize("override, needle", [
    ("train.lrr=1", "train.lrr"), ("bogus=1", "bogus"), ("data.clean.x=1", "data.clean is not a section"),
    ("train.lr=fast", "train.lr"), ("train.amp=fp8", "train.amp"), ("model=nope", "nope"),
])
def test_bad_keys_and_values(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.clean=[a]", override])
    assert needle in str(err.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.clean=[a]", "train.lrr=1"])
    assert "valid keys" in str(err.value) and "train.lr," in str(err.value) and "train.stage_iters" in str(err.value)
    assert "data.sigma" in C.valid_keys() and "checkpoint.every" in C.valid_keys()


def test_model_config_keys_checked(tmp_path):
    cfg = load_config(None, ["data.clean=[a]", "model_config.dimm=8"])
    with pytest.raises(ConfigError, match="dimm.*valid keys.*dim"):
        prepare(cfg, print)
