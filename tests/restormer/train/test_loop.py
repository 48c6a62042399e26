"""The training loop (restormer_deploy.restormer.train.train, and restore-train over it) end to end on a tiny Restormer:
exact resume, CLI, bad input, 2-process DDP (gloo), every family."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.cli.train import app
from restormer_deploy.restormer.presets import load_model
from restormer_deploy.restormer.train import Hooks, load_config, train

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory, smooth_images):
    return smooth_images(tmp_path_factory.mktemp("train") / "clean", n=6, size=48)


def _losses(run: Path) -> list[tuple[int, float, float]]:
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["iter"], r["loss"], r["lr"]) for r in recs if "loss" in r]


class Crash(Exception):
    pass


class CrashAt(Hooks):
    def __init__(self, it):
        self.it = it

    def record(self, rec):
        if rec.get("iter") == self.it and "loss" in rec:
            raise Crash  # the process dies after logging this iteration, before any checkpoint


def test_resume_reproduces_the_losses_exactly(tmp_path, data, tiny_config, write_config):
    # 8 iterations: a stage switch at 5, an LR restart at 3, mixup, checkpoints at 4 and 8.
    whole = load_config(write_config(tmp_path / "a.yaml", tiny_config(tmp_path / "a", data)))
    train(whole)
    cfg_path = write_config(tmp_path / "b.yaml", tiny_config(tmp_path / "b", data))
    with pytest.raises(Crash):
        train(load_config(cfg_path), CrashAt(6))
    assert [i for i, _, _ in _losses(tmp_path / "b" / "run")] == list(range(1, 7))
    result = train(load_config(cfg_path, ["resume=yes"]))
    a, b = _losses(tmp_path / "a" / "run"), _losses(tmp_path / "b" / "run")
    assert [i for i, _, _ in a] == list(range(1, 9))
    assert a == b  # bit for bit: losses and learning rates
    assert result.iteration == 8
    # the final weights load as a model of ours, with the spec of the run
    net, spec = load_model(str(tmp_path / "b" / "run" / "last.safetensors"))
    assert spec.name == "default" and spec.config["dim"] == 8
    for (k, v), w in zip(net.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(v, w), k


def test_cli_trains_and_validation_beats_the_noisy_input(tmp_path, data, tiny_config, write_config):
    cfg = tiny_config(tmp_path, data, train={"iterations": 60, "lr": 3e-3, "lr_periods": [30, 30], "lr_mins": [3e-3, 1e-4],
                                             "patch_sizes": [32], "batch_sizes": [4], "stage_iters": [60], "log_every": 10},
                      data={"sigma": [25, 25], "mixup": 0.0}, val={"every": 30}, checkpoint={"every": 30})
    r = runner.invoke(app, ["--config", str(write_config(tmp_path / "c.yaml", cfg))])
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    assert {"config.json", "log.jsonl", "last.safetensors", "last.json", "last.state.pt", "best.safetensors", "best.json"} <= {
        p.name for p in run.iterdir()}
    vals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if "val_psnr" in line]
    assert [v["iter"] for v in vals] == [30, 60]
    assert vals[-1]["val_psnr"] > vals[-1]["val_input_psnr"] + 3, vals  # denoises: > 3 dB above the noisy input
    assert json.loads((run / "best.json").read_text())["model"]["architecture"] == "restormer"
    assert "val PSNR" in r.output and "done: 60 iterations" in r.output
    # config.json is a config again
    assert load_config(run / "config.json").train.iterations == 60
    # the run folder is not overwritten without --resume; with it, a finished run has nothing to do
    r = runner.invoke(app, ["--config", str(tmp_path / "c.yaml")])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, ["--config", str(tmp_path / "c.yaml"), "--resume", "train.iterations=62"])
    assert r.exit_code == 0, r.output
    assert [i for i, _, _ in _losses(run)][-2:] == [60, 62]


def _one_error_line(r) -> str:
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.output, r.output
    return lines[0]


def test_cli_bad_input_exits_2_with_one_line(tmp_path, data, tiny_config, write_config):
    cfg_path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data))
    line = _one_error_line(runner.invoke(app, ["--config", str(cfg_path), f"data.clean=[{tmp_path / 'missing'}]"]))
    assert "missing" in line
    line = _one_error_line(runner.invoke(app, ["--config", str(cfg_path), "train.lrr=1"]))
    assert "train.lrr" in line and "train.lr," in line
    line = _one_error_line(runner.invoke(app, ["--config", str(tmp_path / "nope.yaml")]))
    assert "nope.yaml" in line
    line = _one_error_line(runner.invoke(app, ["--config", str(cfg_path), "--resume"]))
    assert "last.state.pt" in line
    # a resume state of another architecture
    other = tiny_config(tmp_path / "dn", data, model="converse-dncnn", model_config={"num_blocks": 1, "num_features": 4},
                        train={"iterations": 1, "patch_sizes": [16], "batch_sizes": [1], "stage_iters": [1]},
                        data={"mixup": 0.0}, val={"data": []})
    r = runner.invoke(app, ["--config", str(write_config(tmp_path / "dn.yaml", other))])
    assert r.exit_code == 0, r.output
    line = _one_error_line(runner.invoke(app, ["--config", str(cfg_path), f"resume={tmp_path / 'dn' / 'run' / 'last.state.pt'}"]))
    assert "converse-dncnn" in line and "restormer" in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = """
