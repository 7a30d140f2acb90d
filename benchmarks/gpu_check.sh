#!/usr/bin/env bash
# GPU check for lesionaug, in one call on a lent GPU machine.
#
# It installs onnxruntime-gpu from wheel parts carried to the machine (the wheel is ~255 MB, one
# call carries at most 64 MiB, so it travels split over consecutive calls and is joined here),
# installs any other carried wheels the machine lacks, loads CUDA/cuDNN from torch's CUDA build
# (onnxruntime.preload_dlls), then runs benchmarks/gpu_bench.py: a Stable-Diffusion-shaped model
# built from configs, exported fp16, images/s at 512x512, 20 steps, batch 1 and 8 on the TensorRT EP
# (reported as absent when TensorRT is not installed), the CUDA EP and diffusers fp16, with NaN and
# black-image counts. JSON goes to benchmarks/results/gpu_check.json (written after every stage).
#
# Usage:
#   benchmarks/gpu_check.sh --prepare dist/gpu-wheels     # here, with a package registry: fetch cp312
#                                                         # wheels, split onnxruntime-gpu into 60 MB parts
#   (carry dist/gpu-wheels/<one part> per call; every part stays on the warm machine)
#   benchmarks/gpu_check.sh [--wheels dist/gpu-wheels] [--out FILE] [-- gpu_bench.py options]
#   benchmarks/gpu_check.sh --cpu-smoke                   # toy size, CPU provider, no installs: proves
#                                                         # the script works on a machine without a GPU
# Environment: PYTHON (default python3), GPU_CHECK_TIMEOUT (seconds for the benchmark, default 540).
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS="dist/gpu-wheels"
OUT=""
MODE="gpu"
PREPARE_DIR=""
EXTRA=()
ORT_VERSION="${ORT_VERSION:-1.31.1}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-smoke) MODE="cpu-smoke"; shift ;;
    --prepare) MODE="prepare"; PREPARE_DIR="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$OUT" ]]; then
  if [[ "$MODE" == "cpu-smoke" ]]; then OUT="benchmarks/results/gpu_check_cpu_smoke.json"; else OUT="benchmarks/results/gpu_check.json"; fi
fi

log() { echo "[gpu_check] $*" >&2; }

prepare() {
  # Fetch wheels for the GPU machine (Python 3.12, manylinux x86-64) and split the large one.
  local dir="$1"
  mkdir -p "$dir"
  local pins=()
  for pkg in diffusers transformers onnx onnxscript platformdirs typer rich huggingface-hub tokenizers \
             safetensors; do
    local v
    v="$("$PY" -c "from importlib.metadata import version; print(version('$pkg'))" 2>/dev/null || true)"
    [[ -n "$v" ]] && pins+=("$pkg==$v")
  done
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform any -d "$dir" "onnxruntime-gpu==$ORT_VERSION" "${pins[@]}"
  local wheel
  wheel="$(ls "$dir"/onnxruntime_gpu-*.whl | head -n 1)"
  sha256sum "$wheel" | awk '{print $1}' > "$wheel.sha256"
  split -b 60M -d "$wheel" "$wheel.part-"
  rm -f "$wheel"
  log "wheels in $dir; carry each $wheel.part-NN in its own call (plus the .sha256 and small wheels)"
  ls -l "$dir" >&2
}

install_onnxruntime_gpu() {
  if "$PY" - <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if any(d.metadata["Name"] == "onnxruntime-gpu" for d in m.distributions()) else 1)
EOF
  then
    log "onnxruntime-gpu already installed"
    return
  fi
  local parts=("$WHEELS"/onnxruntime_gpu-*.whl.part-*)
  if [[ ! -e "${parts[0]}" ]]; then
    log "no onnxruntime-gpu wheel parts in $WHEELS: carry them (see --prepare); CUDA/TensorRT will be absent"
    return
  fi
  local wheel="${parts[0]%.part-*}"
  local joined="/tmp/$(basename "$wheel")"
  cat "${parts[@]}" > "$joined"
  if [[ -f "$wheel.sha256" ]]; then
    echo "$(cat "$wheel.sha256")  $joined" | sha256sum -c - >&2 || { log "joined wheel is corrupt"; exit 4; }
  fi
  # The CPU and GPU packages share one import name; removing one after installing both breaks it.
  "$PY" -m pip uninstall -y onnxruntime >&2 || true
  "$PY" -m pip install --no-index --no-deps --force-reinstall "$joined" >&2
  log "installed $(basename "$joined")"
}

install_missing_modules() {
  local missing
  missing="$("$PY" - <<'EOF'
import importlib.util
mods = {"diffusers": "diffusers", "transformers": "transformers", "onnx": "onnx", "onnxscript": "onnxscript",
        "platformdirs": "platformdirs", "typer": "typer", "rich": "rich", "safetensors": "safetensors"}
print(" ".join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod) is None))
EOF
)"
  [[ -z "$missing" ]] && return
  log "missing here: $missing; installing carried wheels from $WHEELS"
  local wheels=()
  for pkg in $missing; do
    local pattern="${pkg//-/_}-*.whl"
    for w in "$WHEELS"/$pattern; do [[ -e "$w" ]] && wheels+=("$w"); done
  done
  if [[ ${#wheels[@]} -gt 0 ]]; then
    "$PY" -m pip install --no-index --no-deps "${wheels[@]}" >&2
  fi
}

run_bench() {
  local timeout_s="${GPU_CHECK_TIMEOUT:-540}"
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  export HF_HUB_OFFLINE=1
  timeout "$timeout_s" "$PY" benchmarks/gpu_bench.py --out "$OUT" "$@"
}

case "$MODE" in
  prepare)
    prepare "$PREPARE_DIR"
    ;;
  cpu-smoke)
    log "CPU smoke run: toy model, CPU provider, diffusers fp32"
    run_bench --cpu-smoke --batches 1 2 --steps 2 ${EXTRA[@]+"${EXTRA[@]}"}
    ;;
  gpu)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || log "nvidia-smi not found"
    install_onnxruntime_gpu
    install_missing_modules
    "$PY" - <<'EOF' >&2
import contextlib, io, onnxruntime as ort
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    ort.preload_dlls()
print("onnxruntime", ort.__version__, "providers", ort.get_available_providers(), buf.getvalue().strip())
EOF
    run_bench ${EXTRA[@]+"${EXTRA[@]}"}
    ;;
esac
log "results: $OUT"
