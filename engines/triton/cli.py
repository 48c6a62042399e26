"""``restore-export --format triton-repo``: a Triton model repository, written all at once.

``run_triton(main, params)`` is called by ``cli.export.main`` with all its parameters. MODEL is
a preset or checkpoint (exported first by re-entering ``main`` with ``--format onnx``), an ``.onnx``
file, or, for the TensorRT backend, an already built ``.engine``/``.plan`` with its JSON sidecar
and the ONNX it was built from beside it (``model.engine`` -> ``model.onnx``, as ``--format trt``
leaves them): the ONNX gives the tensor names and dtypes, the sidecar the TensorRT version, profile
and plugin. Everything is written into a temporary folder next to ``--out`` and renamed into place
only when complete.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import onnx
import typer

from cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, fail, out, write_json
from engines.tensorrt import core
from engines.tensorrt.core import TrtError
from engines.triton import config as tc
from engines.triton.pbtxt import dumps
from engines.triton.readme import model_readme
from engines.triton.releases import check_plan_release, check_release, releases_for
from restormer.fileio import fix_tree_modes, staging_dir

DEFAULT_MAX_BATCH = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise tc.RepositoryError(f"--out {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise tc.RepositoryError(f"--out {target} exists and is not empty: pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise tc.RepositoryError(f"cannot write {target}: folder {target.parent} does not exist")


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
        raise tc.RepositoryError(f"the ONNX file {engine} was built from is expected at {onnx_path} (its tensor names "
                                 f"and dtypes go into config.pbtxt); restore-export --format trt leaves it there")
    want = sidecar["onnx_sha256"]  # required: _engine_sidecar refuses a sidecar without it
    if core.sha256_file(onnx_path) != want:
        raise tc.RepositoryError(f"{onnx_path} is not the ONNX that {engine} was built from (sha256 differs from the "
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
        raise tc.RepositoryError(f"sidecar {path} has a malformed profile ({json.dumps(profile)[:80]}): expected "
                                 f"{{input: {{min, opt, max: shapes}}}} as restore-export --format trt writes it")


def _engine_sidecar(engine: Path) -> dict:
    """``core.read_sidecar`` plus what it leaves unchecked: a JSON object, the TensorRT version, the
    hashes and the profile. Without TensorRT the sidecar is all there is to check a plan against."""
    path = core.sidecar_path(engine)
    if path.is_file():
        try:
            data = json.loads(path.read_bytes())
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise tc.RepositoryError(f"sidecar {path} is not valid JSON: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise tc.RepositoryError(f"sidecar {path} is not a JSON object")
    sidecar = core.read_sidecar(engine)
    try:
        core.parse_version(str(sidecar["tensorrt_version"]))
    except TrtError as exc:
        raise tc.RepositoryError(f"sidecar {path}: {exc}") from None
    for key, optional in (("onnx_sha256", False), ("plugin_sha256", True)):
        value = sidecar[key]
        if not (isinstance(value, str) and (_SHA256.fullmatch(value) or (optional and value == ""))):
            raise tc.RepositoryError(f"sidecar {path} has no valid {key} ({value!r})"
                                     + ("" if optional else ": the ONNX beside the engine cannot be checked against the "
                                                            "plan; rebuild it with restore-export --format trt"))
    _check_profile(path, sidecar["profile"])
    return sidecar


def _check_plan(engine: Path, sidecar: dict, plugin_libs) -> str:
    """Deserialise the plan where this machine can (TensorRT of the plan's version, its GPU and plugin):
    a plan TensorRT rejects is refused. Returns what was checked, for the notes and the README."""
    from engines.tensorrt import builder

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
        raise tc.RepositoryError(f"TensorRT {trt.__version__} could not deserialise {engine}: not a valid plan "
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
            raise tc.RepositoryError(f"{where} is outside the model's folder: keep the data files beside the .onnx "
                                     f"(relative paths)")
        if rel == tc.NETWORK_BACKENDS["onnxruntime"][2]:
            raise tc.RepositoryError(f"{where} is named like the repository's model.onnx: rename the data file")
        if not (folder / rel).is_file():
            raise tc.RepositoryError(f"{where} not found beside the model")
        try:
            end = int(info.get("offset") or 0) + int(info.get("length") or 0)
        except ValueError:
            raise tc.RepositoryError(f"{where} has a malformed offset/length") from None
        if end > (folder / rel).stat().st_size:
            raise tc.RepositoryError(f"{where} is shorter than the tensor's offset + length ({end} bytes)")
        files.append(rel)
    return sorted(set(files))


def _options(p: dict) -> dict:
    backend = p.get("triton_backend") or "tensorrt"
    if backend not in tc.NETWORK_BACKENDS:
        raise tc.RepositoryError(f"--backend {backend!r}: choose tensorrt (model.plan) or onnxruntime (model.onnx)")
    kind = (p.get("instance_kind") or "gpu").lower().removeprefix("kind_")
    if kind not in tc.KINDS:
        raise tc.RepositoryError(f"--instance-kind {p.get('instance_kind')!r}: choose gpu, cpu or auto")
    if backend == "tensorrt" and kind != "gpu":
        raise tc.RepositoryError("a TensorRT plan runs on a GPU only: --instance-kind gpu (or --backend onnxruntime)")
    instances = 1 if p.get("instances") is None else p["instances"]
    if instances < 1:
        raise tc.RepositoryError(f"--instances {instances}: must be at least 1")
    mbs = p.get("max_batch_size")
    if mbs is not None and mbs < 0:
        raise tc.RepositoryError(f"--max-batch-size {mbs}: must be 0 (no batching) or more")
    name = p.get("model_name")
    if name is not None and not _NAME.fullmatch(name):
        raise tc.RepositoryError(f"--model-name {name!r}: letters, digits, '_', '.', '-' only")
    release = check_release(p["triton_release"]) if p.get("triton_release") else None
    if release and backend != "tensorrt":
        raise tc.RepositoryError("--triton-release checks a TensorRT plan: it needs --backend tensorrt")
    if p.get("check_trt"):
        raise tc.RepositoryError("--check-trt does not combine with --format triton-repo (lint with --format onnx)")
    return dict(backend=backend, kind=kind, instances=instances, max_batch_size=mbs, name=name, release=release,
                with_preprocess=bool(p.get("with_preprocess")), overwrite=bool(p.get("overwrite")))


def _derived_name(text: str, source: Path) -> str:
    """A model name from a file's metadata or name, held to the --model-name rule: a name such as '..'
    taken from a file must never become a path outside the repository."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    if not _NAME.fullmatch(name) or name.strip(".") == "":
        raise tc.RepositoryError(f"{source}: the model name it gives ({text!r}) is not a valid Triton model name "
                                 f"(letters, digits, '_', '.', '-', starting with a letter or digit): pass --model-name")
    return name


def _export_onnx(main, params: dict, onnx_out: Path) -> dict:
    side = onnx_out.with_name("export.json")
    main(**{**params, "fmt": "onnx", "out_path": onnx_out, "check_trt": None, "json_out": side})
    return json.loads(side.read_text())


def run_triton(main, params: dict) -> None:
    """Raises typer.Exit with the command's status."""
    from engines.backends import artifact_kind

    params = {k: v for k, v in params.items() if k in inspect.signature(main).parameters}
    model, target, json_out = params["model"], params.get("out_path"), params.get("json_out")
    try:
        opts = _options(params)
        if target is None:
            raise tc.RepositoryError("--format triton-repo needs --out DIR (the model repository folder)")
        target = Path(target)
        _check_target(target, opts["overwrite"])
        if json_out and not Path(json_out).parent.is_dir():
            raise tc.RepositoryError(f"cannot write {json_out}: folder {Path(json_out).parent} does not exist")
        kind = artifact_kind(model)
        sidecar = None
        if kind == "engine":
            if opts["backend"] != "tensorrt":
                raise tc.RepositoryError(f"{model} is a TensorRT engine: it needs --backend tensorrt (or pass the ONNX "
                                         f"file for --backend onnxruntime)")
            if not Path(model).is_file():
                raise tc.RepositoryError(f"engine {model} not found")
            sidecar = _engine_sidecar(Path(model))
            if opts["release"]:
                check_plan_release(sidecar["tensorrt_version"], opts["release"])
        elif kind == "onnx" and not Path(model).is_file():
            raise tc.RepositoryError(f"ONNX file {model} not found")
        elif opts["backend"] == "tensorrt":
            from engines.tensorrt.builder import import_tensorrt

            import_tensorrt()  # before a long export
    except (tc.RepositoryError, TrtError, ValueError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT)

    staging = staging_dir(target)
    scratch = Path(tempfile.mkdtemp(prefix="triton_export_"))
    try:
        result = _build(main, params, opts, model, kind, sidecar, staging, scratch)
        _check_target(target, opts["overwrite"])  # nothing appeared meanwhile
        fix_tree_modes(staging)  # mkdtemp makes 0700; copied files keep their source's mode
        _publish(staging, target)
    except TrtError as exc:
        from engines.tensorrt.builder import BuildFailed

        raise fail(str(exc), EXIT_CHECK_FAILED if isinstance(exc, BuildFailed) else EXIT_BAD_INPUT)
    except (tc.RepositoryError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    result["path"] = str(target)
    out.print(f"Triton model repository [bold]{target}[/]: {', '.join(result['models'])} "
              f"({result['platform']}, max_batch_size {result['max_batch_size']})")
    for note in result.get("notes", []):
        out.print(f"  {note}", highlight=False)
    if json_out:
        write_json(Path(json_out), result)
    raise typer.Exit(0)


def _build(main, params, opts, model, kind, sidecar, staging: Path, scratch: Path) -> dict:
    result: dict = {"notes": []}
    if kind == "torch":
        onnx_path = scratch / "model.onnx"
        result.update(_export_onnx(main, params, onnx_path))
    elif kind == "onnx":
        onnx_path = Path(model)
    else:
        onnx_path = _engine_onnx(Path(model), sidecar)
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and the like
        raise tc.RepositoryError(f"cannot read {onnx_path} as ONNX: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    meta = core.onnx_metadata(proto)
    missing = [k for k in ("in_channels", "out_channels", "scale", "pad_multiple") if k not in meta]
    if missing:
        raise tc.RepositoryError(f"{onnx_path} lacks the metadata {', '.join(missing)}: export it with restore-export")
    inputs, outputs = tc.onnx_io(proto)
    data_files = [] if kind == "engine" else _external_files(proto, onnx_path)  # an engine's ONNX gives names only
    del proto
    name = opts["name"] or _derived_name(meta.get("preset") or Path(model).stem, onnx_path)
    version_dir = staging / name / "1"
    version_dir.mkdir(parents=True)
    mbs = opts["max_batch_size"]

    tensorrt_version, plugin_sha, profile, plan_check = None, "", None, ""
    if opts["backend"] == "onnxruntime":
        shutil.copyfile(onnx_path, version_dir / "model.onnx")
        for rel in data_files:  # ONNX Runtime finds them relative to model.onnx
            (version_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(onnx_path.parent / rel, version_dir / rel)
        mbs = DEFAULT_MAX_BATCH if mbs is None else mbs
    else:
        plan = version_dir / "model.plan"
        if kind == "engine":
            plan_check = _check_plan(Path(model), sidecar, params.get("plugin_lib"))
            result["notes"].append(plan_check)
            shutil.copyfile(model, plan)
            core.write_sidecar(plan, sidecar)
        else:
            sidecar = _build_plan(params, onnx_path, plan, result)
        tensorrt_version, plugin_sha, profile = sidecar["tensorrt_version"], sidecar.get("plugin_sha256") or "", sidecar["profile"]
        if opts["release"]:
            check_plan_release(tensorrt_version, opts["release"])
        engine_batch = int(profile[inputs[0].name]["max"][0]) if inputs[0].name in profile else None
        if engine_batch is None:
            raise tc.RepositoryError(f"the engine's profile has no input {inputs[0].name!r} (it has {', '.join(profile)}): "
                                     f"the ONNX beside the engine is not the one it was built from")
        if mbs is None:
            mbs = engine_batch
        elif mbs > engine_batch:
            raise tc.RepositoryError(f"--max-batch-size {mbs} exceeds the engine's profile (batch <= {engine_batch}); "
                                     f"rebuild with a larger --max-shape batch or lower it")
        fits = releases_for(tensorrt_version)
        result["notes"].append(f"TensorRT {tensorrt_version}: Triton {', '.join(fits)}" if fits else
                               f"warning: no Triton release in the table ships TensorRT {tensorrt_version} (see README.md)")
    tc.check_network(inputs, outputs, meta, mbs)

    configs = {name: tc.network_config(name, opts["backend"], inputs, outputs, meta, mbs, opts["instances"], opts["kind"])}
    ensemble = None
    if opts["with_preprocess"]:
        extra = tc.processing_configs(name, inputs, outputs, meta, mbs)
        configs.update(extra)
        ensemble = name + tc.ENSEMBLE_SUFFIXES["image"]
        here = Path(__file__).parent
        for role in ("pre", "post"):
            folder = staging / (name + tc.ENSEMBLE_SUFFIXES[role]) / "1"
            folder.mkdir(parents=True)
            shutil.copyfile(here / "python_model.py", folder / "model.py")
            shutil.copyfile(here / "processing.py", folder / "processing.py")
        (staging / ensemble / "1").mkdir(parents=True)  # an ensemble still needs a version folder
    for model_name, cfg in configs.items():
        (staging / model_name / "config.pbtxt").write_text(dumps(cfg))
    (staging / name / "README.md").write_text(model_readme(
        name, opts["backend"], meta, mbs, tensorrt_version=tensorrt_version, release=opts["release"],
        plugin_sha256=plugin_sha, ensemble=ensemble, profile=profile, gpu=opts["kind"] != "cpu", plan_check=plan_check))
    result.update(models=list(configs), backend=opts["backend"], platform=configs[name]["platform"], max_batch_size=mbs,
                  tensorrt_version=tensorrt_version, triton_releases=releases_for(tensorrt_version) if tensorrt_version else [],
                  ensemble=ensemble)
    return result


def _build_plan(params: dict, onnx_path: Path, plan: Path, result: dict) -> dict:
    from cli.common import console
    from engines.tensorrt.builder import build_engine

    built = build_engine(
        onnx_path, plan, min_shape=params.get("min_shape"), opt_shape=params.get("opt_shape"),
        max_shape=params.get("max_shape"), tile=params.get("tile"), plugin_libs=params.get("plugin_lib") or (),
        timing_cache=params.get("timing_cache"), dla_core=params.get("dla_core"),
        log=lambda m: console.print(m, highlight=False, soft_wrap=True),
    )
    result["notes"].extend(built.notes)
    return core.read_sidecar(plan)
