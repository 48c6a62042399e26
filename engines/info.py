"""An artefact's metadata (ONNX metadata_props, engine sidecar, checkpoint config) and whether the
installed runtimes can run it (restore-info's library).

``describe(artifact)`` reads the artefact and checks it against this machine: the metadata keys of
the contract (``restormer_deploy.export.contract.METADATA_KEYS``, engines also ``ENGINE_KEYS``), the ONNX opset and
custom domains, an ONNX Runtime session (what restore-run would meet), the TensorRT version (as
numbers, ``restormer_deploy.export.contract.same_engine_version``) and the GPU of an engine.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from restormer_deploy.engines.backends import (
    BackendError, OnnxRuntimeRunner, artifact_kind, available_backends, engine_metadata, engine_version_ok,
    ort_providers, tensorrt_version, torch_cuda_available,
)
from restormer_deploy.export.contract import ENGINE_KEYS, METADATA_KEYS, ContractError, spec_from_metadata
from restormer_deploy.restormer.errors import BadInput, one_line


@dataclass
class OnnxGraphInfo:
    opsets: dict[str, int]
    custom_nodes: list[str]   # "domain::op" of every node outside the standard domain
    functions: list[str]      # "domain::name" of the model's local functions
    inputs: dict[str, str]    # name -> element type


@dataclass
class ArtifactInfo:
    """restore-info's report. ``problems`` block running it; ``warnings`` (missing optional metadata
    keys) do not."""

    artifact: str
    kind: str                        # "onnx", "engine" or "torch"
    metadata: dict
    graph: OnnxGraphInfo | None = None   # ONNX files only
    weights: str | None = None           # presets / checkpoints only: the official weights file
    precision: str | None = None         # from the metadata (not for presets / checkpoints)
    backends: list[str] = field(default_factory=list)
    runtimes: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)   # what the file is for and what proves it (``file_record``)

    @property
    def compatible(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        """The report's keys in restore-info's order (the metadata keys are merged in by the command)."""
        data: dict = {"artifact": self.artifact, "kind": self.kind, "metadata": self.metadata}
        if self.graph is not None:
            data.update(opsets=self.graph.opsets, custom_nodes=self.graph.custom_nodes,
                        functions=self.graph.functions, inputs=self.graph.inputs)
        if self.kind == "torch":
            data["weights"] = self.weights
        if self.precision is not None:
            data["precision"] = self.precision
        data.update(record=self.record, backends=self.backends, runtimes=self.runtimes, problems=self.problems,
                    warnings=self.warnings, compatible=self.compatible)
        return data


# --------------------------------------------------------------------------- this machine


def gpu_names() -> list[str]:
    """'name, compute capability' of every NVIDIA GPU (nvidia-smi); empty without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        res = subprocess.run([exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in res.stdout.splitlines() if line.strip()] if res.returncode == 0 else []


def runtimes() -> dict:
    """Versions of the installed runtimes, ONNX Runtime's providers, PyTorch's CUDA and the GPUs."""
    info = {"python": platform.python_version()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort_providers()
    except ImportError:
        info["onnxruntime"] = None
    info["tensorrt"] = tensorrt_version()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch_cuda_available()
    except ImportError:
        info["torch"] = None
    info["gpus"] = gpu_names()
    return info


# --------------------------------------------------------------------------- by kind


def _read_onnx(path: Path) -> tuple[dict, OnnxGraphInfo, list[str]]:
    import onnx

    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise BadInput(f"{path}: not a readable ONNX model ({one_line(exc)})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    graph = OnnxGraphInfo(
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        custom_nodes=sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}),
        functions=sorted(f"{f.domain}::{f.name}" for f in model.functions),
        inputs={i.name: onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type) for i in model.graph.input})
    problems = []
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        problems.append(f"metadata lacks {', '.join(missing)}")
    try:
        from onnx.defs import onnx_opset_version

        need = graph.opsets.get("ai.onnx", 0)
        if need > onnx_opset_version():
            problems.append(f"opset {need} is newer than the installed onnx supports ({onnx_opset_version()})")
    except Exception:
        pass
    undefined = [c for c in graph.custom_nodes if c not in graph.functions and not c.startswith("com.microsoft")]
    if undefined:
        problems.append(f"custom nodes without a function (need a plugin/runtime kernel): {', '.join(undefined)}")
    return meta, graph, problems


