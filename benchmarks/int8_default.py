"""INT8 of the built-in default model, verified in ONNX Runtime on the CPU (issue: INT8 item 6).

CBSD68 at sigma 25 (noise seeded per image), sorted by name and split into disjoint sets:
images 1-20 calibrate, 21-34 drive the sensitivity search, 35-68 test. Exports FP32, INT8 with
FP32 fallback (the ONNX Runtime CPU file) and INT8 with FP16 fallback (the TensorRT file), then:

* task PSNR on the 34 full-size test images of FP32 and both INT8 files, and the drop;
* latency at 256x256, FP32 against INT8 (FP32 fallback), interleaved in one run, same session
  settings (``restormer_deploy.export.ort_session.make_session``), 1 and 2 threads.

    python benchmarks/int8_default.py --json docs/results/int8_default.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import latency_ms  # noqa: E402

from restormer_deploy.calibration.data import load_images, select_paths  # noqa: E402
from restormer_deploy.calibration.int8 import Int8Options, Int8Quantizer  # noqa: E402
from restormer_deploy.calibration.search import run_set, task_psnr  # noqa: E402
from restormer_deploy.export.onnx_export import ExportOptions, export  # noqa: E402
from restormer_deploy.export.ort_session import cpu_session, make_session  # noqa: E402
from restormer_deploy.restormer.presets import PRESETS, shared_dir  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=shared_dir() / "data" / "denoise" / "CBSD68")
    ap.add_argument("--method", default="minmax", help="calibration method (minmax | entropy | percentile)")
    ap.add_argument("--budget", type=float, default=0.3, help="--psnr-budget of the search (dB)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per backend and thread count")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    spec = PRESETS["default"]
    result: dict = {"model": spec.name, "data": str(args.data), "sigma": 25, "split": SPLIT, "method": args.method}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = split_folders(args.data, tmp)
        files = {"fp32": tmp / "fp32.onnx", "int8_fp32": tmp / "int8_fp32.onnx", "int8_fp16": tmp / "int8_fp16.onnx"}
        export("default", files["fp32"])
        for fallback in ("fp32", "fp16"):
            opts = Int8Options(calib_dir=sets["calib"], calib_count=20, calib_method=args.method,
                               degrade="noise:25", search_dir=sets["search"], search_count=14,
                               psnr_budget=args.budget, fallback=fallback)
            r = export("default", files[f"int8_{fallback}"], options=ExportOptions(precision="int8"),
                       quantizer=Int8Quantizer(opts))
            rep = r.int8
            result[f"int8_{fallback}_export"] = {
                "search_drop_db": rep["psnr"]["drop_db"], "int8_mac_share": rep["int8_mac_share"],
                "layers_int8": rep["layers_int8"], "layers_total": rep["layers_total"],
                "kept_in_fallback": rep["excluded"], "self_check_psnr_vs_pytorch": r.psnr_vs_torch}
            print(f"INT8 ({fallback} fallback): search drop {rep['psnr']['drop_db']:.3f} dB, "
                  f"{rep['layers_int8']}/{rep['layers_total']} layers, MAC share {rep['int8_mac_share']:.1%}", flush=True)

        test = load_images(select_paths(sets["test"]), spec, None, "noise:25", seed=0, what="test")
        scores = {}
        for name, path in files.items():
            scores[name] = task_psnr(run_set(cpu_session(path, threads=2, level="all"), test), test)
        result["test_psnr"] = scores
        result["test_drop_db"] = {k: scores["fp32"] - scores[k] for k in ("int8_fp32", "int8_fp16")}
        print(f"34 test images: FP32 {scores['fp32']:.3f} dB, INT8/fp32 {scores['int8_fp32']:.3f} dB "
              f"(drop {result['test_drop_db']['int8_fp32']:.3f}), INT8/fp16 {scores['int8_fp16']:.3f} dB "
              f"(drop {result['test_drop_db']['int8_fp16']:.3f})", flush=True)

        x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
        speed = {}
        for threads in (1, 2):
            sessions = {k: make_session(str(files[k]), threads=threads) for k in ("fp32", "int8_fp32")}
            feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
            times: dict[str, list[float]] = {k: [] for k in sessions}
            for _ in range(args.runs):  # interleaved: both see the same machine load
                for k, s in sessions.items():
                    times[k].append(latency_ms(lambda: s.run(None, feeds[k]), runs=1, warmup=0)[0])
            for k in sessions:  # warm-up runs are the first two of each list
                times[k] = sorted(times[k][2:])
            med = {k: float(np.median(v)) for k, v in times.items()}
            speed[threads] = {"fp32_ms": med["fp32"], "int8_ms": med["int8_fp32"], "speedup": med["fp32"] / med["int8_fp32"]}
            print(f"{args.size}x{args.size}, {threads} thread(s): FP32 {med['fp32']:.1f} ms, INT8 {med['int8_fp32']:.1f} ms, "
                  f"INT8 speed-up {speed[threads]['speedup']:.2f}x", flush=True)
        result["speed"] = speed

    print(f"\n| | FP32 | INT8 (fp32 fallback, ORT CPU) | INT8 (fp16 fallback, TensorRT file) |\n|---|---:|---:|---:|\n"
          f"| CBSD68 test 34, sigma 25 (dB) | {scores['fp32']:.2f} | {scores['int8_fp32']:.2f} | {scores['int8_fp16']:.2f} |\n"
          f"| drop vs FP32 (dB) | | {result['test_drop_db']['int8_fp32']:.3f} | {result['test_drop_db']['int8_fp16']:.3f} |\n"
          f"| {args.size}² latency 1 thread (ms) | {speed[1]['fp32_ms']:.0f} | {speed[1]['int8_ms']:.0f} ({speed[1]['speedup']:.2f}x) | n/a on CPU |\n"
          f"| {args.size}² latency 2 threads (ms) | {speed[2]['fp32_ms']:.0f} | {speed[2]['int8_ms']:.0f} ({speed[2]['speedup']:.2f}x) | n/a on CPU |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
