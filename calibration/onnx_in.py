"""ONNX in, ONNX out: quantize an FP32 file written by this project (``restore-quantize``).

The file's metadata_props give the model spec (``restormer_deploy.export.contract.spec_from_metadata``;
without torch, which the preset registry needs, the same keys read here and ``--degrade`` given).
The images of ``--calib-dir``, sorted by name, are split:

* ``[0, calib_count)`` calibrate (and, without ``--search-dir``, drive the sensitivity search on
  other crops and noise, as in ``restore-export``);
* ``[calib_count, calib_count + verify_count)`` are **held out**: the result is verified on them
  (or on ``--verify-dir``), never calibrated on.

``quantize_graph`` (``restormer_deploy.calibration.int8``) places the Q/DQ nodes on the graph as it
is in the file, then the result is checked (onnx.checker, an ONNX Runtime session) and compared with
the input FP32 file in ONNX Runtime, **per held-out image**: each must reach ``HELD_OUT_FLOOR_DB``
(PSNR of the INT8 output against the FP32 output) and the mean task-PSNR drop must stay within
``MAX_TASK_DROP_DB``. The output is written atomically, and the range cache saved, only if it passes.

Only ``--fallback fp32`` (the ONNX Runtime CPU file): the FP16 rest of a TensorRT file needs the
module classes of the trace to place its FP32 islands, which an exported file no longer carries
(``restore-export MODEL --precision int8 --fallback fp16`` builds that file).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from restormer_deploy.calibration.data import CalibrationError, ImageSet, load_images, select_paths
from restormer_deploy.calibration.int8 import load_sets, quantize_graph
from restormer_deploy.calibration.options import Int8Options
from restormer_deploy.calibration.search import run_set
from restormer_deploy.export.ort_session import cpu_session
from restormer_deploy.restormer import __version__ as tool_version
from restormer_deploy.restormer.errors import CheckFailed
from restormer_deploy.restormer.fileio import atomic_write, sha256_file
from restormer_deploy.restormer.imageio import from_float
from restormer_deploy.restormer.metrics import psnr_peak1, task_scores

# export/contract.py's PARITY_FLOORS["int8"] and MAX_TASK_DROP_DB (tests/calibration/test_onnx_in.py
# checks they agree): the contract module imports the presets, hence torch.
HELD_OUT_FLOOR_DB = 35.0
MAX_TASK_DROP_DB = 0.3
SPEC_KEYS = ("in_channels", "out_channels", "scale", "pad_multiple")


class VerifyError(CheckFailed):
    """The quantized file failed its check against the FP32 file; nothing was written."""


@dataclass(frozen=True, kw_only=True)
class OnnxSpec:
    """What calibration needs of a model, read from an exported file."""

    name: str
    architecture: str
    task: str
    in_channels: int
    out_channels: int
    scale: int
    pad_multiple: int
    needs_kernel: bool
    degrade: str | None


def read_spec(model: onnx.ModelProto, source: str, degrade: str | None = None) -> OnnxSpec:
    """The spec of an exported FP32 file (BadInput when it is not one)."""
    props = {p.key: p.value for p in model.metadata_props}
    kernel = any(i.name == "kernel" for i in model.graph.input)
    try:
        from restormer_deploy.export.contract import spec_from_metadata
    except ImportError:  # no torch: the preset registry (and with it the contract's reader) is not importable
        spec_from_metadata = None
    if spec_from_metadata is not None:
        spec, precision = spec_from_metadata(props, source)
        fields = {k: getattr(spec, k) for k in ("name", "architecture", "task", *SPEC_KEYS)}
        preset_degrade, known = spec.degrade, True
    else:
        missing = [k for k in SPEC_KEYS if k not in props]
        if missing:
            raise CalibrationError(f"{source}: metadata lacks {missing}; was it written by restore-export?")
        try:
            ints = {k: int(props[k]) for k in SPEC_KEYS}
        except ValueError as exc:
            raise CalibrationError(f"{source}: bad metadata value ({exc})") from None
        fields = {"name": props.get("preset") or Path(source).stem, "architecture": props.get("architecture", "unknown"),
                  "task": props.get("task", ""), **ints}
        precision, preset_degrade, known = props.get("precision", "fp32"), None, False
    if precision != "fp32":
        raise CalibrationError(f"{source} is a {precision} file: restore-quantize takes the FP32 export "
                               f"(restore-export MODEL --precision fp32)")
    if degrade is None and not known:
        raise CalibrationError(f"{source}: the degradation of {fields['name']}'s inputs is in the preset registry, "
                               f"which needs torch: pass --degrade SPEC (e.g. noise:25, or none)")
    return OnnxSpec(**fields, needs_kernel=kernel, degrade=degrade if degrade is not None else preset_degrade)


def check_fp32_graph(model: onnx.ModelProto, source: str) -> None:
    """No Q/DQ and no FP16 tensors: the input must be the FP32 graph."""
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}:
        raise CalibrationError(f"{source} is already quantized (it has Q/DQ nodes): give the FP32 export")
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise CalibrationError(f"{source} has FP16 weights: give the FP32 export")


def held_out_set(spec: OnnxSpec, opts: Int8Options, verify_dir: Path | None, count: int, size: int | None) -> ImageSet:
    """The held-out images: ``verify_dir``'s, or those of ``--calib-dir`` after the calibration ones."""
    if count < 1:
        raise CalibrationError(f"--verify-count must be >= 1, got {count}")
    if verify_dir is not None:
        paths = select_paths(verify_dir, count)
    else:
        paths = select_paths(opts.calib_dir, count, start=opts.calib_count)
        if not paths:
            total = len(select_paths(opts.calib_dir))
            raise CalibrationError(f"--calib-dir {opts.calib_dir} has {total} images and --calib-count "
                                   f"{opts.calib_count} uses them all: none is left to verify on "
                                   f"(lower --calib-count or pass --verify-dir DIR)")
    return load_images(paths, spec, size, opts.degrade, opts.seed + 20_000, what="held-out")


