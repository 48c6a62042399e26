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

from restormer_deploy.restormer.checkpoints import _atomic_write, config_path, load_weights, save_checkpoint
from restormer_deploy.restormer.fileio import atomic_write_set
from restormer_deploy.restormer.presets import ModelSpec, type_names
from restormer_deploy.restormer.train.config import ConfigError

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


def save_checkpoint_set(weights: Path, net: nn.Module, spec: ModelSpec, extra: dict, state_path: Path,
                        state: dict) -> None:
    """The weights (``save_weights``: .safetensors and .json) and the resume state as one unit: all
    three are written to temporaries first and renamed only when every one is complete, so a full disk
    keeps the previous set whole (OSError naming the file that could not be written)."""
    from safetensors.torch import save_file

    weights = Path(weights)
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    text = json.dumps({"model": spec.to_json(), **extra}, indent=2, sort_keys=True)
    atomic_write_set({
        weights: lambda tmp: save_file(tensors, str(tmp), metadata={"config": text}),
        config_path(weights): lambda tmp: Path(tmp).write_text(text + "\n"),
        Path(state_path): lambda tmp: torch.save({"format": STATE_FORMAT, **state}, tmp),
    })


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
    _check_structure(path, state)
    theirs = state["spec"]
    if theirs["architecture"] != spec.architecture:
        raise ConfigError(f"cannot resume from {path}: it trains a {theirs['architecture']} model ({theirs['name']}), "
                          f"this config trains {spec.architecture} ({spec.name})")
    if theirs["config"] != spec.config:
        diff = sorted(k for k in set(theirs["config"]) | set(spec.config) if theirs["config"].get(k) != spec.config.get(k))
        raise ConfigError(f"cannot resume from {path}: its model configuration differs in {', '.join(diff)}")
    return state


# What the loop reads from a state, with the types it needs.
_FIELDS = {"iteration": int, "model": dict, "spec": dict, "optimizer": dict, "scheduler": dict, "rng": dict,
           "best": (dict, type(None)), "window": dict}
_PARTS = {"spec": {"name": str, "architecture": str, "config": dict}, "rng": {"torch": torch.Tensor},
          "window": {"loss": (int, float), "count": int}, "best": {"iter": int, "val_psnr": (int, float)}}


def _misfit(path: Path, why: str) -> ConfigError:
    return ConfigError(f"resume state {path} does not fit this run: {why}")


def _need_type(path: Path, mapping: dict, key: str, tp, name: str) -> None:
    if key not in mapping:
        raise _misfit(path, f"{name} is missing")
    value = mapping[key]
    if not isinstance(value, tp) or (isinstance(value, bool) and tp is int):
        raise _misfit(path, f"{name} has type {type(value).__name__}, expected {type_names(tp)}")


def _check_structure(path: Path, state: dict) -> None:
    for key, tp in _FIELDS.items():
        _need_type(path, state, key, tp, key)
    for key, parts in _PARTS.items():
        for sub, tp in parts.items():
            if state[key] is not None:
                _need_type(path, state[key], sub, tp, f"{key}.{sub}")
    if state["iteration"] < 0:
        raise _misfit(path, f"iteration {state['iteration']} is negative")
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise _misfit(path, "model holds values that are not tensors")


def _check_optimizer(opt: torch.optim.Optimizer) -> None:
    """Moments of the wrong shape load silently and fail only at the first step."""
    for param, values in opt.state.items():
        for name, v in values.items():
            if isinstance(v, torch.Tensor) and v.dim() and v.shape != param.shape:
                raise ValueError(f"optimizer {name} has shape {tuple(v.shape)}, its parameter {tuple(param.shape)}")


def restore(path: Path, state: dict, net: nn.Module, opt, sched, scaler) -> None:
    """Load a checked state into the run's model, optimiser, scheduler, scaler and RNG."""
    try:
        load_weights(net, state["model"], source="its model weights")
        opt.load_state_dict(state["optimizer"])
        _check_optimizer(opt)
        sched.load_state_dict(state["scheduler"])
        for group, lr in zip(opt.param_groups, sched.get_lr()):  # the config's schedule, if it was extended
            group["lr"] = lr
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    except KeyError as exc:
        raise _misfit(path, f"key {exc} is missing") from None
    except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise _misfit(path, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None


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
