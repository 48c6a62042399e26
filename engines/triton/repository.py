"""A Triton model repository for one exported network, written all at once (``restore-export --format triton-repo``).

The source is a preset or checkpoint (exported to ONNX by the caller's ``export_onnx``), an ``.onnx``
file, or, for the TensorRT backend, an already built ``.engine``/``.plan`` with its JSON sidecar and
the ONNX it was built from beside it (``model.engine`` -> ``model.onnx``, as ``--format trt`` leaves
them): the ONNX gives the tensor names and dtypes, the sidecar the TensorRT version, profile and
plugin. Everything is written into a staging folder next to the target and renamed into place only
when complete. Errors: ``RepositoryError`` / ``TrtError`` (bad input), ``BuildFailed`` (exit 1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from restormer_deploy.engines.tensorrt import builder, core
from restormer_deploy.engines.tensorrt.core import TrtError
from restormer_deploy.engines.triton import config as tc
from restormer_deploy.engines.triton.config import RepositoryError
from restormer_deploy.engines.triton.pbtxt import dumps
from restormer_deploy.engines.triton.readme import model_readme
from restormer_deploy.engines.triton.releases import check_plan_release, check_release, releases_for
from restormer_deploy.export.contract import SPEC_KEYS, parse_version, read_sidecar, sidecar_path
from restormer_deploy.restormer.errors import one_line
from restormer_deploy.restormer.fileio import fix_tree_modes, sha256_file, staging_dir

DEFAULT_MAX_BATCH = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class RepositoryOptions:
    """The checked ``--backend``/``--instance-kind``/... options (``repository_options``)."""

    backend: str = "tensorrt"
    kind: str = "gpu"
    instances: int = 1
    max_batch_size: int | None = None
    name: str | None = None
    release: str | None = None
    with_preprocess: bool = False
    overwrite: bool = False


@dataclass(frozen=True, kw_only=True)
class RepositorySource:
    """What was checked of the model before any work (``check_source``)."""

    model: str
    kind: str  # 'torch', 'onnx' or 'engine'
    target: Path
    sidecar: dict | None = None  # an engine's


@dataclass(kw_only=True)
class RepositoryResult:
    path: str
    models: list[str]
    backend: str
    platform: str
    max_batch_size: int
    tensorrt_version: str | None
    triton_releases: list[str]
    ensemble: str | None
    notes: list[str] = field(default_factory=list)
    export: dict = field(default_factory=dict)  # the ONNX export's result, when this call exported

    def to_json(self) -> dict:
        data = {"notes": self.notes, **self.export, "models": self.models, "backend": self.backend,
                "platform": self.platform, "max_batch_size": self.max_batch_size,
                "tensorrt_version": self.tensorrt_version, "triton_releases": self.triton_releases,
                "ensemble": self.ensemble}
        data["path"] = self.path  # in the export's place when there is one
        return data


def resolve_backend(backend: str, model: str, *, instance_kind: str | None = None,
                    triton_release: str | None = None) -> tuple[str, str | None]:
    """(the network backend, a one-line notice or None). ``auto``: ``tensorrt`` for a built engine, with
    --triton-release (a plan's check) or where TensorRT is usable; else ``onnxruntime`` (also for CPU
    instances, which a plan cannot have), with a notice saying why."""
    if backend != "auto":
        return backend, None
    from restormer_deploy.engines.backends import ENGINE_SUFFIXES

    if Path(model).suffix.lower() in ENGINE_SUFFIXES or triton_release:
        return "tensorrt", None
    if (instance_kind or "").lower().removeprefix("kind_") == "cpu":
        return "onnxruntime", "Triton backend onnxruntime: --instance-kind cpu (a TensorRT plan runs on a GPU only)"
    try:
        builder.import_tensorrt()
    except TrtError:
        return "onnxruntime", ("Triton backend onnxruntime (model.onnx): TensorRT is not usable here "
                               "(a model.plan: --backend tensorrt where it is)")
    return "tensorrt", None


def repository_options(*, backend: str | None = "tensorrt", instance_kind: str | None = "gpu",
                       instances: int | None = 1, max_batch_size: int | None = None, model_name: str | None = None,
                       triton_release: str | None = None, with_preprocess: bool = False,
                       overwrite: bool = False) -> RepositoryOptions:
    backend = backend or "tensorrt"
    if backend not in tc.NETWORK_BACKENDS:
        raise RepositoryError(f"--backend {backend!r}: choose tensorrt (model.plan) or onnxruntime (model.onnx)")
    kind = (instance_kind or "gpu").lower().removeprefix("kind_")
    if kind not in tc.KINDS:
        raise RepositoryError(f"--instance-kind {instance_kind!r}: choose gpu, cpu or auto")
    if backend == "tensorrt" and kind != "gpu":
        raise RepositoryError("a TensorRT plan runs on a GPU only: --instance-kind gpu (or --backend onnxruntime)")
    instances = 1 if instances is None else instances
    if instances < 1:
        raise RepositoryError(f"--instances {instances}: must be at least 1")
    if max_batch_size is not None and max_batch_size < 0:
        raise RepositoryError(f"--max-batch-size {max_batch_size}: must be 0 (no batching) or more")
    if model_name is not None and not _NAME.fullmatch(model_name):
        raise RepositoryError(f"--model-name {model_name!r}: letters, digits, '_', '.', '-' only")
    release = check_release(triton_release) if triton_release else None
    if release and backend != "tensorrt":
        raise RepositoryError("--triton-release checks a TensorRT plan: it needs --backend tensorrt")
    return RepositoryOptions(backend=backend, kind=kind, instances=instances, max_batch_size=max_batch_size,
                             name=model_name, release=release, with_preprocess=bool(with_preprocess),
                             overwrite=bool(overwrite))


def check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise RepositoryError(f"--out {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise RepositoryError(f"--out {target} exists and is not empty: pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise RepositoryError(f"cannot write {target}: folder {target.parent} does not exist")


def check_source(model: str, target: Path, options: RepositoryOptions) -> RepositorySource:
    """Everything that can be refused before an export or a build: the target folder, the model's kind,
    an engine's sidecar and release, a usable TensorRT for a plan still to build."""
    from restormer_deploy.engines.backends import artifact_kind

    target = Path(target)
    check_target(target, options.overwrite)
    kind = artifact_kind(model)
    sidecar = None
    if kind == "engine":
        if options.backend != "tensorrt":
            raise RepositoryError(f"{model} is a TensorRT engine: it needs --backend tensorrt (or pass the ONNX "
                                  f"file for --backend onnxruntime)")
        if not Path(model).is_file():
            raise RepositoryError(f"engine {model} not found")
        sidecar = _engine_sidecar(Path(model))
        if options.release:
            check_plan_release(sidecar["tensorrt_version"], options.release)
    elif kind == "onnx" and not Path(model).is_file():
        raise RepositoryError(f"ONNX file {model} not found")
    elif options.backend == "tensorrt":
        try:
            builder.import_tensorrt()  # before a long export
        except TrtError as exc:
            raise TrtError(f"--backend tensorrt: {exc}; or serve the ONNX file with --backend onnxruntime") from None
    return RepositorySource(model=model, kind=kind, target=target, sidecar=sidecar)


