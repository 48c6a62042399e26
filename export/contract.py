"""What several parts of the toolkit must agree on (``../shared/DESIGN.md``), in one place.

The ONNX domain of the custom nodes and the attributes of the TensorRT plugin, the metadata keys
every exported file carries, the keys of a TensorRT engine's JSON sidecar, the parity floors, the
one sidecar reader, the one TensorRT version comparison, and the model spec read back from metadata.
Nothing here imports a runtime.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from restormer_deploy.restormer.errors import BadInput
from restormer_deploy.restormer.presets import PRESETS, ModelSpec, tiling_error

# --------------------------------------------------------------------------- ONNX

DOMAIN = "restormer"      # custom nodes: restormer::TransposedAttention, restormer::Converse2D
OPSET_VERSION = 1          # the version of that domain
# Custom nodes backed by a TensorRT plugin (engines/plugins/): the attributes that name the plugin.
PLUGIN_OPS = {"Converse2D": {"plugin_namespace": "restormer", "plugin_version": "1"}}

# metadata_props of every exported file, in this order
METADATA_KEYS = ("architecture", "preset", "task", "scale", "in_channels", "out_channels", "value_range",
                 "pad_multiple", "precision", "tool_version", "source_sha256")
# optional metadata: the model's recommended tiling ("none": whole images). Files written before it
# was added lack it and get their preset's.
OPTIONAL_METADATA_KEYS = ("tile", "tile_overlap", "min_size", "square", "max_batch")
# optional records of how the file was made: the exporter of a third-party model, the FP32 islands of an
# FP16 graph (JSON: node -> why) and its parity under FP16 arithmetic (restormer_deploy.export.islands)
RECORD_METADATA_KEYS = ("exporter", "fp32_islands", "psnr_fp16_arithmetic")
SPEC_KEYS = ("in_channels", "out_channels", "scale", "pad_multiple")  # the integers a runner needs
# the sidecar of a TensorRT engine: the metadata keys plus these
ENGINE_KEYS = ("tensorrt_version", "gpu", "compute_capability", "profile", "plugin_sha256", "onnx_sha256")

# --------------------------------------------------------------------------- parity floors

# PSNR (peak 1, outputs clamped to [0, 1]) of a file's output against PyTorch FP32 on the CPU:
# the export's self-check and restore-parity.
PARITY_FLOORS = {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}
# The same for a TensorRT engine on its GPU (verify-trt): lower, because the builder picks other
# kernels (and FP16 accumulation orders) than PyTorch; TF32 stays off.
ENGINE_PARITY_FLOORS = {"fp32": 50.0, "fp16": 40.0, "int8": 30.0}
# The most task PSNR (against the ground truth) a lower precision may lose, in dB (restore-parity).
MAX_TASK_DROP_DB = 0.3


class ContractError(BadInput):
    """A file that does not follow the contract (metadata, sidecar, version string)."""


# --------------------------------------------------------------------------- TensorRT versions


def parse_version(text: str | tuple) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); '11' -> (11,). Raises ContractError on anything else."""
    if isinstance(text, tuple):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)*)(?:[.+-].*)?\s*", str(text))
    if not m:
        raise ContractError(f"not a TensorRT version: {text!r} (expected e.g. 10.3 or 10.13.2.6)")
    return tuple(int(p) for p in m.group(1).split("."))


def same_engine_version(built: str, installed: str) -> bool:
    """TensorRT plans are tied to the exact release (major.minor.patch[.build]) that wrote them;
    compared as numbers on the parts both strings give ('10.3' matches '10.3.0.26')."""
    a, b = parse_version(built), parse_version(installed)
    n = min(len(a), len(b), 4)
    return a[:n] == b[:n]


# --------------------------------------------------------------------------- the engine sidecar


def sidecar_path(engine: str | os.PathLike) -> Path:
    """``model.engine.json`` (what restore-export writes); ``model.json`` is accepted too."""
    engine = Path(engine)
    if engine.suffix == ".json":
        return engine
    appended = engine.with_name(engine.name + ".json")
    if appended.is_file() or not engine.with_suffix(".json").is_file():
        return appended
    return engine.with_suffix(".json")


