"""restore-train configuration: nested dataclasses read from YAML/TOML/JSON, dotted overrides, checks.

A config file has the top-level keys of :class:`Config` and the sections ``data``, ``train``,
``val`` and ``checkpoint``. ``${shared}`` in any string is replaced by the shared data folder
(``restormer_deploy.restormer.presets.shared_dir()``). Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from restormer_deploy.restormer.errors import BadInput
from restormer_deploy.restormer.presets import shared_dir


class ConfigError(BadInput):
    """A config that cannot be trained: unknown key, wrong type or inconsistent values."""


@dataclass
class DataConfig:
    clean: list[str] = field(default_factory=list)  # folders / image files / skimage:[NAME,...] of clean images
    lq: list[str] = field(default_factory=list)  # paired data: degraded folders ...
    gt: list[str] = field(default_factory=list)  # ... and their ground-truth folders, matched by file name
    degradation: str = "noise"  # noise | blur | sr (synthetic, for clean images)
    sigma: list[float] = field(default_factory=lambda: [0.0, 50.0])  # noise sigma (0-255): fixed, or uniform in [lo, hi]
    kernels: list[str] = field(default_factory=list)  # blur kernel files (.npy/.png/.mat), FILE:INDEX for one
    grey_to_rgb: bool = False  # replicate grey images for colour models (else they are skipped)
    augment: bool = True  # the 8 flip/rotate modes
    mixup: float = 0.0  # probability of mixup per batch
    mixup_beta: float = 1.2
    workers: int = 0  # DataLoader worker processes
    cache: bool = True  # keep decoded images in memory


@dataclass
class TrainConfig:
    iterations: int = 300_000
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1e-4
    lr_periods: list[int] = field(default_factory=lambda: [92_000, 208_000])  # cosine annealing with restarts
    lr_mins: list[float] = field(default_factory=lambda: [3e-4, 1e-6])
    lr_restart_weights: list[float] = field(default_factory=lambda: [1.0, 1.0])
    loss: str = "l1"  # l1 | charbonnier | mse
    charbonnier_eps: float = 1e-3
    grad_clip: float | None = 0.01  # max gradient norm; null: no clipping
    patch_sizes: list[int] = field(default_factory=lambda: [128, 160, 192, 256, 320, 384])  # progressive learning
    batch_sizes: list[int] = field(default_factory=lambda: [8, 5, 4, 2, 1, 1])  # per process (GPU)
    stage_iters: list[int] = field(default_factory=lambda: [92_000, 64_000, 48_000, 36_000, 36_000, 24_000])
    amp: str = "none"  # none | bf16 | fp16 (fp16 on CUDA only)
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 100


@dataclass
class ValConfig:
    data: list[str] = field(default_factory=list)  # folders / image files / skimage:NAMES, held out of training
    lq: list[str] = field(default_factory=list)  # or paired folders
    gt: list[str] = field(default_factory=list)
    degrade: str | None = None  # restore-eval SPEC; default from data (noise: mid sigma, sr: sr:SCALE)
    every: int = 5000
    crop: int | None = None  # central crop of every validation image
    limit: int | None = None
    seed: int = 0


@dataclass
class CheckpointConfig:
    every: int = 5000
    save_best: bool = True


@dataclass
class Config:
    model: str = "default"  # preset name
    model_config: dict = field(default_factory=dict)  # overrides of the preset's constructor arguments
    init_weights: str | None = None  # start from these weights (.safetensors or .pth), or a preset's (its name)
    run_dir: str = "runs/train"
    seed: int = 0
    resume: str = "no"  # no | yes | auto | PATH of a .state.pt
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: ValConfig = field(default_factory=ValConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- reading


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``3e-4`` as a string; accept it as a float, as YAML 1.2 and TOML do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_value(text: str):
    """The value of a ``key=value`` override, as YAML (``[0,50]``, ``1e-4``, ``null``, ``true``)."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else None
    except yaml.YAMLError:
        return text


def read_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text config file (expected YAML, TOML or JSON)") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'YAML'} ({first})") from None
    if data is None or data == {}:
        raise ConfigError(f"{path}: empty config file (expected a mapping of config keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def valid_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += valid_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def apply_override(raw: dict, item: str) -> None:
    key, eq, text = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"bad override {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"bad override {item!r}: {'.'.join(parts[:i + 1])} is not a section")
    node[parts[-1]] = parse_value(text.replace("${shared}", str(shared_dir())))


def _substitute(value, shared: str):
    if isinstance(value, str):
        out = value.replace("${shared}", shared)
        left = re.search(r"\$\{[^}]*\}", out)
        if left:
            raise ConfigError(f"unknown substitution {left.group(0)} in {value!r} (only ${{shared}} is defined)")
        return out
    if isinstance(value, list):
        return [_substitute(v, shared) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, shared) for k, v in value.items()}
    return value


def _coerce(value, tp, key: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    bad = ConfigError(f"config key {key}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, key + ".")
    if origin is list:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items)]
    if tp is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise ConfigError(f"config key {key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, bool) and key == "resume":
            return "yes" if value else "no"
        if isinstance(value, dict) and len(value) == 1 and None in value.values():  # YAML read `skimage:` as a mapping
            return f"{next(iter(value))}:"
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad
        return str(value)
    raise bad


def from_dict(cls, raw: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            where = f"in {prefix.rstrip('.')}" if prefix else "at the top level"
            valid = ", ".join(prefix + n for n in names)
            raise ConfigError(f"unknown config key '{prefix}{key}'; valid keys {where}: {valid}")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in raw.items()})


