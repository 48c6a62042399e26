"""Build a TensorRT engine from one of our ONNX files (FP32, FP16 or INT8 Q/DQ), plus its JSON sidecar.

Thin TensorRT-facing layer over ``restormer_deploy.engines.tensorrt.core`` (all pure logic lives there). ``tensorrt``
is imported lazily, inside the functions, so that importing this module never needs it.

- strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; ignored, always on, in
  TensorRT 11): the ONNX types decide the precision, no builder precision flags, no calibrator;
- one optimisation profile from --min/--opt/--max-shape or --tile;
- a timing cache file (read if present, written after the build);
- plugin libraries loaded with ``trt.get_plugin_registry().load_library``;
- the ONNX prepared per TensorRT version (``core.prepare_onnx``);
- optional DLA core (fixed shapes; the Converse2D plugin and unsupported layers fall back to the GPU);
- ``<engine>.json`` beside the engine with the ONNX metadata and the engine keys of DESIGN.md.

Uses polygraphy's loaders (NetworkFromOnnxBytes, CreateConfig, PostprocessConfig,
EngineBytesFromNetwork).
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from restormer_deploy.engines.tensorrt import core
from restormer_deploy.engines.tensorrt.core import TrtError
from restormer_deploy.export.contract import parse_version, read_sidecar
from restormer_deploy.restormer.errors import CheckFailed
from restormer_deploy.restormer.fileio import atomic_write, atomic_write_bytes, sha256_file


def import_tensorrt():
    """``tensorrt`` or one clear TrtError (the bindings wheel alone does not import without libnvinfer)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        raise TrtError(
            f"TensorRT is not usable here ({type(exc).__name__}: {exc}). Install TensorRT >= 10.3 "
            f"(x86-64: pip install tensorrt; Jetson: JetPack's python3-libnvinfer in a venv made with "
            f"--system-site-packages), see docs/TENSORRT.md"
        ) from None
    if parse_version(trt.__version__)[:2] < core.MIN_VERSION:
        raise TrtError(f"TensorRT {trt.__version__} is too old: 10.3 or newer is needed")
    return trt


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(name, 'major.minor') of a CUDA device via the driver API (libcuda), no torch/cuda-python."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
            break
        except OSError:
            continue
    else:
        raise TrtError("no CUDA driver (libcuda) found: a TensorRT engine needs an NVIDIA GPU")
    dev = ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), device) != 0:
        raise TrtError(f"CUDA device {device} is not available")
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, dev)
    major, minor = ctypes.c_int(), ctypes.c_int()
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def check_plugin_libs(plugin_libs) -> list[Path]:
    libs = [Path(p) for p in plugin_libs or ()]
    for lib in libs:
        if not lib.is_file():
            raise TrtError(f"plugin library {lib} not found (build it: see engines/plugins/converse2d/README.md)")
    return libs


def load_plugins(trt, plugin_libs) -> None:
    registry = trt.get_plugin_registry()
    for lib in check_plugin_libs(plugin_libs):
        if registry.load_library(str(lib.resolve())) is None:
            raise TrtError(f"TensorRT could not load plugin library {lib} (see the TensorRT log above)")


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """The profile, plugins, timing cache and DLA core of an engine build (``build_engine``'s keywords)."""

    min_shape: str | None = None
    opt_shape: str | None = None
    max_shape: str | None = None
    tile: int | None = None
    plugin_libs: tuple[Path, ...] = ()
    timing_cache: Path | None = None
    dla_core: int | None = None

    def kwargs(self) -> dict:
        return dict(self.__dict__)


class BuildFailed(CheckFailed, TrtError):
    """TensorRT refused to parse or build the network (the input itself was fine): exit 1, and still a
    TrtError for callers that catch those."""


