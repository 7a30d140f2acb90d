#!/usr/bin/env bash
# The main job end to end on generated example data (run by `make demo`).
set -euo pipefail
OUT=${DEMO_DIR:-example}
rm -rf "$OUT" "$OUT-augmented"
lesionaug demo-data "$OUT" --n 120 --layout isic2018 --size 128 --seed 0
lesionaug info "$OUT"
# No model given: the compact model is trained on the example data's training split (a few minutes
# on a 2-core CPU), exported to ONNX and cached for the next run, then 100 new pairs are generated.
lesionaug augment "$OUT" --n 100 --size 128 --steps 10
lesionaug verify "$OUT-augmented"
lesionaug info "$OUT-augmented"
