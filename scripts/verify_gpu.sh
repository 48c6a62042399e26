#!/usr/bin/env bash
# One-command TensorRT check on a machine with an NVIDIA GPU (x86-64 or Jetson), see docs/TENSORRT.md.
#
#   scripts/verify_gpu.sh                       # default model, FP32 + FP16 (+ INT8 with CALIB_DIR)
#   CALIB_DIR=~/images scripts/verify_gpu.sh    # also INT8 (restore-export --precision int8 --calib-dir)
#
# Steps: build the Converse2D plugin with CMake; export FP32/FP16/INT8 ONNX files for TensorRT of the
# default model and (to exercise the plugin) of PLUGIN_MODEL with the Converse2D lowerings (plugin,
# matmul, and dft on TensorRT 11.2+); lint them for the installed TensorRT; build engines (strongly typed, --tile profile, timing cache); run each against PyTorch
# (PSNR, peak 1, clamped outputs) and time it; print one table. Exit 1 when any step fails; each
# row says which (export/lint, build, PSNR below floor, verify error with its message).
#
# Environment (all optional):
#   PYTHON            python with this project and tensorrt (default: .venv/bin/python, else python3)
#   OUT               output folder (default: out/gpu_verify)
#   TILE              profile tile size, also the test size (default 256)
#   CALIB_DIR         calibration images for INT8 (skipped without it)
#   PLUGIN_MODEL      a Converse model for the plugin rows (default converse-dncnn; "none" to skip)
#   PLUGIN_WEIGHTS    --weights for PLUGIN_MODEL (an official .pth), if its preset has none
#   TENSORRT_INCLUDE_DIR  TensorRT headers for the plugin build (default: searched)
#   CMAKE_ARGS        extra CMake arguments for the plugin (e.g. -DCMAKE_CUDA_ARCHITECTURES=89-real)
#   DLA_CORE          Jetson: also build the FP16 default model for this DLA core (fixed TILE shape)
#   ITERATIONS        timed runs per engine (default 50)
set -u -o pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-out/gpu_verify}
TILE=${TILE:-256}
ITERATIONS=${ITERATIONS:-50}
PLUGIN_MODEL=${PLUGIN_MODEL:-converse-dncnn}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
status=0

say() { printf '\n== %s\n' "$*" >&2; }
row() {  # name precision lowering status [verify-json]
  "$PYTHON" - "$@" >> "$RESULTS" <<'EOF'
import json, sys
name, precision, lowering, status, *rest = sys.argv[1:]
row = {"name": name, "precision": precision, "lowering": lowering, "status": status}
if rest:
    try:
        row.update(json.load(open(rest[0])))
    except (OSError, ValueError):
        pass
print(json.dumps(row))
EOF
}

say "TensorRT and GPU"
if ! TRT_VERSION=$("$PYTHON" -c "import tensorrt; print(tensorrt.__version__)" 2>"$OUT/tensorrt_import.log"); then
  echo "error: $PYTHON cannot import tensorrt (see $OUT/tensorrt_import.log)." >&2
  echo "  x86-64: pip install 'tensorrt>=10.3' in the venv; Jetson: python3 -m venv --system-site-packages .venv" >&2
  echo "  (JetPack 6.1/6.2: TensorRT 10.3; 7.0/7.1: 10.13; 7.2: 10.16; from python3-libnvinfer). See docs/TENSORRT.md." >&2
  exit 2
fi
echo "TensorRT $TRT_VERSION" >&2
# The lint knows releases up to allowlist.NEWEST; a newer TensorRT is linted as that one (with a note).
if ! CHECK_TRT=$("$PYTHON" -m restormer_deploy.cli.lint_trt --version-for "$TRT_VERSION" 2>"$OUT/lint_version.log"); then
  echo "error: $(cat "$OUT/lint_version.log")" >&2
  exit 2
fi
[[ -s "$OUT/lint_version.log" ]] && cat "$OUT/lint_version.log" >&2  # the notice of lint.choose_version, if any
DFT_OK=$("$PYTHON" -c "from restormer_deploy.export.contract import parse_version as p; print(int(p('$TRT_VERSION')[:2] >= (11, 2)))")
JETSON=""
if [[ -f /etc/nv_tegra_release ]] || uname -m | grep -q aarch64; then
  CC=$("$PYTHON" -c "from restormer_deploy.engines.tensorrt.builder import gpu_info; print(gpu_info()[1])" 2>/dev/null || echo "")
  case "$CC" in 8.7) JETSON=orin ;; 11.0|10.1) JETSON=thor ;; esac