def write_repository(source: RepositorySource, *, options: RepositoryOptions,
                     build: builder.BuildOptions | None = None,
                     export_onnx: Callable[[Path], dict] | None = None,
                     log: Callable[[str], None] = print) -> RepositoryResult:
    """Write the repository at ``source.target``. ``export_onnx(path) -> dict`` exports a preset or
    checkpoint to ``path`` (its result goes into ``RepositoryResult.export``); ``build``: the profile
    and plugins of a plan built here."""
    target = source.target
    staging = staging_dir(target)
    scratch = Path(tempfile.mkdtemp(prefix="triton_export_"))
    try:
        result = _build(source, options, build or builder.BuildOptions(), export_onnx, log, staging, scratch)
        check_target(target, options.overwrite)  # nothing appeared meanwhile
        fix_tree_modes(staging)  # mkdtemp makes 0700; copied files keep their source's mode
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    result.path = str(target)
    return result


def _publish(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with renames (same folder, so no copy and no half state)."""
    old = None
    if target.exists() and any(target.iterdir()):
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _engine_onnx(engine: Path, sidecar: dict) -> Path:
    onnx_path = engine.with_suffix(".onnx")
    if not onnx_path.is_file():
        raise RepositoryError(f"the ONNX file {engine} was built from is expected at {onnx_path} (its tensor names "
                              f"and dtypes go into config.pbtxt); restore-export --format trt leaves it there")
    want = sidecar["onnx_sha256"]  # required: _engine_sidecar refuses a sidecar without it
    if sha256_file(onnx_path) != want:
        raise RepositoryError(f"{onnx_path} is not the ONNX that {engine} was built from (sha256 differs from the "
                              f"sidecar's onnx_sha256 {want[:12]}…)")
    return onnx_path


def _check_profile(path: Path, profile) -> None:
    def shape(v):
        return isinstance(v, list) and v and all(type(i) is int and i > 0 for i in v)

    def fits(p):
        return (isinstance(p, dict) and all(shape(p.get(k)) for k in ("min", "opt", "max"))
                and len({len(p[k]) for k in ("min", "opt", "max")}) == 1
                and all(a <= b <= c for a, b, c in zip(p["min"], p["opt"], p["max"])))

    if not (isinstance(profile, dict) and profile and all(fits(p) for p in profile.values())):
        raise RepositoryError(f"sidecar {path} has a malformed profile ({json.dumps(profile)[:80]}): expected "
                              f"{{input: {{min, opt, max: shapes}}}} as restore-export --format trt writes it")


def _engine_sidecar(engine: Path) -> dict:
    """``contract.read_sidecar`` plus what it leaves unchecked: the TensorRT version, the hashes and the
    profile (and this path's own words for a file that is not a JSON object). Without TensorRT the
    sidecar is all there is to check a plan against."""
    path = sidecar_path(engine)
    if path.is_file():
        try:
            data = json.loads(path.read_bytes())
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise RepositoryError(f"sidecar {path} is not valid JSON: {one_line(exc)}") from None
        if not isinstance(data, dict):
            raise RepositoryError(f"sidecar {path} is not a JSON object")
    sidecar = read_sidecar(engine)
    try:
        parse_version(str(sidecar["tensorrt_version"]))
    except ValueError as exc:
        raise RepositoryError(f"sidecar {path}: {exc}") from None
    for key, optional in (("onnx_sha256", False), ("plugin_sha256", True)):
        value = sidecar[key]
        if not (isinstance(value, str) and (_SHA256.fullmatch(value) or (optional and value == ""))):
            raise RepositoryError(f"sidecar {path} has no valid {key} ({value!r})"
                                  + ("" if optional else ": the ONNX beside the engine cannot be checked against the "
                                                         "plan; rebuild it with restore-export --format trt"))
    _check_profile(path, sidecar["profile"])
    return sidecar


def _check_plan(engine: Path, sidecar: dict, plugin_libs) -> str:
    """Deserialise the plan where this machine can (TensorRT of the plan's version, its GPU and plugin):
    a plan TensorRT rejects is refused. Returns what was checked, for the notes and the README."""
    try:
        trt = builder.import_tensorrt()
        gpu, cc = builder.gpu_info()
        core.check_runtime(sidecar, trt.__version__, gpu, cc, plugin_libs or ())
    except TrtError as exc:
        return (f"the plan was not deserialised ({str(exc).split('. ')[0]}): only its sidecar and the ONNX beside it "
                f"were checked, the server's TensorRT is the first to load it")
    builder.load_plugins(trt, plugin_libs or ())
    try:
        loaded = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine.read_bytes())
    except Exception:  # the bindings raise on some corrupt plans instead of returning None
        loaded = None
    if loaded is None:
        raise RepositoryError(f"TensorRT {trt.__version__} could not deserialise {engine}: not a valid plan "
                              f"(rebuild it with restore-export --format trt)")
    return f"the plan deserialised with TensorRT {trt.__version__} on {gpu}"


def _external_tensors(model: onnx.ModelProto):
    def graph_tensors(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            yield from node_tensors(node)

    def node_tensors(node):
        for a in node.attribute:
            yield from ([a.t] if a.HasField("t") else [])
            yield from a.tensors
            yield from ([a.sparse_tensor.values, a.sparse_tensor.indices] if a.HasField("sparse_tensor") else [])
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from graph_tensors(g)

    tensors = [*graph_tensors(model.graph), *(t for f in model.functions for n in f.node for t in node_tensors(n))]
    return [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]


def _external_files(model: onnx.ModelProto, onnx_path: Path) -> list[str]:
    """The external data files ``model`` references, relative to its folder: each must lie inside that
    folder (no absolute path, '..' or symlink out of it) and hold the bytes the tensors claim."""
    folder = onnx_path.parent.resolve()
    files = []
    for tensor in _external_tensors(model):
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"{onnx_path}: external data {location!r} of tensor {tensor.name!r}"
        rel = os.path.normpath(location) if location else ""
        if not rel or os.path.isabs(rel) or rel.split(os.sep)[0] == ".." or \
                not (folder / rel).resolve().is_relative_to(folder):
            raise RepositoryError(f"{where} is outside the model's folder: keep the data files beside the .onnx "
                                  f"(relative paths)")
        if rel == tc.NETWORK_BACKENDS["onnxruntime"][2]:
            raise RepositoryError(f"{where} is named like the repository's model.onnx: rename the data file")
        if not (folder / rel).is_file():
            raise RepositoryError(f"{where} not found beside the model")
        try:
            end = int(info.get("offset") or 0) + int(info.get("length") or 0)
        except ValueError:
            raise RepositoryError(f"{where} has a malformed offset/length") from None
        if end > (folder / rel).stat().st_size:
            raise RepositoryError(f"{where} is shorter than the tensor's offset + length ({end} bytes)")
        files.append(rel)
    return sorted(set(files))


def _derived_name(text: str, source: Path) -> str:
    """A model name from a file's metadata or name, held to the --model-name rule: a name such as '..'
    taken from a file must never become a path outside the repository."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    if not _NAME.fullmatch(name) or name.strip(".") == "":
        raise RepositoryError(f"{source}: the model name it gives ({text!r}) is not a valid Triton model name "
                              f"(letters, digits, '_', '.', '-', starting with a letter or digit): pass --model-name")
    return name


def _read_onnx(source: RepositorySource, export_onnx, scratch: Path, export: dict):
    """(onnx path, model without external data) of the source; a preset or checkpoint is exported first."""
    if source.kind == "torch":
        onnx_path = scratch / "model.onnx"
        export.update(export_onnx(onnx_path))
    elif source.kind == "onnx":
        onnx_path = Path(source.model)
    else:
        onnx_path = _engine_onnx(Path(source.model), source.sidecar)
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and the like
        raise RepositoryError(f"cannot read {onnx_path} as ONNX: {one_line(exc) if str(exc) else exc}") from None
    return onnx_path, proto


def _build(source: RepositorySource, opts: RepositoryOptions, build: builder.BuildOptions, export_onnx, log,
           staging: Path, scratch: Path) -> RepositoryResult:
    notes: list[str] = []
    export: dict = {}
    onnx_path, proto = _read_onnx(source, export_onnx, scratch, export)
    meta = core.onnx_metadata(proto)
    missing = [k for k in SPEC_KEYS if k not in meta]
    if missing:
        raise RepositoryError(f"{onnx_path} lacks the metadata {', '.join(missing)}: export it with restore-export")
    inputs, outputs = tc.onnx_io(proto)
    data_files = [] if source.kind == "engine" else _external_files(proto, onnx_path)  # an engine's ONNX gives names only
    del proto
    name = opts.name or _derived_name(meta.get("preset") or Path(source.model).stem, onnx_path)
    version_dir = staging / name / "1"
    version_dir.mkdir(parents=True)
    mbs = opts.max_batch_size

    tensorrt_version, plugin_sha, profile, plan_check = None, "", None, ""
    if opts.backend == "onnxruntime":
        shutil.copyfile(onnx_path, version_dir / "model.onnx")
        for rel in data_files:  # ONNX Runtime finds them relative to model.onnx
            (version_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(onnx_path.parent / rel, version_dir / rel)
        mbs = DEFAULT_MAX_BATCH if mbs is None else mbs
    else:
        sidecar, plan_check = _plan(source, onnx_path, version_dir / "model.plan", build, log, notes)
        tensorrt_version, plugin_sha, profile = sidecar["tensorrt_version"], sidecar.get("plugin_sha256") or "", sidecar["profile"]
        if opts.release:
            check_plan_release(tensorrt_version, opts.release)
        mbs = _plan_batch(profile, inputs[0].name, mbs)
        fits = releases_for(tensorrt_version)
        notes.append(f"TensorRT {tensorrt_version}: Triton {', '.join(fits)}" if fits else
                     f"warning: no Triton release in the table ships TensorRT {tensorrt_version} (see README.md)")
    tc.check_network(inputs, outputs, meta, mbs)

    configs = {name: tc.network_config(name, opts.backend, inputs, outputs, meta, mbs, opts.instances, opts.kind)}
    ensemble = None
    if opts.with_preprocess:
        configs.update(tc.processing_configs(name, inputs, outputs, meta, mbs))
        ensemble = name + tc.ENSEMBLE_SUFFIXES["image"]
        _write_python_models(staging, name, ensemble)
    for model_name, cfg in configs.items():
        (staging / model_name / "config.pbtxt").write_text(dumps(cfg))
    (staging / name / "README.md").write_text(model_readme(
        name, opts.backend, meta, mbs, tensorrt_version=tensorrt_version, release=opts.release,
        plugin_sha256=plugin_sha, ensemble=ensemble, profile=profile, gpu=opts.kind != "cpu", plan_check=plan_check))
    return RepositoryResult(path=str(source.target), models=list(configs), backend=opts.backend,
                            platform=configs[name]["platform"], max_batch_size=mbs, tensorrt_version=tensorrt_version,
                            triton_releases=releases_for(tensorrt_version) if tensorrt_version else [],
                            ensemble=ensemble, notes=notes, export=export)


def _plan(source: RepositorySource, onnx_path: Path, plan: Path, build: builder.BuildOptions, log,
          notes: list[str]) -> tuple[dict, str]:
    """``model.plan`` and its sidecar: the given engine (deserialised where this machine can), or one
    built here from the ONNX. Returns (sidecar, what was checked of a given plan)."""
    if source.kind == "engine":
        plan_check = _check_plan(Path(source.model), source.sidecar, build.plugin_libs)
        notes.append(plan_check)
        shutil.copyfile(source.model, plan)
        core.write_sidecar(plan, source.sidecar)
        return source.sidecar, plan_check
    built = builder.build_engine(onnx_path, plan, **build.kwargs(), log=log)
    notes.extend(built.notes)
    return read_sidecar(plan), ""


def _plan_batch(profile: dict, image_input: str, max_batch_size: int | None) -> int:
    """--max-batch-size of a plan: the profile's batch by default, never more."""
    if image_input not in profile:
        raise RepositoryError(f"the engine's profile has no input {image_input!r} (it has {', '.join(profile)}): "
                              f"the ONNX beside the engine is not the one it was built from")
    engine_batch = int(profile[image_input]["max"][0])
    if max_batch_size is None:
        return engine_batch
    if max_batch_size > engine_batch:
        raise RepositoryError(f"--max-batch-size {max_batch_size} exceeds the engine's profile (batch <= {engine_batch}); "
                              f"rebuild with a larger --max-shape batch or lower it")
    return max_batch_size


def _write_python_models(staging: Path, name: str, ensemble: str) -> None:
    """The pre/post Python models (model.py and processing.py copied beside each) and the ensemble's folder."""
    here = Path(__file__).parent
    for role in ("pre", "post"):
        folder = staging / (name + tc.ENSEMBLE_SUFFIXES[role]) / "1"
        folder.mkdir(parents=True)
        shutil.copyfile(here / "python_model.py", folder / "model.py")
        shutil.copyfile(here / "processing.py", folder / "processing.py")
    (staging / ensemble / "1").mkdir(parents=True)  # an ensemble still needs a version folder
