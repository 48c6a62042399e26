"""Reading and writing weights.

Official ``.pth`` files are untrusted: they load with ``torch.load(weights_only=True)``. Our own
checkpoints are safetensors with the model's JSON config in the file's metadata and beside it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from restormer_deploy.restormer.errors import BadInput
from restormer_deploy.restormer.fileio import atomic_write


class WeightsError(BadInput):
    """Weights that cannot be read, or that do not fit the model."""


MAX_CONFIG_BYTES = 16 << 20  # a checkpoint's JSON config is a few KB


def _check_zip_sizes(path: Path) -> None:
    """A zip ``.pth`` (torch.save's format) whose members declare far more bytes than the file holds
    (torch stores them uncompressed: a zip bomb) is refused from its directory, before any is unpacked."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return  # a legacy pickle: torch.load says what is wrong
        with zipfile.ZipFile(path) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # torch.load reports the damage
    size = path.stat().st_size
    if unpacked > 2 * size + (64 << 20):
        raise WeightsError(f"{path}: its zip members declare {unpacked} bytes unpacked from a {size}-byte file "
                           f"(torch.save stores them uncompressed): refused before loading")


def _check_safetensors_header(path: Path) -> None:
    """The 8-byte header length of a safetensors file must fit the file (checked before reading)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    declared = int.from_bytes(head, "little") if len(head) == 8 else None
    if declared is None or declared > size - 8 or declared > (100 << 20):
        raise WeightsError(f"{path}: not a readable safetensors file (its header declares "
                           f"{declared if declared is not None else 'no'} bytes in a {size}-byte file)")


def _loads_json(text, source: Path):
    """json.loads, with nesting too deep for the parser one WeightsError naming ``source``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise WeightsError(f"{source}: invalid JSON config (nested too deeply)") from None


def _unwrap(obj, source: Path) -> dict[str, torch.Tensor]:
    # Training frameworks wrap the state_dict: BasicSR uses 'params' (and 'params_ema'), others 'state_dict'.
    for key in ("params", "params_ema", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{source}: not a state_dict (a mapping of parameter names to tensors)")
    keys = list(obj)
    if keys and all(k.startswith("module.") for k in keys):  # saved from DataParallel/DDP
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.ckpt`` (weights_only) or ``.safetensors`` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        _check_safetensors_header(path)
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if suffix in (".pth", ".pt", ".ckpt", ".bin"):
        _check_zip_sizes(path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"{path}: cannot be loaded as plain weights with weights_only=True ({first})") from None
        return _unwrap(obj, path)
    raise WeightsError(f"{path}: unknown weights format {suffix!r} (expected .pth, .pt, .ckpt or .safetensors)")


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "weights") -> nn.Module:
    """Strict load; a mismatch raises one WeightsError that names the offending keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"mis-shaped keys: {_listing(shapes)}")
    if problems:
        raise WeightsError(f"{source} do not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
    return model


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: write(str(tmp)))


def config_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_checkpoint(path, model: nn.Module, config: dict, dtype: torch.dtype | None = None) -> Path:
    """Write ``path`` (.safetensors, config in its metadata) and the config as JSON beside it, atomically.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors in that type, to ship small
    files; loading casts them back to the model's own type."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoints are saved as .safetensors, got {path}")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    text = json.dumps(config, indent=2, sort_keys=True)
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"config": text}))
    _atomic_write(config_path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def read_checkpoint_config(path) -> dict:
    """The JSON config of one of our checkpoints: beside it, or else inside the safetensors metadata."""
    path = Path(path)
    side = config_path(path)
    if side.is_file():
        try:
            if side.stat().st_size > MAX_CONFIG_BYTES:
                raise WeightsError(f"{side}: a {side.stat().st_size}-byte JSON config, over {MAX_CONFIG_BYTES} bytes")
            return _config_object(_loads_json(side.read_bytes().decode("utf-8"), side), side)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{side}: invalid JSON config ({exc})") from None
        except OSError as exc:
            raise WeightsError(f"{side}: cannot read the JSON config ({exc.strerror or exc})") from None
    try:
        _check_safetensors_header(path)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if "config" not in meta:
        raise WeightsError(f"{path}: no JSON config beside it ({side.name}) or in its metadata")
    try:
        return _config_object(_loads_json(meta["config"], path), path)
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: invalid JSON config in its metadata ({exc})") from None


def _config_object(config, source: Path) -> dict:
    if not isinstance(config, dict):
        raise WeightsError(f"{source}: the checkpoint config must be a JSON object, got {type(config).__name__}")
    return config