def read_sidecar(engine: str | os.PathLike, required: tuple[str, ...] = (*METADATA_KEYS, *ENGINE_KEYS)) -> dict:
    """The JSON written beside an engine (an engine path or the sidecar's own path): ContractError
    when it is missing, not a JSON object, or lacks one of ``required``."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise ContractError(f"no sidecar {path}: an engine needs the JSON written beside it by "
                            f"restore-export --format trt")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"sidecar {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"sidecar {path}: expected a JSON object")
    missing = [k for k in required if k not in data]
    if missing:
        raise ContractError(f"sidecar {path} lacks {', '.join(missing)}")
    return data


# --------------------------------------------------------------------------- model spec


def spec_from_metadata(props: dict, source: str) -> tuple[ModelSpec, str]:
    """(ModelSpec, precision) from an ONNX file's metadata_props or an engine sidecar."""
    missing = [k for k in SPEC_KEYS if k not in props]
    if missing:
        raise ContractError(f"{source}: metadata lacks {missing}; was it written by restore-export?")
    try:
        ints = {k: int(props[k]) for k in SPEC_KEYS}
    except (TypeError, ValueError) as exc:
        raise ContractError(f"{source}: bad metadata value ({exc})") from None
    preset = str(props.get("preset", ""))
    base = PRESETS.get(preset)
    arch = str(props.get("architecture", base.architecture if base else "unknown"))
    needs_kernel = base.needs_kernel if base else arch == "converse-usrnet"
    spec = ModelSpec(
        name=preset or Path(source).stem, architecture=arch, task=str(props.get("task", "")),
        config=dict(base.config) if base else {}, needs_kernel=needs_kernel, weights=None,
        degrade=base.degrade if base else None, **ints, **_tiling_from_metadata(props, source, base, ints["pad_multiple"]),
        **_size_from_metadata(props, source),
    )
    return spec, str(props.get("precision", "fp32"))


def _size_from_metadata(props: dict, source: str) -> dict:
    try:
        min_size = int(str(props.get("min_size", "0")))
    except ValueError:
        raise ContractError(f"{source}: bad min_size metadata {props.get('min_size')!r} (an integer)") from None
    if not 0 <= min_size <= 16384:
        raise ContractError(f"{source}: metadata min_size {min_size} is outside [0, 16384]")
    square = str(props.get("square", "0")).strip()
    if square not in ("0", "1"):
        raise ContractError(f"{source}: bad square metadata {square!r} (0 or 1)")
    try:
        max_batch = int(str(props.get("max_batch", "0")))
    except ValueError:
        raise ContractError(f"{source}: bad max_batch metadata {props.get('max_batch')!r} (an integer)") from None
    return {"min_size": min_size, "square": square == "1", "max_batch": max(max_batch, 0)}


def tiling_metadata(spec: ModelSpec) -> dict[str, str]:
    """The optional metadata of the spec's recommended tiling (``OPTIONAL_METADATA_KEYS``)."""
    return {"tile": str(spec.tile) if spec.tile else "none", "tile_overlap": str(spec.tile_overlap),
            "min_size": str(spec.min_size), "square": "1" if spec.square else "0", "max_batch": str(spec.max_batch)}


def _tiling_from_metadata(props: dict, source: str, base: ModelSpec | None, pad_multiple: int) -> dict:
    if "tile" not in props:  # written before the key existed
        return {"tile": base.tile, "tile_overlap": base.tile_overlap} if base else {}
    text, overlap_text = str(props["tile"]).strip().lower(), str(props.get("tile_overlap", "32"))
    try:
        tile, overlap = (None if text == "none" else int(text)), int(overlap_text)
    except ValueError:
        raise ContractError(f"{source}: bad tile metadata {props['tile']!r}/{overlap_text!r} (an integer or none)") from None
    problem = "tile 0 is not a tile size" if tile == 0 else tiling_error(tile, overlap, pad_multiple)
    if problem:
        raise ContractError(f"{source}: metadata {problem}")
    return {"tile": tile, "tile_overlap": overlap}
