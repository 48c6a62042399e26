"""Parity and latency of a TensorRT engine against PyTorch (used by scripts/verify_gpu.sh).

    python -m restormer_deploy.cli.verify_trt model.engine --reference default [--plugin-lib lib.so] [--json out.json]

Runs the engine with polygraphy's TrtRunner on the bundled sample image (cropped to fit the
engine's profile), compares it with the PyTorch model in FP32 (PSNR with peak 1 on outputs clamped
to [0, 1], as restore-export's self-check), then times ``--iterations`` runs (host-to-device and
back included). Exit 0 when the PSNR reaches the floor for the engine's precision, 1 when not,
2 on bad input or a runtime mismatch (core.check_runtime), 3 when anything else fails on the way
(TensorRT, CUDA, the plugin library): one ``error:`` line with the step and the message.
"""

from __future__ import annotations

import argparse
import json
import sys

from restormer_deploy.cli.common import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_RUN_FAILED
from restormer_deploy.engines.tensorrt.verify import verify_engine
from restormer_deploy.restormer.errors import BadInput, one_line
from restormer_deploy.restormer.fileio import atomic_write_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("engine")
    parser.add_argument("--reference", required=True, help="preset or checkpoint the engine was exported from")
    parser.add_argument("--weights")
    parser.add_argument("--plugin-lib", action="append", default=[])
    parser.add_argument("--size", type=int)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--min-psnr", type=float)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)
    try:
        result = verify_engine(args.engine, args.reference, args.weights, plugin_libs=args.plugin_lib, size=args.size,
                               iterations=args.iterations, min_psnr=args.min_psnr,
                               log=lambda m: print(m, file=sys.stderr))
    except (BadInput, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # TensorRT, CUDA, polygraphy: an error of this step, not a parity verdict
        print(f"error: running {args.engine} failed: {type(exc).__name__}: {one_line(exc) if str(exc).strip() else ''}",
              file=sys.stderr)
        return EXIT_RUN_FAILED
    data = result.to_json()
    print(json.dumps(data))
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(data, indent=2) + "\n")
    return 0 if result.passed else EXIT_CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
