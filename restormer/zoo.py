"""Any restoration checkpoint that spandrel recognises, as a ModelSpec and a PyTorch module.

spandrel (chaiNNer-org/spandrel, MIT) detects about fifty architectures from their state dicts
(``spandrel_extra_arches`` adds ten more when installed). Here a checkpoint is read without
unpickling code (``torch.load(weights_only=True)`` or safetensors), spandrel's registry detects
and builds the model, and the description the tools need comes from spandrel's descriptor:
task (its purpose), scale, channels, size requirements (minimum, multiple of, square), its
tiling advice and whether half precision is known to work.

A Restormer checkpoint stays ours: spandrel_extra_arches' detection only supplies its
configuration, and the model is built from ``restormer_deploy.restormer.restormer_arch`` (with the
custom ``TransposedAttention`` node on export).

The descriptor is loaded once per file (cached on path, size and modification time), so a command
that describes the model and then loads it reads the file once.
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from restormer_deploy.restormer.checkpoints import WeightsError

ZOO_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
PREFIX = "spandrel:"  # ModelSpec.architecture of a spandrel model: "spandrel:SwinIR"
RESTORMER_KEYS = ("inp_channels", "out_channels", "dim", "num_blocks", "num_refinement_blocks", "heads",
                  "ffn_expansion_factor", "bias", "LayerNorm_type", "dual_pixel_task")
TASKS = {"SR": "sr", "FaceSR": "face-sr", "Restoration": "restore", "Inpainting": "inpaint"}
# restore-run's tile for architectures spandrel says tile well; others run whole (or tile when
# memory says so). Output-space blending makes SR tiles exact away from their cut edges.
ZOO_TILE, ZOO_OVERLAP = 256, 32
MAX_FILE_BYTES = 4 * 2**30  # refuse checkpoints over 4 GiB before reading them


def is_zoo_architecture(architecture: str) -> bool:
    return architecture.startswith(PREFIX)


def _registry():
    import warnings

    try:
        with warnings.catch_warnings():  # spandrel's import-time torch.jit.script deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            from spandrel import MAIN_REGISTRY
    except ImportError as exc:
        raise WeightsError(f"reading third-party checkpoints needs spandrel ({exc}): pip install 'restormer-deploy[zoo]'") from None
    registry = MAIN_REGISTRY.copy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            from spandrel_extra_arches import EXTRA_REGISTRY

        registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    except ImportError:
        pass
    return registry


def registry_ids() -> list[str]:
    """Every architecture id the installed spandrel (and spandrel_extra_arches) detect, in detection order."""
    return [str(s.architecture.id) for s in _registry().architectures("insertion")]


def read_raw_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped as spandrel does, read without unpickling code."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise WeightsError(f"{path}: {size / 2**30:.1f} GiB is more than a restoration checkpoint ({MAX_FILE_BYTES // 2**30} GiB)")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "TorchScript" in str(exc) or "constants.pkl" in str(exc):
                text = "a TorchScript archive (it carries code, which is never run here)"
            raise WeightsError(f"{path}: cannot be read as plain weights with weights_only=True: {text}") from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: not a state dict (a {type(obj).__name__})")
    from spandrel import canonicalize_state_dict

    obj = canonicalize_state_dict(obj)
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: holds no tensors")
    return tensors


@functools.lru_cache(maxsize=4)
def _load(path: str, _size: int, _mtime: int):
    from spandrel import UnsupportedModelError

    registry = _registry()  # before reading: a missing spandrel is said first
    state = read_raw_state_dict(Path(path))
    try:
        descriptor = registry.load(state)
    except UnsupportedModelError:
        raise WeightsError(f"{path}: not an architecture spandrel recognises (nor a preset's weights: pass "
                           f"PRESET --weights {Path(path).name} for the official Restormer/ConverseNet files)") from None
    except Exception as exc:  # a detected architecture whose loader chokes on these tensors
        raise WeightsError(f"{path}: spandrel detected it but could not build it: {type(exc).__name__}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    if type(descriptor).__name__ != "ImageModelDescriptor":
        raise WeightsError(f"{path}: a {descriptor.architecture.name} {descriptor.purpose} model takes more than an "
                           "image (e.g. a mask): restore-* commands run image-to-image models only")
    return descriptor


def descriptor(path: str | os.PathLike):
    """spandrel's ``ImageModelDescriptor`` of a checkpoint (cached per file version), in eval mode on the CPU."""
    p = Path(path).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    st = p.stat()
    return _load(str(p), st.st_size, st.st_mtime_ns).eval()


def _plain(value):
    """A JSON-able copy of a hyperparameter value, or None (classes, functions)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else items
    return None


def hyperparameters(model: nn.Module) -> dict:
    raw = getattr(model, "hyperparameters", {}) or {}
    return {k: p for k, v in raw.items() if (p := _plain(v)) is not None or v is None}


def spec_fields(path: str | os.PathLike) -> dict:
    """The ModelSpec fields of a checkpoint (``restormer_deploy.restormer.presets.resolve`` builds the spec)."""
    d = descriptor(path)
    arch = str(d.architecture.id)
    req = d.size_requirements
    tiling = getattr(d.tiling, "name", "SUPPORTED")
    fields = dict(
        name=Path(path).stem, task=TASKS.get(d.purpose, d.purpose.lower()), in_channels=int(d.input_channels),
        out_channels=int(d.output_channels), scale=int(d.scale), pad_multiple=int(req.multiple_of),
        min_size=int(req.minimum), square=bool(req.square), supports_half=bool(d.supports_half),
        tile=ZOO_TILE if tiling == "SUPPORTED" else None, tile_overlap=ZOO_OVERLAP,
        description=f"{d.architecture.name} ({d.purpose}, x{d.scale}; spandrel tags: {', '.join(d.tags) or '-'})",
    )
    if arch == "Restormer":  # ours: the official architecture with our custom attention node
        hp = hyperparameters(d.model)
        config = {k: hp[k] for k in RESTORMER_KEYS if k in hp}
        return {**fields, "architecture": "restormer", "config": config, "tile": None}
    fields.update(architecture=PREFIX + arch, config=hyperparameters(d.model))
    fields["pad_multiple"] = max(fields["pad_multiple"], 1)
    return fields


class ZooNet(nn.Module):
    """spandrel's call of a model (extra inputs such as a noise map, tuple outputs reduced to the
    image) as a module whose forward takes (B, C, H, W) in [0, 1]: what is traced on export. No
    padding and no clamping: the tiler pads to the size requirements, the writer clamps."""

    def __init__(self, descriptor):
        super().__init__()
        self.net = descriptor.model
        self.arch = str(descriptor.architecture.id)
        self._call = getattr(descriptor, "_call_fn", None) or (lambda model, image: model(image))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch in ("DRUNet", "DnCNN") and getattr(self.net, "mode", "FDnCNN") == "FDnCNN":
            # the default noise level map of spandrel's call, for any batch size (spandrel's is batch 1)
            level = torch.zeros_like(x[:, :1]) + 15 / 255
            return self.net(torch.cat([x, level], dim=1))
        y = self._call(self.net, x)
        return y[0] if isinstance(y, (tuple, list)) else y


def load_zoo(path: str | os.PathLike) -> nn.Module:
    """The checkpoint's model, weights loaded, eval mode, CPU: a ``ZooNet``."""
    return ZooNet(descriptor(path)).eval()