import json, os, sys
import torch
from restormer_deploy.restormer.train import load_config, train

rank = int(os.environ["RANK"])
writes = []
run_dir = os.path.realpath(sys.argv[2])

def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[1] and set(str(args[1])) & set("wax+"):
        path = args[0]
    elif event in ("os.rename", "os.replace", "tempfile.mkstemp"):
        path = str(args[-1] if event == "tempfile.mkstemp" else args[1])
    else:
        return
    if os.path.realpath(path).startswith(run_dir):
        writes.append(path)

sys.addaudithook(audit)
result = train(load_config(sys.argv[1]))
out = os.path.join(sys.argv[3], f"rank{rank}")
torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, out + ".pt")
with open(out + ".json", "w") as f:
    json.dump({"writes": writes, "iteration": result.iteration}, f)
"""


@pytest.mark.slow  # about 12-20 s: two Python processes importing torch
def test_two_process_ddp_on_gloo(tmp_path, data, repo_root, tiny_config, write_config):
    cfg = tiny_config(tmp_path, data, train={"iterations": 4, "log_every": 2, "patch_sizes": [16, 24], "batch_sizes": [2, 1],
                                             "stage_iters": [2, 2]}, val={"every": 4}, checkpoint={"every": 2})
    cfg_path = write_config(tmp_path / "c.yaml", cfg)
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(tmp_path / "worker.py"), str(cfg_path), str(tmp_path / "run"), str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert p.returncode == 0, p.stderr[-3000:]
    p0, p1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert all(torch.equal(p0[k], p1[k]) for k in p0)
    w0, w1 = json.loads((out / "rank0.json").read_text()), json.loads((out / "rank1.json").read_text())
    assert w0["iteration"] == w1["iteration"] == 4
    assert w1["writes"] == [] and len(w0["writes"]) > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["world"] == 2 and [r["batch"] for r in log if "loss" in r] == [4, 2]  # global batch: 2 processes
    assert sum("val_psnr" in r for r in log) == 1
    net, _ = load_model(str(tmp_path / "run" / "last.safetensors"))
    assert all(torch.equal(v, p0[k]) for k, v in net.state_dict().items())


FAMILIES = {
    "converse-dncnn": ({"num_blocks": 1, "num_features": 4}, {}, "noise:25"),
    "converse-srresnet": ({"num_blocks": 1, "num_features": 4}, {"degradation": "sr", "sigma": 0}, "sr:4"),
    "conversenet-deblur": ({"num_blocks": 1, "in_channels": 4, "num_iterations": 1}, {"degradation": "blur"}, "blur:K+noise:2.55"),
    "converse-usrnet": ({"num_blocks": 1, "in_channels": 4, "num_iterations": 2}, {"degradation": "blur"}, "blur:K+noise:2.55"),
    "restormer-denoise-gray": ({"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 0, "heads": [1, 1, 1, 1],
                                "inp_channels": 1, "out_channels": 1}, {}, "noise:25"),
}


@pytest.mark.parametrize("preset", FAMILIES)
def test_every_family_trains(tmp_path, data, preset, tiny_config, write_config):
    model_config, data_cfg, val_degrade = FAMILIES[preset]
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    for i, k in enumerate([np.eye(7), np.ones((7, 7))]):
        np.save(kernels / f"k{i}.npy", (k / k.sum()).astype(np.float64))
    cfg = tiny_config(tmp_path, data, model=preset, model_config=model_config,
                      data={"mixup": 0.0, "kernels": [str(kernels)], **data_cfg},
                      train={"iterations": 2, "patch_sizes": [32], "batch_sizes": [2], "stage_iters": [2]},
                      val={"every": 2, "crop": 32, "degrade": val_degrade.replace("K", str(kernels / "k1.npy"))})
    result = train(load_config(write_config(tmp_path / "c.yaml", cfg)))
    assert result.iteration == 2 and np.isfinite(result.best["val_psnr"])
    net, spec = load_model(str(tmp_path / "run" / "best.safetensors"))
    assert spec.name == preset and spec.config == {**spec.config, **model_config}


def test_shipped_configs_are_valid(repo_root):
    for path in sorted((repo_root / "configs").iterdir()):
        cfg = load_config(path)
        assert cfg.run_dir.startswith("runs/"), path
    cfg = load_config(repo_root / "configs" / "restormer-denoise-color.yaml")
    assert (cfg.train.lr_periods, cfg.train.batch_sizes, cfg.data.mixup) == ([92_000, 208_000], [8, 5, 4, 2, 1, 1], 0.5)