@dataclass(kw_only=True)
class BuildResult:
    engine: str
    sidecar: str
    tensorrt_version: str
    seconds: float
    precision: str
    profile: dict
    lint_warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def write_prepared(model: onnx.ModelProto | str | os.PathLike, target: str | os.PathLike,
                   version: str | None = None) -> Path:
    """Write the ONNX as ``core.prepare_onnx`` hands it to the parser of ``version`` (else the installed
    TensorRT's): the file for trtexec."""
    if version is None:
        version = import_tensorrt().__version__
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    prepared, _ = core.prepare_onnx(model, version)
    return atomic_write(target, lambda tmp: onnx.save(prepared, str(tmp)))


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    min_shape=None,
    opt_shape=None,
    max_shape=None,
    tile: int | None = None,
    batch: int = 1,
    plugin_libs=(),
    timing_cache: str | os.PathLike | None = None,
    dla_core: int | None = None,
    workspace_mb: int | None = None,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Build ``engine_path`` and ``<engine_path>.json``; raises TrtError with one clear message."""
    t0 = time.perf_counter()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise TrtError(f"ONNX file {onnx_path} not found")
    if not engine_path.parent.is_dir():
        raise TrtError(f"cannot write {engine_path}: folder {engine_path.parent} does not exist")
    model = onnx.load(str(onnx_path))
    meta = core.onnx_metadata(model)
    plugin_libs = check_plugin_libs(plugin_libs)

    trt = import_tensorrt()
    version = trt.__version__
    from restormer_deploy.engines.tensorrt.lint import lint, version_for

    lint_warnings = [str(i) for i in lint(model, version_for(version, notify=log))]
    for w in lint_warnings:
        log(f"warning (lint): {w}")
    prepared, report = core.prepare_onnx(model, version)
    notes = list(report.notes)
    if report.plugin_nodes and not plugin_libs:
        raise TrtError(f"the model has {report.plugin_nodes} Converse2D node(s), run by the TensorRT plugin: pass "
                       f"--plugin-lib libconverse2d_plugin.so (or export with --converse-lowering matmul)")
    if plugin_libs and not report.plugin_nodes:
        notes.append("no plugin-backed node in this model: the plugin library is loaded but not needed")
    profile = core.make_profile(core.onnx_inputs(prepared), meta, min_shape, opt_shape, max_shape, tile, batch)
    if dla_core is not None:
        core.check_fixed_profile(profile)
        if report.plugin_nodes:
            log("warning: DLA cannot run plugins: the Converse2D nodes (and any layer DLA lacks) fall back to the GPU")
        notes.append(f"DLA core {dla_core} with GPU fallback")

    gpu, cc = gpu_info()
    load_plugins(trt, plugin_libs)

    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxBytes, PostprocessConfig, Profile

    network = NetworkFromOnnxBytes(prepared.SerializeToString(), strongly_typed=True)
    trt_profile = Profile()
    for name, p in profile.items():
        trt_profile.add(name, min=p["min"], opt=p["opt"], max=p["max"])
    pools = {trt.MemoryPoolType.WORKSPACE: workspace_mb << 20} if workspace_mb else None
    cache = str(timing_cache) if timing_cache else None
    config = CreateConfig(profiles=[trt_profile], load_timing_cache=cache, memory_pool_limits=pools)
    if dla_core is not None:
        def use_dla(builder, net, cfg):
            cfg.default_device_type = trt.DeviceType.DLA
            cfg.DLA_core = int(dla_core)
            cfg.set_flag(trt.BuilderFlag.GPU_FALLBACK)

        config = PostprocessConfig(config, use_dla)
    log(f"building TensorRT {version} engine for {gpu} (sm {cc}) ...")
    try:
        engine_bytes = EngineBytesFromNetwork(network, config, save_timing_cache=cache)()
    except Exception as exc:  # polygraphy raises PolygraphyException with the parser/builder log above
        raise BuildFailed(f"TensorRT could not build the engine: {exc}") from None
    if engine_bytes is None:
        raise BuildFailed("TensorRT could not build the engine (see its log above)")
    atomic_write_bytes(engine_path, bytes(engine_bytes))
    sidecar = core.build_sidecar(
        meta, version, gpu, cc, profile,
        plugin_sha256=sha256_file(plugin_libs[0]) if plugin_libs and report.plugin_nodes else "",
        onnx_sha256=sha256_file(onnx_path),
        extra={"dla_core": dla_core, "onnx_preprocessing": notes},
    )
    side = core.write_sidecar(engine_path, sidecar)
    return BuildResult(engine=str(engine_path), sidecar=str(side), tensorrt_version=version,
                       seconds=time.perf_counter() - t0, precision=sidecar["precision"], profile=profile,
                       lint_warnings=lint_warnings, notes=notes)


def load_engine(engine_path, plugin_libs=(), log: Callable[[str], None] = print):
    """Check the sidecar against this machine (core.check_runtime), load plugins, deserialise.

    Returns (engine, sidecar). Raises ContractError (no or a bad sidecar) or TrtError/RuntimeMismatch
    before touching the plan on a mismatch.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise TrtError(f"engine {engine_path} not found")
    sidecar = read_sidecar(engine_path)
    trt = import_tensorrt()
    gpu, cc = gpu_info()
    for w in core.check_runtime(sidecar, trt.__version__, gpu, cc, plugin_libs):
        log(f"warning: {w}")
    load_plugins(trt, plugin_libs)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise TrtError(f"TensorRT could not deserialise {engine_path} (see its log above)")
    return engine, sidecar