fi

say "Converse2D plugin (CMake)"
PLUGIN_LIB=""
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="$PATH:/usr/local/cuda/bin"  # JetPack and the CUDA .run installer put nvcc here, off the PATH
fi
if [[ -z "${TENSORRT_INCLUDE_DIR:-}" ]]; then
  for d in /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/include /usr/local/tensorrt/include; do
    if [[ -f "$d/NvInferRuntime.h" ]]; then TENSORRT_INCLUDE_DIR=$d; break; fi
  done
fi
if [[ -n "${TENSORRT_INCLUDE_DIR:-}" ]] && command -v cmake >/dev/null; then
  # shellcheck disable=SC2086
  if cmake -S engines/plugins/converse2d -B build/converse2d -DCMAKE_BUILD_TYPE=Release \
        -DTENSORRT_INCLUDE_DIR="$TENSORRT_INCLUDE_DIR" ${JETSON:+-DCONVERSE2D_JETSON=$JETSON} ${CMAKE_ARGS:-} \
        > "$OUT/plugin_cmake.log" 2>&1 \
     && cmake --build build/converse2d -j"$(nproc)" >> "$OUT/plugin_cmake.log" 2>&1; then
    PLUGIN_LIB=build/converse2d/libconverse2d_plugin.so
    echo "built $PLUGIN_LIB" >&2
  else
    echo "warning: the plugin build failed (see $OUT/plugin_cmake.log): plugin rows are skipped" >&2
  fi
elif [[ -z "${TENSORRT_INCLUDE_DIR:-}" ]]; then
  echo "warning: no TensorRT C++ headers (NvInferRuntime.h) found: plugin rows are skipped." >&2
  echo "  pip's tensorrt wheel ships no headers. Install them with the libnvinfer-dev package (apt; JetPack" >&2
  echo "  has it), or unpack NVIDIA's TensorRT tar/zip of the same version and set TENSORRT_INCLUDE_DIR=<it>/include." >&2
else
  echo "warning: cmake not found: plugin rows are skipped (pip install cmake)" >&2
fi
if ! command -v nvcc >/dev/null; then
  echo "note: nvcc not found (PATH, /usr/local/cuda/bin): the plugin needs the CUDA toolkit" >&2
fi

export_onnx() {  # model precision lowering out [extra args...]
  local model=$1 precision=$2 lowering=$3 onnx=$4; shift 4
  "$PYTHON" -m restormer_deploy.cli.export "$model" --precision "$precision" --converse-lowering "$lowering" \
      --out "$onnx" --check-trt "$CHECK_TRT" "$@" > "${onnx%.onnx}.export.log" 2>&1
}

engine_and_verify() {  # name model precision lowering onnx [weights]
  local name=$1 model=$2 precision=$3 lowering=$4 onnx=$5 weights=${6:-}
  local engine="${onnx%.onnx}.engine" plugin_args=()
  if [[ -n "$PLUGIN_LIB" ]]; then plugin_args=(--plugin-lib "$PLUGIN_LIB"); fi
  local profile=(--tile "$TILE") channels
  if [[ -n "$DLA" ]]; then  # DLA: fixed shapes
    channels=$("$PYTHON" -c "import onnx,sys; m=onnx.load(sys.argv[1], load_external_data=False); print({p.key: p.value for p in m.metadata_props}['in_channels'])" "$onnx")
    profile=(--min-shape "1x${channels}x${TILE}x${TILE}" --opt-shape "1x${channels}x${TILE}x${TILE}" --max-shape "1x${channels}x${TILE}x${TILE}" --dla-core "$DLA")
  fi
  if ! "$PYTHON" -m restormer_deploy.cli.export "$onnx" --format trt --out "$engine" "${profile[@]}" \
        --timing-cache "$OUT/timing.cache" "${plugin_args[@]}" \
        > "${engine%.engine}.build.log" 2>&1; then
    echo "engine build failed: $(tail -n 3 "${engine%.engine}.build.log")" >&2
    row "$name" "$precision" "$lowering" "build failed"; status=1; return
  fi
  local vjson="${engine%.engine}.verify.json"
  "$PYTHON" -m restormer_deploy.cli.verify_trt "$engine" --reference "$model" ${weights:+--weights "$weights"} \
      "${plugin_args[@]}" --iterations "$ITERATIONS" --json "$vjson" > "${engine%.engine}.verify.log" 2>&1
  local rc=$?
  case $rc in
    0) row "$name" "$precision" "$lowering" "ok" "$vjson" ;;
    1) row "$name" "$precision" "$lowering" "PSNR below floor" "$vjson"; status=1 ;;
    *) echo "verify error (exit $rc): $(grep -m1 '^error:' "${engine%.engine}.verify.log" || tail -n 3 "${engine%.engine}.verify.log")" >&2
       row "$name" "$precision" "$lowering" "verify error (exit $rc)"; status=1 ;;
  esac
}

