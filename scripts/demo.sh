#!/usr/bin/env bash
# The main job end to end on generated example data (run by `make demo`).
set -euo pipefail
OUT=${DEMO_DIR:-example}
rm -rf "$OUT"
lesionaug demo-data "$OUT" --n 120 --layout isic2018 --size 128 --seed 0
lesionaug info "$OUT"
