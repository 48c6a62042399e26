"""INT8 of the built-in default model on ONNX Runtime's CPU: quality and speed against FP32, one run.

CBSD68 at sigma 25 (noise seeded per image), sorted by name and split into disjoint sets:
images 1-20 calibrate, 21-34 drive the sensitivity search, 35-68 are held out. The FP32 file is
exported (restore-export), then quantized as ``restore-quantize`` does (ONNX in, ONNX out:
``restormer_deploy.calibration.onnx_in.quantize_file``), which verifies it per held-out image
against the FP32 file. Then:

* quality: per held-out image PSNR of INT8 against FP32 and the task PSNR of both (full size);
* speed: FP32 against INT8 at every ``--sizes`` (default 256 and 512) and ``--threads`` (default 1:
  comparable on a shared machine), same session settings (``restormer_deploy.export.ort_session.make_session``),
  runs interleaved (FP32, INT8, FP32, ...: both see the same load), the first two of each dropped;
* ``--profile``: ONNX Runtime's per-op-type time of both files at the first size, one thread.

    python benchmarks/int8_default.py --json docs/results/int8_default.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from restormer_deploy.calibration.data import select_paths
from restormer_deploy.calibration.onnx_in import quantize_file
from restormer_deploy.calibration.options import Int8Options
from restormer_deploy.export.onnx_export import export
from restormer_deploy.export.ort_session import make_session
from restormer_deploy.restormer.presets import shared_dir

SPLIT = {"calib": (0, 20), "search": (20, 34), "test": (34, 68)}


def split_folders(data: Path, root: Path) -> dict[str, Path]:
    """Symlink folders holding the disjoint slices of the sorted image list."""
    paths = select_paths(data)
    if len(paths) < SPLIT["test"][1]:
        raise SystemExit(f"{data}: {len(paths)} images, the split needs {SPLIT['test'][1]}")
    out = {}
    for name, (a, b) in SPLIT.items():
        folder = root / name
        folder.mkdir()
        for p in paths[a:b]:
            (folder / p.name).symlink_to(p.resolve())
        out[name] = folder
    return out


def timed(files: dict[str, Path], size: int, threads: int, runs: int) -> dict:
    import time

    sessions = {k: make_session(str(p), threads=threads) for k, p in files.items()}
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs + 2):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: float(np.median(v[2:])) for k, v in times.items()}
    return {"fp32_ms": med["fp32"], "int8_ms": med["int8"], "speedup": med["fp32"] / med["int8"]}


def profile(path: Path, size: int, tmp: Path, runs: int = 3) -> dict[str, float]:
    """Mean ms per run of each op type (ONNX Runtime's profiler, one thread)."""
    sess = make_session(str(path), threads=1, profile_prefix=str(tmp / path.stem))
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(runs + 1):
        sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"] / 1e3 / (runs + 1)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=shared_dir() / "data" / "denoise" / "CBSD68")
    ap.add_argument("--method", default="minmax", help="calibration method (minmax | entropy | percentile)")
    ap.add_argument("--budget", type=float, default=0.3, help="--psnr-budget of the search (dB)")
    ap.add_argument("--runs", type=int, default=6, help="timed runs per file, size and thread count")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--held-out", type=int, default=34, help="held-out images verified (full size)")
    ap.add_argument("--profile", action="store_true", help="per-op-type time of both files at the first size")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    result: dict = {"model": "default", "data": str(args.data), "sigma": 25, "split": SPLIT, "method": args.method}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = split_folders(args.data, tmp)
        files = {"fp32": tmp / "fp32.onnx", "int8": tmp / "int8.onnx"}
        export("default", files["fp32"])
        opts = Int8Options(calib_dir=sets["calib"], calib_count=20, calib_method=args.method, degrade="noise:25",
                           search_dir=sets["search"], search_count=14, psnr_budget=args.budget, speed_check=False)
        q = quantize_file(files["fp32"], files["int8"], opts, verify_dir=sets["test"], verify_count=args.held_out,
                          verify_size=None, log=lambda line: print(line, flush=True))
        rep, check = q["int8"], q["verify"]
        rows = check["images"]
        result["int8"] = {"search_drop_db": rep["psnr"]["drop_db"], "int8_mac_share": rep["int8_mac_share"],
                          "layers_int8": rep["layers_int8"], "layers_total": rep["layers_total"],
                          "kept_in_fp32": rep["excluded"], "qdq": rep["qdq"]}
        result["held_out"] = {"count": len(rows), "min_psnr_vs_fp32": check["min_psnr_vs_fp32"],
                              "task_fp32": float(np.mean([r["task_fp32"] for r in rows])),
                              "task_int8": float(np.mean([r["task_int8"] for r in rows])),
                              "mean_task_drop": check["mean_task_drop"],
                              "max_task_drop": max(r["task_drop"] for r in rows), "passed": check["passed"]}
        h = result["held_out"]
        print(f"INT8: {rep['layers_int8']}/{rep['layers_total']} layers, MAC share {rep['int8_mac_share']:.1%}, search drop "
              f"{rep['psnr']['drop_db']:.3f} dB; {h['count']} held-out images: FP32 {h['task_fp32']:.2f} dB, INT8 "
              f"{h['task_int8']:.2f} dB (drop {h['mean_task_drop']:.3f}, worst {h['max_task_drop']:.3f}), "
              f"INT8 vs FP32 >= {h['min_psnr_vs_fp32']:.1f} dB", flush=True)

        speed = {}
        for threads in args.threads:
            for size in args.sizes:
                r = timed(files, size, threads, args.runs)
                speed[f"{size}x{threads}"] = {"size": size, "threads": threads, **r}
                print(f"{size}x{size}, {threads} thread(s): FP32 {r['fp32_ms']:.0f} ms, INT8 {r['int8_ms']:.0f} ms, "
                      f"INT8 speed-up {r['speedup']:.2f}x", flush=True)
        result["speed"] = speed
        if args.profile:
            result["profile_ms"] = {k: profile(p, args.sizes[0], tmp) for k, p in files.items()}
            for k, ops in result["profile_ms"].items():
                print(f"profile {k} {args.sizes[0]}²: " + ", ".join(f"{op} {ms:.0f}" for op, ms in list(ops.items())[:10]))

    print("\n| | FP32 | INT8 (restore-quantize, ORT CPU file) |\n|---|---:|---:|\n"
          f"| {h['count']} held-out CBSD68, sigma 25 (dB) | {h['task_fp32']:.2f} | {h['task_int8']:.2f} "
          f"(−{h['mean_task_drop']:.3f}) |")
    for r in speed.values():
        print(f"| {r['size']}² latency, {r['threads']} thread (ms) | {r['fp32_ms']:.0f} | {r['int8_ms']:.0f} "
              f"({r['speedup']:.2f}x) |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
