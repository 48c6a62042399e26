"""Issue 16.3: every file a command writes honours the umask, like open() and mkdir() (mkstemp's 0600
and mkdtemp's 0700 made outputs unreadable to a serving user); and writes stay atomic."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from restormer_deploy.restormer import fileio


@pytest.fixture(params=[0o022, 0o002, 0o077])
def mask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_honours_umask(tmp_path, mask):
    out = fileio.atomic_write_text(tmp_path / "a.json", "{}\n")
    assert _mode(out) == 0o666 & ~mask and out.read_text() == "{}\n"
    folder = fileio.staging_dir(tmp_path / "repo")
    assert _mode(folder) == 0o777 & ~mask and folder.name.startswith(".repo.")


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fileio.atomic_write(target, boom)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    old = tmp_path / ".x.png.abc123.tmp"
    young = tmp_path / ".x.png.def456.tmp"
    other = tmp_path / ".y.png.abc123.tmp"
    for p in (old, young, other):
        p.write_bytes(b"partial")
    past = time.time() - fileio.STALE_SECONDS - 10
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    fileio.atomic_write_bytes(tmp_path / "x.png", b"new")
    assert not old.exists() and young.exists() and other.exists()  # a live writer's and another file's stay


def test_outputs_of_the_writers_honour_umask(tmp_path, mask):
    from restormer_deploy.restormer.checkpoints import save_checkpoint
    from restormer_deploy.restormer.imageio import write_image
    from restormer_deploy.restormer.presets import PRESETS, build

    img = np.zeros((8, 8, 3), np.uint8)
    for ext in (".png", ".tif", ".jpg"):
        path = tmp_path / f"o{ext}"
        write_image(path, img)
        assert _mode(path) == 0o666 & ~mask, ext
    spec = PRESETS["converse-dncnn"]
    net = build(type(spec)(**{**spec.to_json(), "config": {**spec.config, "num_blocks": 1, "num_features": 4}}))
    ck = save_checkpoint(tmp_path / "m.safetensors", net, {"model": spec.to_json()})
    assert _mode(ck) == 0o666 & ~mask and _mode(ck.with_suffix(".json")) == 0o666 & ~mask