def _read_engine(path: Path) -> tuple[dict, list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"engine not found: {path}")
    meta = engine_metadata(path)
    problems = []
    missing = [k for k in METADATA_KEYS + ENGINE_KEYS if k not in meta]
    if missing:
        problems.append(f"sidecar lacks {', '.join(missing)}")
    installed = tensorrt_version()
    if installed is None:
        problems.append("TensorRT is not installed")
    elif meta.get("tensorrt_version") and not engine_version_ok(meta["tensorrt_version"], installed):
        problems.append(f"built with TensorRT {meta['tensorrt_version']}, installed is {installed}: rebuild")
    gpus = gpu_names()
    if not gpus:
        problems.append("no NVIDIA GPU found (nvidia-smi)")
    elif meta.get("compute_capability") and not any(str(meta["compute_capability"]) in g for g in gpus):
        problems.append(f"built for compute capability {meta['compute_capability']}, this machine has {'; '.join(gpus)}")
    return meta, problems


def checkpoint_description(path: Path, spec) -> str | None:
    """What a checkpoint of ours is, from its JSON config: None for the shipped weights (the
    preset's description holds), else e.g. "checkpoint of preset default (iteration 20, validation
    PSNR 24.31 dB, SSIM 0.6412), not the shipped weights". The config copies the preset's
    description, which would call a user's run "trained by this project"."""
    from restormer_deploy.restormer.checkpoints import read_checkpoint_config
    from restormer_deploy.restormer.presets import ASSETS

    if path.resolve().parent == ASSETS:
        return None
    config = read_checkpoint_config(path)
    facts = []
    if isinstance(config.get("iteration"), int):
        facts.append(f"iteration {config['iteration']}")
    val = config.get("val") if isinstance(config.get("val"), dict) else {}
    if isinstance(val.get("val_psnr"), (int, float)):
        facts.append(f"validation PSNR {val['val_psnr']:.2f} dB"
                     + (f", SSIM {val['val_ssim']:.4f}" if isinstance(val.get("val_ssim"), (int, float)) else ""))
    return f"checkpoint of preset {spec.name}" + (f" ({', '.join(facts)})" if facts else "") + ", not the shipped weights"


def _read_torch(artifact: str) -> tuple[dict, str | None, list[str]]:
    from restormer_deploy.restormer.presets import official_weights, resolve

    spec = resolve(artifact)
    weights = official_weights(spec)
    problems = []
    if weights is None or not weights.is_file():
        problems.append(f"weights not found: {weights} (pass --weights to the other commands)")
    metadata = dict(spec.to_json())
    if Path(artifact).suffix == ".safetensors":
        metadata["description"] = checkpoint_description(Path(artifact), spec) or spec.description
    return metadata, str(weights) if weights else None, problems


def ort_session_problems(path: str) -> list[str]:
    """What restore-run would meet: ONNX Runtime's CPU session itself, started and closed."""
    try:
        runner = OnnxRuntimeRunner(path, threads=1)
        runner.activate()
        runner.deactivate()
    except (BackendError, ValueError) as exc:
        return [f"ONNX Runtime cannot run it: {one_line(exc)}"]
    return []


def describe(artifact: str) -> ArtifactInfo:
    """The artefact's report against this machine. Raises ValueError (BadInput, ContractError) or
    FileNotFoundError on unusable input."""
    kind = artifact_kind(artifact)
    info = ArtifactInfo(artifact=artifact, kind=kind, metadata={})
    if kind == "onnx":
        info.metadata, info.graph, problems = _read_onnx(Path(artifact))
    elif kind == "engine":
        info.metadata, problems = _read_engine(Path(artifact))
    else:
        info.metadata, info.weights, problems = _read_torch(artifact)
    if kind != "torch":
        try:
            info.precision = spec_from_metadata(info.metadata, artifact)[1]
        except ContractError as exc:
            problems.append(str(exc))
    info.backends = available_backends(artifact)
    if kind == "onnx" and not problems and "ort-cpu" in info.backends:
        problems += ort_session_problems(artifact)
    if [p for p in problems if " lacks " not in p]:
        info.backends = []  # "runs on" only what restore-run accepts
    elif not info.backends:
        problems.append("no installed runtime can run it")
    info.runtimes = runtimes()
    try:  # a description, never a reason to refuse the file
        info.record = file_record(artifact, kind, info.metadata, info.precision)
    except Exception as exc:
        info.record = {"error": one_line(exc)}
    info.warnings = [p for p in problems if " lacks " in p]  # optional keys: reported, not blocking
    info.problems = [p for p in problems if p not in info.warnings]
    return info