def load_config(path=None, overrides=()) -> Config:
    """Read a config file (or the defaults when ``path`` is None), apply ``KEY=VALUE`` overrides, check it."""
    raw = read_file(path) if path else {}
    for item in overrides:
        apply_override(raw, item)
    cfg = from_dict(Config, _substitute(raw, str(shared_dir())))
    check(cfg)
    cfg.init_weights = resolve_init_weights(cfg.init_weights)
    return cfg


def resolve_init_weights(value: str | None) -> str | None:
    """``init_weights``: a weights file as given, or a preset name -> the path of its shipped or
    official weights (a file of that name wins). A path is checked when training starts (relative
    to the working directory); a bare name that is no preset is refused here."""
    from restormer_deploy.restormer.presets import PRESETS, official_weights, weights_source

    if not value or Path(value).is_file():
        return value
    if value not in PRESETS and (Path(value).suffix or re.search(r"[/\\]", value)):
        return value  # a path: read_state_dict names it if it is missing
    if value in PRESETS:
        spec = PRESETS[value]
        path = official_weights(spec)
        if path is None:
            raise ConfigError(f"init_weights={value}: the preset has no weights file of its own; give the path of "
                              f"its weights as init_weights ({weights_source(spec)})")
        if not path.is_file():
            raise ConfigError(f"init_weights={value}: the preset's weights {path} are not there ({weights_source(spec)})")
        return str(path)
    with_weights = [name for name, spec in PRESETS.items() if spec.weights]
    raise ConfigError(f"init_weights={value}: not a preset name nor a weights file (.safetensors, .pth) "
                      f"(presets with weights: {', '.join(with_weights)})")


# --------------------------------------------------------------------------- checks


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check(cfg: Config) -> None:
    """Consistency checks that need neither the data nor the model."""
    from restormer_deploy.restormer.presets import PRESETS

    _need(cfg.model in PRESETS, f"unknown model {cfg.model!r}; presets: {', '.join(PRESETS)}")
    _need(cfg.resume in ("no", "yes", "auto") or cfg.resume.endswith(".pt"),
          f"resume must be no, yes, auto or a .state.pt file, got {cfg.resume!r}")
    d, t, v = cfg.data, cfg.train, cfg.val
    _need(bool(d.clean) != bool(d.gt), "give data.clean (synthetic degradation) or data.lq + data.gt (pairs), not both")
    _need(len(d.lq) == len(d.gt), "data.lq and data.gt need the same number of folders")
    _need(d.degradation in ("noise", "blur", "sr"), f"data.degradation must be noise, blur or sr, got {d.degradation!r}")
    _need(len(d.sigma) in (1, 2) and 0 <= min(d.sigma) and d.sigma[0] <= d.sigma[-1],
          f"data.sigma must be a number or [lo, hi] with 0 <= lo <= hi, got {d.sigma}")
    _need(d.degradation != "blur" or bool(d.kernels) or not d.clean, "data.degradation=blur needs data.kernels")
    _need(0 <= d.mixup <= 1 and d.mixup_beta > 0, "data.mixup must be a probability and data.mixup_beta > 0")
    _need(d.workers >= 0, "data.workers must be >= 0")
    _need(t.optimizer in ("adamw", "adam"), f"train.optimizer must be adamw or adam, got {t.optimizer!r}")
    _need(t.loss in ("l1", "charbonnier", "mse"), f"train.loss must be l1, charbonnier or mse, got {t.loss!r}")
    _need(t.amp in ("none", "bf16", "fp16"), f"train.amp must be none, bf16 or fp16, got {t.amp!r}")
    _need(t.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {t.device!r}")
    _need(t.iterations > 0 and t.lr > 0 and t.log_every > 0, "train.iterations, train.lr and train.log_every must be positive")
    _need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), f"train.betas needs two values in [0, 1), got {t.betas}")
    _need(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    _need(t.charbonnier_eps > 0, f"train.charbonnier_eps must be positive, got {t.charbonnier_eps}")
    _need(all(m >= 0 for m in t.lr_mins) and all(w >= 0 for w in t.lr_restart_weights),
          "train.lr_mins and train.lr_restart_weights must be >= 0")
    _need(len(t.lr_periods) == len(t.lr_mins) == len(t.lr_restart_weights) and all(p > 0 for p in t.lr_periods),
          "train.lr_periods, train.lr_mins and train.lr_restart_weights need the same length, periods > 0")
    _need(len(t.patch_sizes) == len(t.batch_sizes) == len(t.stage_iters) > 0,
          "train.patch_sizes, train.batch_sizes and train.stage_iters need the same (non-zero) length")
    _need(all(n > 0 for n in t.patch_sizes + t.batch_sizes + t.stage_iters),
          "train.patch_sizes, train.batch_sizes and train.stage_iters must be positive")
    _need(t.grad_clip is None or t.grad_clip > 0, "train.grad_clip must be positive or null")
    _need(v.every > 0 and cfg.checkpoint.every > 0, "val.every and checkpoint.every must be positive")
    _need(v.crop is None or v.crop > 0, f"val.crop must be positive or null, got {v.crop}")
    _need(v.limit is None or v.limit > 0, f"val.limit must be positive or null, got {v.limit}")
    for key, seed in (("seed", cfg.seed), ("val.seed", v.seed)):
        _need(0 <= seed < 2**63, f"{key} must be in [0, 2**63), got {seed}")
    _need(len(v.lq) == len(v.gt) and not (v.data and v.gt), "val: give val.data or val.lq + val.gt")
