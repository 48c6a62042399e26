"""Real third-party checkpoints (../shared/weights/zoo/) through the verified path, on real images.

For each checkpoint: the task PSNR of PyTorch, ONNX FP32, ONNX FP16 (ONNX Runtime CPU, and under
emulated FP16 arithmetic) and INT8 (``restore-quantize`` on the FP32 file, calibrated on other
images) on the test set named in ../shared/README.md, and each file's worst PSNR against PyTorch over
those images. Prints a Markdown table (docs/ARCHITECTURES.md) and writes JSON.

    python benchmarks/zoo_weights.py [--only span_ch28_x4,dncnn_gray_s25] [--json docs/results/zoo_weights.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

from restormer_deploy.export.islands import emulate_fp16, run_emulated  # noqa: E402
from restormer_deploy.export.onnx_export import export  # noqa: E402
from restormer_deploy.export.stages import ExportOptions  # noqa: E402
from restormer_deploy.restormer.degrade import center_crop, parse_degradation  # noqa: E402
from restormer_deploy.restormer.imageio import from_float, list_images, read_image  # noqa: E402
from restormer_deploy.restormer.metrics import psnr_peak1, task_scores  # noqa: E402
from restormer_deploy.restormer.presets import load_model, shared_dir  # noqa: E402
from restormer_deploy.restormer.tiling import restore_array  # noqa: E402

# checkpoint -> (test set, degradation, centre crop, calibration folder for INT8); ../shared/README.md
PROTOCOLS = {
    "dncnn_gray_s25": ("data/denoise/Set12", "noise:25", None, "data/train/Train400"),
    "dncnn_color_blind": ("data/denoise/CBSD68", "noise:25", 256, "data/train/CBSD432"),
    "dncnn3": ("data/denoise/Set12", "noise:25", None, "data/train/Train400"),
    "dctlsa_x2": ("data/sr/Set5", "sr:2", None, "data/sr/Set14"),
    "dctlsa_x4": ("data/sr/Set5", "sr:4", None, "data/sr/Set14"),
    "craft_x4": ("data/sr/Set5", "sr:4", None, "data/sr/Set14"),
    "ditn_real_x4": ("data/sr/Set5", "sr:4", None, "data/sr/Set14"),
    "compact_animevideov3_x4": ("data/sr/Set5", "sr:4", None, "data/sr/Set14"),
    "span_ch28_x4": ("data/sr/Set5", "sr:4", None, "data/sr/Set14"),
}
LIMIT = {"data/denoise/CBSD68": 4}  # the README's figure: four 256² crops


def _ort_fn(session):
    name = session.get_inputs()[0].name
    return lambda t: session.run(None, {name: t.astype(np.float32)})[0]


def _run_all(fn, spec, samples) -> list[np.ndarray]:
    return [restore_array(fn, spec, s.lq.transpose(2, 0, 1)[None].astype(np.float32), tile=None) for s in samples]


def _scores(outputs, samples) -> float:
    vals = [task_scores(from_float(o.transpose(1, 2, 0)), s.gt, border=s.border, y_channel=s.y_channel, with_ssim=False)[0]
            for o, s in zip(outputs, samples)]
    return float(np.mean(vals))


def _worst_vs(outputs, refs) -> float:
    return float(min(psnr_peak1(np.clip(o, 0, 1), np.clip(r, 0, 1)) for o, r in zip(outputs, refs)))


def evaluate_checkpoint(name: str, tmp: Path, *, int8: bool = True) -> dict:
    import onnx
    import onnxruntime as ort
    import torch

    folder, spec_text, crop, calib = PROTOCOLS[name]
    ckpt = shared_dir() / "weights" / "zoo" / (name + (".pt" if name.startswith("dctlsa") else ".pth"))
    net, spec = load_model(str(ckpt))
    deg = parse_degradation(spec_text)
    paths = list_images(shared_dir() / folder)[: LIMIT.get(folder, None)]
    samples = []
    for p in paths:
        gt = read_image(p, channels=spec.in_channels)
        samples.append(deg.apply(center_crop(gt, crop) if crop else gt, 0))
    row = {"checkpoint": name, "architecture": spec.architecture, "scale": spec.scale, "test": f"{folder} {spec_text}",
           "images": len(samples)}
    t0 = time.perf_counter()

    def torch_fn(t):
        with torch.inference_mode():
            return net(torch.from_numpy(t)).float().numpy()

    refs = _run_all(torch_fn, spec, samples)
    row["pytorch_psnr"] = round(_scores(refs, samples), 2)
    for precision in ("fp32", "fp16"):
        path = tmp / f"{name}_{precision}.onnx"
        result = export(str(ckpt), path, options=ExportOptions(precision=precision))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = _run_all(_ort_fn(session), spec, samples)
        row[f"{precision}_psnr"] = round(_scores(outs, samples), 2)
        row[f"{precision}_vs_torch"] = round(_worst_vs(outs, refs), 1)
        if precision == "fp16":
            row["fp16_islands"] = result.fp32_islands
            emu = emulate_fp16(onnx.load(str(path)))
            emu_outs = _run_all(lambda t: run_emulated(emu, [{"input": t}])[0], spec, samples)
            row["fp16_arith_psnr"] = round(_scores(emu_outs, samples), 2)
            row["fp16_arith_vs_torch"] = round(_worst_vs(emu_outs, refs), 1)
    if int8:
        q = tmp / f"{name}_int8.onnx"
        cmd = [sys.executable, "-m", "restormer_deploy.cli.quantize", str(tmp / f"{name}_fp32.onnx"), "--calib-dir",
               str(shared_dir() / calib), "--out", str(q), "--degrade", spec_text, "--threads", "1", "--calib-count", "8", "--calib-size", "128", "--verify-size", "128"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0 and q.is_file():
            session = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
            outs = _run_all(_ort_fn(session), spec, samples)
            row["int8_psnr"] = round(_scores(outs, samples), 2)
            row["int8_vs_torch"] = round(_worst_vs(outs, refs), 1)
        else:
            lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
            row["int8_error"] = (lines[-1] if lines else f"exit {proc.returncode}")[:200]
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def markdown(rows: list[dict]) -> str:
    out = ["| checkpoint | architecture | test | PyTorch | ONNX FP32 (vs PyTorch) | FP16 ORT (vs PyTorch) | "
           "FP16 arithmetic (vs PyTorch) | islands | INT8 (vs PyTorch) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        int8 = f"{r['int8_psnr']:.2f} ({r['int8_vs_torch']:.1f})" if "int8_psnr" in r else r.get("int8_error", "")
        out.append(f"| {r['checkpoint']} | {r['architecture']} | {r['test']} ({r['images']}) | {r['pytorch_psnr']:.2f} | "
                   f"{r['fp32_psnr']:.2f} ({r['fp32_vs_torch']:.1f}) | {r['fp16_psnr']:.2f} ({r['fp16_vs_torch']:.1f}) | "
                   f"{r['fp16_arith_psnr']:.2f} ({r['fp16_arith_vs_torch']:.1f}) | {r['fp16_islands']} | {int8} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-int8", action="store_true")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(PROTOCOLS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                rows.append(evaluate_checkpoint(name, Path(tmp), int8=not args.no_int8))
            except Exception as exc:
                rows.append({"checkpoint": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            print(json.dumps(rows[-1]), flush=True)
    good = [r for r in rows if "error" not in r]
    print(markdown(good))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
