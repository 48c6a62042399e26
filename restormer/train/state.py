"""Run-folder files: checkpoints (safetensors + JSON), the resume state and the JSON-lines log.

Every file is written atomically (temporary file + ``os.replace``): a run killed while writing
keeps the previous version. The resume state holds tensors and plain types only, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from torch import nn

from restormer.checkpoints import _atomic_write, save_checkpoint
from restormer.presets import ModelSpec
from restormer.train.config import ConfigError

STATE_FORMAT = 1


def write_text(path: Path, text: str) -> None:
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def save_weights(path: Path, net: nn.Module, spec: ModelSpec, extra: dict) -> None:
    """``path`` (.safetensors) loadable by ``load_model``: the JSON config holds the spec under ``model``."""
    save_checkpoint(path, net, {"model": spec.to_json(), **extra})


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, state: dict) -> None:
    _atomic_write(Path(path), lambda tmp: torch.save({"format": STATE_FORMAT, **state}, tmp))


def load_state(path: Path, spec: ModelSpec) -> dict:
    """The resume state at ``path``, refused when it belongs to another model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a readable resume state ({first})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or "spec" not in state:
        raise ConfigError(f"{path}: not a restore-train resume state")
    theirs = state["spec"]
    if theirs["architecture"] != spec.architecture:
        raise ConfigError(f"cannot resume from {path}: it trains a {theirs['architecture']} model ({theirs['name']}), "
                          f"this config trains {spec.architecture} ({spec.name})")
    if theirs["config"] != spec.config:
        diff = sorted(k for k in set(theirs["config"]) | set(spec.config) if theirs["config"].get(k) != spec.config.get(k))
        raise ConfigError(f"cannot resume from {path}: its model configuration differs in {', '.join(diff)}")
    return state


class Log:
    """``log.jsonl``: one JSON object per line (train records carry ``iter``)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        return out

    def truncate(self, iteration: int) -> None:
        """Drop what was logged after ``iteration`` (a resumed run logs those iterations again)."""
        keep = [r for r in self.records() if r.get("iter", 0) <= iteration]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))
