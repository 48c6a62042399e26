"""Model presets (names from the shared design contract, ``../shared/DESIGN.md``) and the one place that turns a MODEL argument into a model.

A MODEL is a preset name, or one of our checkpoints (``.safetensors`` with its JSON config).
Official ``.pth`` weights are passed as ``PRESET --weights FILE.pth``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from restormer_deploy.restormer import zoo
from restormer_deploy.restormer.checkpoints import (WeightsError, config_path, load_weights, read_checkpoint_config,
                                                    read_state_dict)
from restormer_deploy.restormer.converse_arch import ConverseDnCNN, ConverseNet, ConverseSRResNet, ConverseUSRNet
from restormer_deploy.restormer.restormer_arch import Restormer
from restormer_deploy.restormer.zoo import ZOO_SUFFIXES

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "restormer": Restormer,
    "converse-dncnn": ConverseDnCNN,
    "converse-srresnet": ConverseSRResNet,
    "conversenet": ConverseNet,
    "converse-usrnet": ConverseUSRNet,
}

ASSETS = Path(__file__).resolve().parent / "assets"


def shared_dir() -> Path:
    """``$RESTORMER_SHARED``, else ``../shared`` beside the project root (it may not exist)."""
    env = os.environ.get("RESTORMER_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


@dataclass(frozen=True)
class ModelSpec:
    """Everything the tools need to know about a model besides its weights."""

    name: str
    architecture: str
    task: str
    config: dict = field(default_factory=dict)
    in_channels: int = 3
    out_channels: int = 3
    scale: int = 1
    pad_multiple: int = 1
    needs_kernel: bool = False
    weights: str | None = None  # official file under shared/weights, or a path of ours
    degrade: str | None = None  # the published evaluation protocol
    description: str = ""
    tile: int | None = None  # the recommended tile (restore-run's default); None: the whole image
    tile_overlap: int = 32
    min_size: int = 0  # the smallest height/width the model takes (inputs are padded up to it)
    square: bool = False  # the model takes square inputs only (padded to a square)
    supports_half: bool | None = None  # known to work in float16 (spandrel's word); None: not known
    max_batch: int = 0  # the most tiles one call may take (0: any; 1: an export that fixed its batch)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelSpec":
        """A spec read from a checkpoint's JSON config: keys, types and sizes checked (WeightsError)."""
        if not isinstance(data, dict):
            raise WeightsError(f"checkpoint config: the model spec must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_SPEC_TYPES))
        if unknown:
            raise WeightsError(f"checkpoint config has unknown keys {unknown}; valid: {sorted(_SPEC_TYPES)}")
        missing = [k for k in ("name", "architecture", "task") if k not in data]
        if missing:
            raise WeightsError(f"checkpoint config lacks the model's {', '.join(missing)}")
        for key, value in data.items():
            types = _SPEC_TYPES[key] if isinstance(_SPEC_TYPES[key], tuple) else (_SPEC_TYPES[key],)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise WeightsError(f"checkpoint config: model {key} must be {type_names(_SPEC_TYPES[key])}, got {value!r}")
        if data["architecture"] not in ARCHITECTURES:
            raise WeightsError(f"checkpoint config names unknown architecture {data['architecture']!r}; known: {sorted(ARCHITECTURES)}")
        for key in ("in_channels", "out_channels", "scale", "pad_multiple"):
            if key in data and not 1 <= data[key] <= MAX_SIZE:
                raise WeightsError(f"checkpoint config: model {key} must be in [1, {MAX_SIZE}], got {data[key]}")
        if not 0 <= data.get("min_size", 0) <= MAX_TILE:
            raise WeightsError(f"checkpoint config: model min_size must be in [0, {MAX_TILE}], got {data['min_size']}")
        if data.get("tile") is not None or "tile_overlap" in data:
            problem = ("tile 0 is not a tile size (null: no recommended tile)" if data.get("tile") == 0 else
                       tiling_error(data.get("tile"), data.get("tile_overlap", 32), data.get("pad_multiple", 1)))
            if problem:
                raise WeightsError(f"checkpoint config: model {problem}")
        check_model_config(data["architecture"], data.get("config", {}))
        return cls(**data)


_SPEC_TYPES = {"name": str, "architecture": str, "task": str, "config": dict, "in_channels": int, "out_channels": int,
               "scale": int, "pad_multiple": int, "needs_kernel": bool, "weights": (str, type(None)),
               "degrade": (str, type(None)), "description": str, "tile": (int, type(None)), "tile_overlap": int,
               "min_size": int, "square": bool, "supports_half": (bool, type(None)), "max_batch": int}

MAX_TILE = 16384  # the largest height/width of an exported file's profile


def min_tile(pad_multiple: int = 1) -> int:
    """The smallest sensible tile: 4 blocks of the model's padding multiple, and never under 16 pixels."""
    return max(16, 4 * pad_multiple)


def tiling_error(tile: int | None, overlap: int, pad_multiple: int = 1) -> str | None:
    """Why a tile/overlap pair is absurd (one clause naming a valid pair), or None. ``tile`` None or 0:
    the whole image. An overlap over half the tile makes every pixel run more than 4 times."""
    if overlap < 0:
        return f"tile overlap must be >= 0, got {overlap}"
    if not tile:
        return None
    smallest = min_tile(pad_multiple)
    if not smallest <= tile <= MAX_TILE:
        return f"tile {tile} is outside [{smallest}, {MAX_TILE}] for this model (pad multiple {pad_multiple}); e.g. tile 256 overlap 32"
    if 2 * overlap > tile:
        runs = f" (each pixel would run about {(tile / (tile - overlap)) ** 2:.0f} times)" if overlap < tile else ""
        return (f"overlap {overlap} is more than half of tile {tile}{runs}; e.g. tile {tile} overlap {tile // 4}, "
                f"or tile {min(max(4 * overlap, smallest), MAX_TILE)} overlap {overlap}")
    return None


# Every number of a model configuration is at most MAX_SIZE: a crafted config must not make the
# constructor allocate terabytes. Sizes are at least 1, except these counts, which may be 0.
MAX_SIZE = 4096
_MAY_BE_ZERO = {"num_refinement_blocks", "padding"}


def type_names(tp) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in (tp if isinstance(tp, tuple) else (tp,)))


