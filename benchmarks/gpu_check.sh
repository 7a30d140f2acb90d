#!/usr/bin/env bash
# GPU check for lesionaug: engines exported here, measured on a lent GPU machine in one short run.
#
# What it checks (benchmarks/gpu_check.py): the compact "small" model and a mid-size latent model,
# each exported fp32 and fp16 here on the CPU, loaded on the TensorRT provider (built for a 1..8 job
# profile, with a timing cache; reported absent with the reason where TensorRT is not installed) and
# the CUDA provider; parity (compact: against its images on the CPU provider, made here; latent:
# against diffusers' StableDiffusionControlNetPipeline on CUDA torch, fp32 and fp16); the throughput
# table (batch 1 and 8, images/s and the share of a measured fp16 matmul peak) against diffusers fp16;
# and CUDA graphs forced once on the exported denoiser. JSON: benchmarks/results/gpu_check.json.
#
# How onnxruntime-gpu reaches a machine without a package registry: the machine has CUDA torch
# (and with it the nvidia-* CUDA 13 / cuDNN 9 libraries onnxruntime-gpu loads through
# onnxruntime.preload_dlls) and the CPU onnxruntime, but not onnxruntime-gpu, whose wheel
# (1.31.1, CUDA 13, cp312) is 256 MB, mostly libonnxruntime_providers_cuda.so, while one call
# carries at most 64 MiB with the working tree. So the wheel travels in parts, one per call, kept
# on the warm machine between calls (carried files stay until named again), joined and checked
# against its sha256 there, and installed with pip --no-index --target /tmp/site, which goes first
# on PYTHONPATH (the machine's CPU onnxruntime is left alone: uninstalling one of the two breaks
# the other). diffusers, importlib_metadata and platformdirs, which the machine lacks, travel as
# wheels beside the last part. TensorRT itself (tensorrt-cu13-libs, over 1 GB) cannot travel; its
# provider is reported absent unless the machine has libnvinfer.
#
# Usage:
#   benchmarks/gpu_check.sh --prepare     # here (CPU + registry): engines, references and wheels in
#                                         # .gpu-check/ (in .gitignore: it travels only when carried),
#                                         # the big wheel in parts
#   benchmarks/gpu_check.sh --carry-plan  # the device calls to make: what each carries, what it runs
#   benchmarks/gpu_check.sh               # on the GPU machine (the last call): install, then check
#   benchmarks/gpu_check.sh --cpu-smoke   # here: every step but the GPU ones, at toy settings
# Environment: PYTHON (default python3), GPU_CHECK_TIMEOUT (seconds for the check, default 540),
# PART_BYTES (wheel part size, default 53 MiB: a part and the working tree fit in one call).
# Device time: the first call starts the machine (1-2 min), the other four part calls take seconds
# each, and the last runs the check (GPU_CHECK_TIMEOUT, 9 min at most): under 12 minutes in all.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
ROOT=".gpu-check"
ORT_WHEEL_VERSION="${ORT_VERSION:-1.31.1}"
SMALL_WHEELS=("diffusers==0.42.1" "importlib_metadata" "platformdirs")
MODE="gpu"
case "${1:-}" in
  --prepare) MODE="prepare" ;;
  --carry-plan) MODE="carry-plan" ;;
  --cpu-smoke) MODE="cpu-smoke" ;;
  -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
  "") ;;
  *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac

log() { echo "[gpu_check] $*" >&2; }

fetch_wheels() {  # <dir> <requirement>...: cp312 manylinux wheels for the GPU machine, no dependencies
  local dir="$1"; shift
  mkdir -p "$dir"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" "$@"
}

split_wheel() {  # <wheel> <parts dir>: parts of PART_BYTES bytes plus the whole wheel's sha256
  local wheel="$1" parts="$2"
  mkdir -p "$parts"
  sha256sum "$wheel" | awk '{print $1}' > "$parts/$(basename "$wheel").sha256"
  split -b "${PART_BYTES:-55574528}" -d -a 2 "$wheel" "$parts/$(basename "$wheel").part-"
}