run_one() {  # name model precision lowering [weights] [export args...]
  local name=$1 model=$2 precision=$3 lowering=$4 weights=${5:-}; shift 5 || shift $#
  local onnx="$OUT/${name}_${precision}_${lowering}.onnx"
  say "$name $precision ($lowering)"
  local rc=0
  export_onnx "$model" "$precision" "$lowering" "$onnx" ${weights:+--weights "$weights"} "$@" || rc=$?
  if [[ $rc -eq 4 ]]; then  # --check-trt: nothing refused, some form not verified: TensorRT itself decides
    echo "note: lint: some nodes not verified for TensorRT $CHECK_TRT (see ${onnx%.onnx}.export.log); building" >&2
    rc=0
  fi
  if [[ $rc -ne 0 ]]; then
    local log="${onnx%.onnx}.export.log"
    if grep -q "No such option" "$log"; then
      echo "skipped: this restore-export has no $(grep -o "No such option: [^ ]*" "$log" | head -1 | cut -d' ' -f4) yet" >&2
      row "$name" "$precision" "$lowering" "skipped (option missing)"; return
    fi
    if grep -q -i "weights for .* not found\|has no default weights" "$log"; then
      echo "skipped: no weights for $model ($(grep -i -m1 "not found\|no default weights" "$log"))" >&2
      row "$name" "$precision" "$lowering" "skipped (no weights)"; return
    fi
    echo "export or lint failed: $(tail -n 5 "$log")" >&2
    row "$name" "$precision" "$lowering" "export/lint failed"; status=1; return
  fi
  engine_and_verify "$name" "$model" "$precision" "$lowering" "$onnx" "$weights"
}

DLA=""
for precision in fp32 fp16; do
  run_one default default "$precision" function ""
done
if [[ -n "${CALIB_DIR:-}" ]]; then
  run_one default default int8 function "" --calib-dir "$CALIB_DIR"
else
  echo "INT8 skipped: set CALIB_DIR to a folder of clean images" >&2
  row default int8 function "skipped (no CALIB_DIR)"
fi
if [[ -n "${DLA_CORE:-}" ]]; then
  DLA=$DLA_CORE run_one default_dla default fp16 function ""
fi
if [[ "$PLUGIN_MODEL" != none ]]; then
  for precision in fp32 fp16; do
    if [[ -n "$PLUGIN_LIB" ]]; then
      run_one "$PLUGIN_MODEL" "$PLUGIN_MODEL" "$precision" function "${PLUGIN_WEIGHTS:-}"
    else
      row "$PLUGIN_MODEL" "$precision" function "skipped (no plugin)"
    fi
    run_one "$PLUGIN_MODEL" "$PLUGIN_MODEL" "$precision" matmul "${PLUGIN_WEIGHTS:-}"
    if [[ "$DFT_OK" == 1 ]]; then  # TensorRT 11.2+ parses ONNX DFT: no plugin library
      run_one "$PLUGIN_MODEL" "$PLUGIN_MODEL" "$precision" dft "${PLUGIN_WEIGHTS:-}"
    else
      row "$PLUGIN_MODEL" "$precision" dft "skipped (TensorRT < 11.2)"
    fi
  done
fi

say "Results (TensorRT $TRT_VERSION, tile $TILE, $OUT)"
"$PYTHON" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
head = ("model", "precision", "Converse2D", "status", "PSNR vs torch", "median ms", "p90 ms", "GPU")
fmt = lambda v, f: (f % v) if isinstance(v, (int, float)) else "-"
table = [head] + [(r["name"], r["precision"], r["lowering"], r["status"], fmt(r.get("psnr_vs_torch"), "%.1f dB"),
                   fmt(r.get("median_ms"), "%.2f"), fmt(r.get("p90_ms"), "%.2f"), r.get("gpu", "-")) for r in rows]
widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
for i, row in enumerate(table):
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if i == 0:
        print("  ".join("-" * w for w in widths))
EOF
exit $status