_ANNOTATED = {"int": int, "float": (int, float), "bool": bool, "str": str}


def _annotation(param: inspect.Parameter) -> str:
    ann = param.annotation  # a string under `from __future__ import annotations`
    return ann if isinstance(ann, str) else getattr(ann, "__name__", "")


def check_model_config(architecture: str, config: dict, prefix: str = "model configuration ") -> None:
    """Constructor arguments of ``architecture``: known names, sizes within bounds (WeightsError, a ValueError)."""
    params = dict(inspect.signature(ARCHITECTURES[architecture].__init__).parameters)
    params.pop("self")
    unknown = sorted(set(config) - set(params))
    if unknown:
        raise WeightsError(f"unknown {prefix.strip()} key(s) {unknown} for {architecture}; valid: {', '.join(params)}")
    for key, value in config.items():
        kind = _ANNOTATED.get(_annotation(params[key]))
        if kind and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            raise WeightsError(f"{prefix}{key} must be {_annotation(params[key])}, got {value!r}")
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (bool, str)):
                continue
            lo = 0 if key in _MAY_BE_ZERO or isinstance(v, float) else 1
            if not isinstance(v, (int, float)) or not (math.isfinite(v) and lo <= v <= MAX_SIZE):
                raise WeightsError(f"{prefix}{key}={value!r}: numbers must be in [{lo}, {MAX_SIZE}]")


def _restormer(name, task, description, layer_norm, channels=3, **extra) -> ModelSpec:
    config = {"LayerNorm_type": layer_norm, "inp_channels": channels, "out_channels": channels, **extra}
    in_ch = config["inp_channels"]
    return ModelSpec(name, "restormer", task, config, in_ch, config["out_channels"], pad_multiple=8, description=description)


_CONVERSE_WEIGHTS = "weights/conversenet/"

PRESETS: dict[str, ModelSpec] = {
    p.name: p
    for p in [
        ModelSpec(
            "default", "restormer", "denoise",
            {"dim": 16, "num_blocks": [2, 2, 2, 2], "num_refinement_blocks": 2, "heads": [1, 2, 4, 8],
             "LayerNorm_type": "BiasFree"},
            pad_multiple=8, weights=str(ASSETS / "default.safetensors"), degrade="noise:25",
            description="built-in small Restormer, blind colour Gaussian denoising (trained by this project)",
            # CBSD68 sigma 25: 30.607 dB in 256 tiles, 30.598 whole (docs/TRAINING.md); memory follows the tile
            tile=256, tile_overlap=32,
        ),
        _restormer("restormer-denoise-color", "denoise", "Restormer, Gaussian colour denoising", "BiasFree"),
        _restormer("restormer-denoise-gray", "denoise", "Restormer, Gaussian grey denoising", "BiasFree", channels=1),
        _restormer("restormer-denoise-real", "denoise", "Restormer, real (SIDD) denoising", "BiasFree"),
        _restormer("restormer-derain", "derain", "Restormer, deraining", "WithBias"),
        _restormer("restormer-motion-deblur", "deblur", "Restormer, motion deblurring", "WithBias"),
        _restormer("restormer-defocus-single", "deblur", "Restormer, single-image defocus deblurring", "WithBias"),
        ModelSpec(
            "restormer-defocus-dual", "restormer", "deblur",
            {"inp_channels": 6, "out_channels": 3, "LayerNorm_type": "WithBias", "dual_pixel_task": True},
            in_channels=6, out_channels=3, pad_multiple=8,
            description="Restormer, dual-pixel defocus deblurring (left+right views, 6 channels)",
        ),
        ModelSpec(
            "converse-dncnn", "converse-dncnn", "denoise",
            {"in_channels": 1, "kernel_size": 7, "padding": 6, "padding_mode": "circular"},
            in_channels=1, out_channels=1, weights=_CONVERSE_WEIGHTS + "converse_dncnn.pth", degrade="noise:25",
            description="Converse-DnCNN, grey Gaussian denoising, sigma 25",
        ),
        ModelSpec(
            "converse-srresnet", "converse-srresnet", "sr", {"upscale": 4}, scale=4,
            weights=_CONVERSE_WEIGHTS + "converse_srresnet.pth", degrade="sr:4",
            description="Converse-SRResNet, bicubic x4 super-resolution",
        ),
        ModelSpec(
            "conversenet-deblur", "conversenet", "deblur", {},
            weights=_CONVERSE_WEIGHTS + "conversenet.pth",
            description="ConverseNet, blind deblurring (7 blocks applied 5 times)",
        ),
        ModelSpec(
            "converse-usrnet", "converse-usrnet", "deblur", {}, needs_kernel=True,
            weights=_CONVERSE_WEIGHTS + "converse_usrnet.pth",
            description="Converse-USRNet + KernelNet, non-blind deblurring (the blur kernel is a second input)",
        ),
    ]
}