install_from_parts() {  # <parts dir> <small wheels dir> <target>: join, verify, install without an index
  local parts="$1" small="$2" target="$3"
  local first; first="$(ls "$parts"/*.whl.part-* 2>/dev/null | head -n 1 || true)"
  if [[ -z "$first" ]]; then
    log "no wheel parts in $parts: carry them first (--carry-plan); GPU providers will be absent"
  else
    local name; name="$(basename "${first%.part-*}")"
    local joined="/tmp/$name"
    cat "$parts/$name".part-* > "$joined"
    echo "$(cat "$parts/$name.sha256")  $joined" | sha256sum -c --quiet - || { log "joined $name is corrupt"; exit 4; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$target" "$joined"
    log "installed $name into $target"
  fi
  if compgen -G "$small/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$target" "$small"/*.whl
  fi
}

run_check() {  # <prepared dir> <out json> [gpu_check.py run options]
  local prepared="$1" out="$2"; shift 2
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  timeout "${GPU_CHECK_TIMEOUT:-540}" "$PY" benchmarks/gpu_check.py run --prepared "$prepared" --out "$out" "$@"
}

case "$MODE" in
  prepare)
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
    "$PY" benchmarks/gpu_check.py prepare --prepared "$ROOT/prepared"
    rm -rf "$ROOT/wheels" "$ROOT/parts" "$ROOT/download"
    fetch_wheels "$ROOT/wheels" "${SMALL_WHEELS[@]}"
    fetch_wheels "$ROOT/download" "onnxruntime-gpu==$ORT_WHEEL_VERSION"
    split_wheel "$(ls "$ROOT"/download/onnxruntime_gpu-*.whl)" "$ROOT/parts"
    rm -rf "$ROOT/download"
    du -sh "$ROOT"/prepared "$ROOT"/models "$ROOT"/wheels "$ROOT"/parts/* >&2
    ;;
  carry-plan)
    # Each call carries at most 64 MiB with the working tree (about 7.6 MB): a 53 MiB part each; the
    # last, smaller part (33 MB) with the small wheels (6.5 MB) and the latent model folder for
    # diffusers (10 MB); then the prepared engines and references (56 MB) alone in the last call,
    # which runs the check. Carried files stay on the warm machine until named again.
    parts=("$ROOT"/parts/*.part-*)
    [[ -e "${parts[0]}" ]] || { log "nothing prepared: run --prepare first"; exit 3; }
    last=$(( ${#parts[@]} - 1 ))
    for i in "${!parts[@]}"; do
      extra=""
      [[ $i -eq $last ]] && extra=", \"$ROOT/wheels\", \"$ROOT/models\""
      echo "call $((i + 1)): carry [\"${parts[$i]}\"$extra]; command: ls -l $ROOT/parts; timeout_s 60"
    done
    echo "call $(( ${#parts[@]} + 1 )): carry [\"$ROOT/prepared\", \"$ROOT/parts/$(basename "${parts[0]%.part-*}").sha256\"];" \
         "command: set -o pipefail; bash benchmarks/gpu_check.sh 2>&1 | tee \$OUT/log;" \
         "cp benchmarks/results/gpu_check.json \$OUT/; timeout_s 600"
    du -sh "$ROOT/prepared" "$ROOT/models" "$ROOT/wheels" >&2
    ;;
  cpu-smoke)
    smoke=".gpu-check-smoke"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
    log "1/3 prepare at smoke size (the same exports as --prepare; latent model at 128 px)"
    if [[ -f "$smoke/prepared/meta.json" && -z "${GPU_CHECK_FRESH:-}" ]]; then
      log "kept the earlier smoke preparation (GPU_CHECK_FRESH=1 redoes it)"
    else
      "$PY" benchmarks/gpu_check.py prepare --prepared "$smoke/prepared" --cpu-smoke
    fi
    log "2/3 a wheel through the parts path: split, carry, join, verify, install without an index"
    rm -rf "$smoke/parts" "$smoke/site"
    wheel="$(ls "$smoke"/wheels/platformdirs-*.whl 2>/dev/null | head -n 1 || true)"
    if [[ -z "$wheel" ]]; then fetch_wheels "$smoke/wheels" platformdirs; wheel="$(ls "$smoke"/wheels/platformdirs-*.whl)"; fi
    PART_BYTES=40000 split_wheel "$wheel" "$smoke/parts"
    install_from_parts "$smoke/parts" "$smoke/no-small-wheels" "$smoke/site"
    PYTHONPATH="$smoke/site" "$PY" -c "import os, platformdirs
assert os.path.realpath(platformdirs.__file__).startswith(os.path.realpath('$smoke/site')), platformdirs.__file__"
    log "3/3 the check on the CPU provider (diffusers fp32 on the CPU)"
    run_check "$smoke/prepared" benchmarks/results/gpu_check_cpu_smoke.json --cpu-smoke --steps 2 --parity-steps 2 \
      --batches 1 2
    ;;
  gpu)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || log "nvidia-smi not found"
    install_from_parts "$ROOT/parts" "$ROOT/wheels" /tmp/site
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" - <<'EOF' >&2
import contextlib, io, onnxruntime as ort
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    ort.preload_dlls()
print("onnxruntime", ort.__version__, ort.__file__, "providers", ort.get_available_providers(), buf.getvalue().strip())
EOF
    run_check "$ROOT/prepared" benchmarks/results/gpu_check.json
    ;;
esac
