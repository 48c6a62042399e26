"""Pure logic of the TensorRT engine path, testable without TensorRT.

- the parser's plugin-versus-function behaviour per TensorRT version (versions: ``restormer_deploy.export.contract``);
- ONNX preprocessing for the parser (``prepare_onnx``);
- optimisation profiles from ``--min/opt/max-shape`` or ``--tile`` and their validation;
- the engine's JSON sidecar (``build_sidecar``) and the runtime check before deserialising
  (``check_runtime``).

Nothing here imports ``tensorrt``; ``restormer_deploy.engines.tensorrt.builder`` is the thin TensorRT-facing part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import onnx.inliner

from restormer_deploy.export.contract import DOMAIN, METADATA_KEYS, OPTIONAL_METADATA_KEYS, PLUGIN_OPS, parse_version, same_engine_version
from restormer_deploy.restormer.errors import BadInput
from restormer_deploy.restormer.fileio import atomic_write_text, sha256_file

# From this version the ONNX parser imports a node that has a local function as the registered plugin
# of that name, when there is one: 10.7-10.14 look in the plugin registry first (CHANGELOG 10.7; onnx-
# tensorrt ModelImporter.cpp isNodeInPluginRegistry at the 10.7 pin); 10.16 and 11.0 do so for nodes
# that carry ``plugin_namespace``, as ours do (shouldImportAsPlugin at the 10.16 / 11.0 pins).
PLUGIN_PRIORITY_VERSION = (10, 7)
MIN_VERSION = (10, 3)


class TrtError(BadInput):
    """Bad input for the TensorRT path (profile, model, sidecar): one clear message."""


class RuntimeMismatch(TrtError):
    """The engine does not fit this machine (TensorRT version, GPU, plugin library)."""


# ---------------------------------------------------------------- versions


def plugin_priority(version) -> bool:
    """True when the parser picks the plugin named by plugin_namespace over the local function."""
    return parse_version(version)[:2] >= PLUGIN_PRIORITY_VERSION


# ---------------------------------------------------------------- ONNX preprocessing


@dataclass
class PrepareReport:
    version: tuple
    inlined: list[str] = field(default_factory=list)
    stripped: list[str] = field(default_factory=list)
    plugin_nodes: int = 0
    notes: list[str] = field(default_factory=list)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def plugin_backed(node: onnx.NodeProto) -> bool:
    """A restormer node the TensorRT plugin takes: Converse2D with the plugin attributes."""
    if node.domain != DOMAIN or node.op_type not in PLUGIN_OPS:
        return False
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in _attrs(node).items()}
    return all(attrs.get(k) == v for k, v in PLUGIN_OPS[node.op_type].items())


def prepare_onnx(model: onnx.ModelProto, version, strict: bool = True) -> tuple[onnx.ModelProto, PrepareReport]:
    """The model as the TensorRT ONNX parser of ``version`` should see it (a new ModelProto).

    - Every model-local function except those of plugin-backed ops is inlined (TransposedAttention
      has no plugin and always runs as its function; inlining makes that independent of the
      parser's local-function support and of any plugin that might share the name).
    - Before 10.7 the parser expands a node that has a local function before it looks for a
      plugin, so the functions of plugin-backed ops (Converse2D) are removed; the node then falls
      back to the plugin registry. From 10.7 a registered plugin of that name wins (10.16+: for
      nodes with plugin_namespace, as ours), and the function is kept (the file stays runnable by
      ONNX Runtime). Without the plugin library loaded, 10.7+ would expand the function, whose DFT
      no TensorRT before 11.2 imports: load the library.

    ``strict``: a Converse2D node without the plugin attributes raises TrtError (the lint reports
    it instead).
    """
    v = parse_version(version)
    report = PrepareReport(v)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for node in _all_nodes(model.graph):
        if node.domain == DOMAIN and node.op_type in PLUGIN_OPS:
            if not plugin_backed(node):
                if not strict:
                    continue
                want = ", ".join(f'{k}="{val}"' for k, val in PLUGIN_OPS[node.op_type].items())
                raise TrtError(f"node {node.name or node.op_type!r} ({DOMAIN}::{node.op_type}) lacks the plugin "
                               f"attributes {want}; re-export it with restore-export, or use --converse-lowering matmul")
            report.plugin_nodes += 1
    plugin_fns = [(f.domain, f.name) for f in model.functions if f.domain == DOMAIN and f.name in PLUGIN_OPS]
    inline = [(f.domain, f.name) for f in model.functions if (f.domain, f.name) not in plugin_fns]
    if inline:
        model = onnx.inliner.inline_selected_functions(model, inline, exclude=False)
        report.inlined = sorted(f"{d}::{n}" for d, n in inline)
    if plugin_fns and v[:2] < PLUGIN_PRIORITY_VERSION:
        keep = [f for f in model.functions if (f.domain, f.name) not in plugin_fns]
        del model.functions[:]
        model.functions.extend(keep)
        report.stripped = sorted(f"{d}::{n}" for d, n in plugin_fns)
        report.notes.append(f"TensorRT {'.'.join(map(str, v))} < 10.7: removed the local functions of "
                            f"{', '.join(report.stripped)} so that the parser falls back to the plugin")
    elif plugin_fns:
        report.notes.append("TensorRT >= 10.7: the registered plugin takes the node; local function kept")
    return model, report


def onnx_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def read_onnx(path, *, load_external_data: bool = True) -> onnx.ModelProto:
    """``onnx.load`` or one TrtError naming the file (protobuf's DecodeError and the like)."""
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:
        raise TrtError(f"cannot read {path} as ONNX: {exc}") from None


# ---------------------------------------------------------------- profiles


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x256x256' -> (1, 3, 256, 256)."""
    parts = re.split(r"[x×,]", str(text).strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise TrtError(f"bad shape {text!r}: expected NxCxHxW, e.g. 1x3x256x256") from None
    if len(shape) != 4 or min(shape) < 1:
        raise TrtError(f"bad shape {text!r}: expected four positive sizes NxCxHxW")
    return shape


@dataclass
class InputInfo:
    name: str
    dims: tuple  # ints for static dims, None (or a name) for dynamic ones


def onnx_inputs(model: onnx.ModelProto) -> list[InputInfo]:
    init = {i.name for i in model.graph.initializer}
    out = []
    for i in model.graph.input:
        if i.name in init:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim)
        out.append(InputInfo(i.name, dims))
    return out


def make_profile(inputs: list[InputInfo], meta: dict, min_shape=None, opt_shape=None, max_shape=None,
                 tile: int | None = None, batch: int = 1) -> dict[str, dict[str, list[int]]]:
    """{input: {min, opt, max}} for the image input (first) and any secondary input (the blur kernel).

    Either the three shapes (NxCxHxW, strings or tuples) or ``tile`` (min: the smallest traced size,
    opt = max = batch x C x tile x tile). Checks the order min <= opt <= max, the channel count and
    the model's static dimensions; H and W must be multiples of ``pad_multiple``.
    """
    if not inputs:
        raise TrtError("the ONNX model has no inputs")
    image = inputs[0]
    channels = int(meta.get("in_channels") or (image.dims[1] if len(image.dims) > 1 and image.dims[1] else 0))
    multiple = int(meta.get("pad_multiple") or 1)
    given = [s is not None for s in (min_shape, opt_shape, max_shape)]
    if tile is not None:
        if any(given):
            raise TrtError("give either --tile or --min-shape/--opt-shape/--max-shape, not both")
        if tile < 2 * multiple or tile % multiple:
            raise TrtError(f"--tile {tile} must be a multiple of {multiple} and at least {2 * multiple}")
        lo = 2 * multiple
        shapes = [(1, channels, lo, lo), (batch, channels, tile, tile), (batch, channels, tile, tile)]
    elif all(given):
        shapes = [parse_shape(s) if isinstance(s, str) else tuple(s) for s in (min_shape, opt_shape, max_shape)]
    elif any(given):
        raise TrtError("--min-shape, --opt-shape and --max-shape go together (or use --tile N)")
    else:
        raise TrtError("an optimisation profile is needed: --tile N or --min-shape/--opt-shape/--max-shape NxCxHxW")
    names = ("min", "opt", "max")
    for name, shape in zip(names, shapes):
        if len(shape) != 4:
            raise TrtError(f"--{name}-shape {shape} must be NxCxHxW")
        if channels and shape[1] != channels:
            raise TrtError(f"--{name}-shape {'x'.join(map(str, shape))}: the model takes {channels} channels")
        for axis, (dim, want) in enumerate(zip(shape, image.dims)):
            if isinstance(want, int) and want and dim != want:
                raise TrtError(f"--{name}-shape {'x'.join(map(str, shape))}: axis {axis} of input "
                               f"{image.name!r} is fixed at {want}")
        if multiple > 1 and (shape[2] % multiple or shape[3] % multiple):
            raise TrtError(f"--{name}-shape {'x'.join(map(str, shape))}: height and width must be multiples "
                           f"of {multiple} (pad_multiple of this model; the runner pads images)")
    for axis in range(4):
        lo, mid, hi = (s[axis] for s in shapes)
        if not lo <= mid <= hi:
            raise TrtError(f"profile is not ordered on axis {'NCHW'[axis]}: min {lo}, opt {mid}, max {hi} "
                           f"(need min <= opt <= max)")
    profile = {image.name: {k: list(s) for k, s in zip(names, shapes)}}
    for extra in inputs[1:]:  # e.g. the blur kernel (B, 1, kh, kw): batch follows the image
        dims = list(extra.dims)
        if any(not isinstance(d, int) or not d for d in dims[1:]):
            raise TrtError(f"input {extra.name!r} has dynamic dimensions besides the batch: {extra.dims}; "
                           f"build from an export with a fixed {extra.name} size")
        profile[extra.name] = {k: [s[0], *dims[1:]] for k, s in zip(names, shapes)}
    return profile


def check_fixed_profile(profile: dict) -> None:
    """DLA needs static shapes: min == opt == max for every input."""
    for name, p in profile.items():
        if not p["min"] == p["opt"] == p["max"]:
            raise TrtError(f"--dla-core needs fixed shapes: input {name!r} has min {p['min']}, opt {p['opt']}, "
                           f"max {p['max']} (give the same shape three times, or --tile N with a fixed size)")


def check_shape_in_profile(name: str, shape, profile: dict) -> None:
    """An input shape outside the engine's profile -> one clear error (before enqueueing)."""
    if name not in profile:
        raise TrtError(f"the engine has no input {name!r} (inputs: {', '.join(profile)})")
    p = profile[name]
    shape = list(shape)
    if len(shape) != len(p["min"]) or any(not lo <= d <= hi for d, lo, hi in zip(shape, p["min"], p["max"])):
        raise TrtError(f"input {name!r} of shape {shape} is outside the engine's profile min {p['min']} .. "
                       f"max {p['max']}; tile the image (restore-run --tile) or rebuild with a larger --max-shape")


# ---------------------------------------------------------------- sidecar


def build_sidecar(meta: dict, tensorrt_version: str, gpu: str, compute_capability: str, profile: dict,
                  plugin_sha256: str = "", onnx_sha256: str = "", extra: dict | None = None) -> dict:
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise TrtError(f"the ONNX file lacks metadata {', '.join(missing)}: export it with restore-export")
    data = {k: meta[k] for k in METADATA_KEYS}
    data.update({k: meta[k] for k in OPTIONAL_METADATA_KEYS if k in meta})  # the recommended tiling
    data.update(tensorrt_version=str(tensorrt_version), gpu=str(gpu), compute_capability=str(compute_capability),
                profile=profile, plugin_sha256=plugin_sha256 or "", onnx_sha256=onnx_sha256 or "")
    if extra:
        data.update({k: v for k, v in extra.items() if k not in data})
    return data


def write_sidecar(engine: Path, data: dict) -> Path:
    """``<engine>.json`` beside the engine (restormer_deploy.export.contract.read_sidecar reads it back)."""
    engine = Path(engine)
    return atomic_write_text(engine.with_name(engine.name + ".json"), json.dumps(data, indent=2) + "\n")


def check_runtime(sidecar: dict, tensorrt_version: str, gpu: str, compute_capability: str,
                  plugin_libs=()) -> list[str]:
    """Raise RuntimeMismatch (one message) when the engine cannot run here; return warnings.

    Checked in this order: TensorRT version (plans are tied to the exact release), compute
    capability (another GPU generation), plugin library (present, same sha256). The same compute
    capability on a differently named GPU is a warning: TensorRT loads it, tuned for the other card.
    """
    warnings = []
    built = sidecar["tensorrt_version"]
    if not same_engine_version(built, tensorrt_version):
        raise RuntimeMismatch(f"engine built with TensorRT {built}, this machine has TensorRT {tensorrt_version}: "
                              f"rebuild the engine here (restore-export model.onnx --format trt ...)")
    if str(sidecar["compute_capability"]) != str(compute_capability):
        raise RuntimeMismatch(f"engine built for {sidecar['gpu']} (compute capability {sidecar['compute_capability']}), "
                              f"this GPU is {gpu} (compute capability {compute_capability}): rebuild the engine here")
    if sidecar["gpu"] != gpu:
        warnings.append(f"engine built on {sidecar['gpu']}, running on {gpu} (same compute capability "
                        f"{compute_capability}): it runs, tuned for the other GPU")
    want = sidecar.get("plugin_sha256") or ""
    libs = [Path(p) for p in plugin_libs or ()]
    if want:
        if not libs:
            raise RuntimeMismatch("the engine uses the Converse2D plugin: pass its library with --plugin-lib "
                                  "(build it from engines/plugins/converse2d)")
        for lib in libs:
            if not lib.is_file():
                raise RuntimeMismatch(f"plugin library {lib} not found")
        shas = {str(lib): sha256_file(lib) for lib in libs}
        if want not in shas.values():
            raise RuntimeMismatch(f"plugin library {', '.join(shas)} differs from the one the engine was built with "
                                  f"(sha256 {want[:12]}…, got {', '.join(s[:12] + '…' for s in shas.values())}); "
                                  f"use that build or rebuild the engine")
    return warnings