def official_weights(spec: ModelSpec) -> Path | None:
    """Where the preset's default weights are, or None when it has none."""
    if not spec.weights:
        return None
    path = Path(spec.weights)
    return path if path.is_absolute() else shared_dir() / path


def _is_our_checkpoint(path: Path) -> bool:
    """A .safetensors written by this project: its JSON config beside it or in its metadata."""
    if config_path(path).is_file():
        return True
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return "config" in (f.metadata() or {})
    except Exception:  # unreadable: let the reader say why
        return True


def resolve(model: str) -> ModelSpec:
    """MODEL -> its ModelSpec (weights pointing at the file): a preset name, one of our checkpoints,
    or any checkpoint spandrel recognises (``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``;
    ``restormer_deploy.restormer.zoo``)."""
    if model in PRESETS:
        return PRESETS[model]
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in ZOO_SUFFIXES and not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if suffix == ".safetensors" and _is_our_checkpoint(path):
        config = read_checkpoint_config(path)
        try:
            spec = ModelSpec.from_json(config.get("model", config))
        except WeightsError as exc:
            raise WeightsError(f"{path}: {exc}") from None
        return dataclasses.replace(spec, weights=str(path.resolve()))
    if suffix in ZOO_SUFFIXES:
        return ModelSpec(**zoo.spec_fields(path), weights=str(path.resolve()))
    raise ValueError(f"unknown model {model!r}: not a preset ({', '.join(PRESETS)}), one of our .safetensors "
                     f"checkpoints, nor a checkpoint file ({', '.join(ZOO_SUFFIXES)})")


def build(spec: ModelSpec) -> nn.Module:
    """An untrained model of the spec's architecture and configuration."""
    try:
        return ARCHITECTURES[spec.architecture](**spec.config)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"cannot build {spec.name} ({spec.architecture}) with {spec.config}: {exc}") from None


RESTORMER_RELEASES = "https://github.com/swz30/Restormer/releases"
CONVERSENET_REPO = "https://github.com/cszn/ConverseNet"


def weights_source(spec: ModelSpec) -> str:
    """Where a preset's weights come from (docs/MODELS.md), for error messages; "" when unknown."""
    if spec.weights and Path(spec.weights).parent == ASSETS:
        return f"they ship with the package in {ASSETS}: reinstall it"
    if spec.weights and not Path(spec.weights).is_absolute():  # official weights under the shared folder
        return (f"official weights: model_zoo/{Path(spec.weights).name} of {CONVERSENET_REPO}, read from "
                f"{official_weights(spec).parent} ($RESTORMER_SHARED/{Path(spec.weights).parent})")
    if spec.architecture == "restormer" and not spec.weights:
        return f"official weights: the .pth files of {RESTORMER_RELEASES}"
    return ""


def load_model(model: str, weights: str | os.PathLike | None = None) -> tuple[nn.Module, ModelSpec]:
    """Build MODEL and load its weights (``weights`` overrides the preset's), in eval mode on the CPU."""
    spec = resolve(model)
    if zoo.is_zoo_architecture(spec.architecture):
        if weights:
            raise ValueError(f"--weights applies to a preset, not to the checkpoint {model}")
        return zoo.load_zoo(spec.weights), spec
    net = build(spec)
    path = Path(weights) if weights else official_weights(spec)
    source = weights_source(spec)
    if path is None:
        raise WeightsError(f"{spec.name} has no default weights: pass --weights FILE" + (f" ({source})" if source else ""))
    if not path.is_file():
        hint = f" ({source}; or pass --weights FILE)" if source and not weights else ""
        raise FileNotFoundError(f"weights for {spec.name} not found: {path}{hint}")
    load_weights(net, read_state_dict(path), source=str(path))
    return net.eval(), spec