# --------------------------------------------------------------------------- what the file is for


def _json(text):
    import json

    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


def target_runtime(path: str, kind: str, meta: dict, precision: str | None) -> str:
    """The runtime a file is made for: recorded (``target`` key), an engine, or read from the graph
    (an INT8 file's activation type: uint8 is ONNX Runtime's U8S8 layout, int8 TensorRT's symmetric one)."""
    if kind == "engine":
        return "TensorRT (a built engine for one GPU and TensorRT version)"
    if meta.get("target"):
        return {"ort": "ONNX Runtime", "trt": "TensorRT"}.get(meta["target"], meta["target"]) + " (recorded)"
    if precision != "int8":
        return ("not recorded: ONNX Runtime or TensorRT (restore-export FILE --check-trt VERSION lints it for "
                "TensorRT)")
    import onnx

    model = onnx.load(path, load_external_data=False)
    zero_points = {n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2}
    types = {i.data_type for i in model.graph.initializer if i.name in zero_points}
    if onnx.TensorProto.UINT8 in types:
        return "ONNX Runtime (uint8 activations: its U8S8 kernels; restore-export --target trt for TensorRT)"
    return "TensorRT (symmetric int8 activations, as TensorRT takes them)"


def _tiling(meta: dict) -> str:
    tile = str(meta.get("tile", "")).strip().lower()
    if not tile:
        return "not recorded (restore-run: the preset's, else whole images)"
    if tile in ("none", "0", "null"):
        return "whole images (restore-run tiles automatically when an image would not fit in memory)"
    return f"tiles {tile} overlap {meta.get('tile_overlap', 32)} (restore-run's and restore-parity's default)"


def _cached_export(artifact: str) -> dict:
    """The verified export restore-run uses for a preset or checkpoint, if it is cached."""
    from restormer_deploy.engines.export_cache import cache_key, cache_paths, fast_provider
    from restormer_deploy.restormer.presets import resolve

    provider = fast_provider()
    if provider is None:
        return {"runs": "PyTorch (no ONNX Runtime fast path on this machine)"}
    onnx_path, record_path = cache_paths(cache_key(resolve(artifact), None, provider=provider))
    if not record_path.is_file():
        return {"runs": f"its FP32 ONNX export on {provider}, made and verified on the first restore-run (not cached yet)"}
    record = _json(record_path.read_text())
    return {"runs": f"the cached FP32 ONNX export on {provider}", "file": str(onnx_path),
            "verification": {k: record.get(k) for k in ("psnr_vs_torch", "max_abs_err", "verified_on", "created")}
            if isinstance(record, dict) else "unreadable record"}


def file_record(artifact: str, kind: str, meta: dict, precision: str | None) -> dict:
    """What the file is for and what proves it: target runtime, precision, FP32 islands, tiling,
    calibration and verification record (``restore-info``)."""
    if kind == "torch":
        return {"target_runtime": "PyTorch (restore-run: see runs)", "tiling": _tiling(meta), **_cached_export(artifact)}
    record: dict = {"target_runtime": target_runtime(artifact, kind, meta, precision), "precision": precision}
    if precision == "fp16" and kind == "onnx":
        record["arithmetic_on_ort_cpu"] = "FP16 weights and activations stored, arithmetic in FP32"
    islands = _json(meta.get("fp32_islands")) if meta.get("fp32_islands") else None
    if islands is not None:
        record["fp32_islands"] = {"count": len(islands), "nodes": islands} if isinstance(islands, dict) else islands
    if meta.get("psnr_fp16_arithmetic"):
        record["psnr_fp16_arithmetic"] = meta["psnr_fp16_arithmetic"]
    record["tiling"] = _tiling(meta)
    calibration = {k: _json(v) for k, v in meta.items() if k.startswith("int8_")}
    if calibration:
        record["calibration"] = calibration
    verification = {k: _json(v) for k, v in meta.items() if k.startswith(("psnr_", "verified", "parity"))
                    and k != "psnr_fp16_arithmetic"}
    record["verification"] = verification or ("not recorded in the file (restore-export writes one only after its "
                                              "self-check against PyTorch); restore-parity FILE --reference MODEL "
                                              "--images DIR checks it on images")
    return record
