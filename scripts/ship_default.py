"""Ship a restore-train run as the built-in default model (preset ``default``).

    python scripts/ship_default.py [runs/default] [--which best|last] [--init-as PATH]

Writes ``restormer/assets/default.safetensors`` with FP16 weights (the FP32 file of the small
Restormer is 4.7 MB, over the 4 MB budget; loading casts back to FP32), ``default.json`` (model
spec, iteration, validation scores and the resolved training config) and the run's training log
``default_training_log.jsonl``, and prints how far the shipped model's output is from the run's
FP32 weights on a random input.

The shipped config says ``train.iterations`` = the shipped iteration: the best checkpoint of a run
is also the best of the same run stopped there (the LR schedule depends on ``lr_periods`` only), so
``restore-train --config`` with it reproduces the shipped weights. ``--init-as`` records the run's
``init_weights`` under a new name (the same bytes, e.g. after the shipped file they came from was
renamed), with its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch

from restormer_deploy.restormer.checkpoints import read_checkpoint_config, save_checkpoint
from restormer_deploy.restormer.presets import ASSETS, load_model

BUDGET_BYTES = 4 * 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, nargs="?", default=Path("runs/default"))
    ap.add_argument("--which", choices=("best", "last"), default="best")
    ap.add_argument("--init-as", type=Path, help="record the run's init_weights under this path (same bytes)")
    args = ap.parse_args()
    source = args.run / f"{args.which}.safetensors"
    net, spec = load_model(str(source))
    config = read_checkpoint_config(source)
    config["model"]["weights"] = None
    train_config = config["train_config"]
    config["source_run"] = {"file": source.name, "weights_dtype": "float16",
                            "launched_iterations": train_config["train"]["iterations"]}
    train_config["train"]["iterations"] = config["iteration"]
    train_config["resume"] = "auto"
    if args.init_as is not None:
        train_config["init_weights"] = str(args.init_as)
    init = train_config.get("init_weights")
    if init and Path(init).is_file():
        config["source_run"]["init_sha256"] = hashlib.sha256(Path(init).read_bytes()).hexdigest()
    target = ASSETS / "default.safetensors"
    save_checkpoint(target, net, config, dtype=torch.float16)
    shutil.copyfile(args.run / "log.jsonl", ASSETS / "default_training_log.jsonl")
    for path in (target, target.with_suffix(".json"), ASSETS / "default_training_log.jsonl"):
        path.chmod(0o644)
    size = target.stat().st_size
    print(f"{target}: {size / 1e6:.2f} MB, iteration {config.get('iteration')}, validation {config.get('val')}")

    shipped, _ = load_model("default")
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        err = (shipped(x) - net(x)).abs().max().item()
    print(f"max abs difference FP16-stored vs FP32 weights on a 64x64 input: {err:.2e}")
    if size > BUDGET_BYTES:
        print(f"FAILED: {size} bytes is over the 4 MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