def compare(fp32_sess, int8_sess, images: ImageSet) -> dict:
    """Per held-out image: PSNR of INT8 against FP32, and the task PSNR (8-bit, as restore-eval) of both."""
    ref, got = run_set(fp32_sess, images), run_set(int8_sess, images)
    rows = []
    for name, a, b, gt, (border, y) in zip(images.names, ref, got, images.targets, images.scoring):
        t32 = task_scores(from_float(a), gt, border=border, y_channel=y, with_ssim=False)[0]
        t8 = task_scores(from_float(b), gt, border=border, y_channel=y, with_ssim=False)[0]
        rows.append({"name": name, "psnr_vs_fp32": psnr_peak1(b, a), "finite": bool(np.isfinite(b).all()),
                     "task_fp32": t32, "task_int8": t8, "task_drop": t32 - t8})
    drop = float(np.mean([r["task_drop"] for r in rows]))
    worst = min(r["psnr_vs_fp32"] for r in rows)
    passed = all(r["finite"] and r["psnr_vs_fp32"] >= HELD_OUT_FLOOR_DB for r in rows) and drop <= MAX_TASK_DROP_DB
    return {"floor_db": HELD_OUT_FLOOR_DB, "max_task_drop_db": MAX_TASK_DROP_DB, "images": rows,
            "min_psnr_vs_fp32": worst, "mean_task_drop": drop, "passed": passed}


def _failure(check: dict) -> str:
    bad = [r for r in check["images"] if not r["finite"] or r["psnr_vs_fp32"] < check["floor_db"]]
    if bad:
        return (f"{len(bad)} of {len(check['images'])} held-out images below {check['floor_db']:.0f} dB against the "
                f"FP32 file (worst {bad[0]['name']}: {min(r['psnr_vs_fp32'] for r in bad):.1f} dB)")
    return f"mean task-PSNR drop {check['mean_task_drop']:.3f} dB > {check['max_task_drop_db']} dB on the held-out images"


def output_metadata(model: onnx.ModelProto, extra: dict[str, str]) -> None:
    """The input's metadata, precision int8, this tool's version, then ``extra``."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(precision="int8", tool_version=tool_version, **extra)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def quantize_file(src: str | Path, out: str | Path, opts: Int8Options, *, verify_dir: Path | None = None,
                  verify_count: int = 4, verify_size: int | None = 256, log=print) -> dict:
    """Quantize the FP32 file ``src`` into ``out`` (written only if it passes); the report (a dict)."""
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    opts.check()
    if opts.fallback != "fp32":
        raise CalibrationError("restore-quantize writes the ONNX Runtime file (--fallback fp32); the FP16 rest of a "
                               "TensorRT file needs the trace: restore-export MODEL --precision int8 --fallback fp16")
    if out.suffix != ".onnx":
        raise CalibrationError(f"--out must end in .onnx, got {out}")
    if not out.parent.is_dir():
        raise CalibrationError(f"cannot write {out}: folder {out.parent} does not exist")
    if out.exists() and out.resolve() == src.resolve():
        raise CalibrationError(f"refusing to overwrite the input {src}: give another --out")
    try:
        model = onnx.load(str(src))
    except FileNotFoundError:
        raise CalibrationError(f"no such file: {src}") from None
    except Exception as exc:  # protobuf's DecodeError, truncated files ...
        raise CalibrationError(f"cannot read {src} as ONNX: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    check_fp32_graph(model, str(src))
    spec = read_spec(model, str(src), opts.degrade)
    opts = dataclasses.replace(opts, degrade=spec.degrade if spec.degrade is not None else "none")
    calib, search = load_sets(spec, opts)
    held = held_out_set(spec, opts, verify_dir, verify_count, verify_size or None)
    overlap = sorted(set(held.names) & set(calib.names)) if verify_dir is not None else []
    if overlap:
        raise CalibrationError(f"--verify-dir shares images with the calibration set ({overlap[0]} ...): "
                               f"held-out images must not be calibrated on")
    done = quantize_graph(model, spec, opts, sets=(calib, search), log=log)
    qmodel = done.model
    source_sha = sha256_file(src)
    output_metadata(qmodel, {**done.metadata, "int8_source_sha256": source_sha})
    log(f"verifying against {src.name} on {len(held.names)} held-out images ...")
    fp32_sess = cpu_session(src, threads=opts.threads, level="all")
    checked: dict = {}

    def write(tmp: Path) -> None:
        onnx.save(qmodel, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        checked.update(compare(fp32_sess, cpu_session(tmp, threads=opts.threads, level="all"), held))
        if not checked["passed"]:
            raise VerifyError(f"verification failed: {_failure(checked)}; nothing written")

    atomic_write(out, write)
    done.save_cache()
    return {"path": str(out), "source": str(src), "source_sha256": source_sha, "model": spec.name,
            "split": {"calibration": calib.names, "search": search.names, "held_out": held.names,
                      "held_out_from": str(verify_dir or opts.calib_dir), "held_out_crop": verify_size or None},
            "verify": checked, "int8": done.report, "seconds": time.perf_counter() - t0}
