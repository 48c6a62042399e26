"""restormer_deploy.restormer.train.state: atomic resume states and weights (a killed write keeps the previous file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restormer_deploy.restormer.train import state as S


def test_atomic_writes_keep_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.state.pt"
    S.save_state(path, {"iteration": 1, "x": torch.ones(3)})
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoi")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        S.save_state(path, {"iteration": 2, "x": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real_save)
    state = torch.load(path, weights_only=True)
    assert state["iteration"] == 1 and torch.equal(state["x"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.state.pt"]  # no temporary left behind


def test_atomic_weights_keep_the_previous_file(tmp_path, monkeypatch):
    from restormer_deploy.restormer import checkpoints
    from restormer_deploy.restormer.presets import PRESETS

    spec = PRESETS["converse-dncnn"]
    net = torch.nn.Conv2d(1, 1, 1)
    S.save_weights(tmp_path / "w.safetensors", net, spec, {"iteration": 1})

    def dying(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(checkpoints, "save_file", dying)
    with pytest.raises(KeyboardInterrupt):
        S.save_weights(tmp_path / "w.safetensors", torch.nn.Conv2d(1, 1, 1), spec, {"iteration": 2})
    assert checkpoints.read_checkpoint_config(tmp_path / "w.safetensors")["iteration"] == 1
    assert torch.equal(checkpoints.read_state_dict(tmp_path / "w.safetensors")["weight"], net.weight.detach())
    assert len(list(tmp_path.iterdir())) == 2
