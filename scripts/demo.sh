#!/usr/bin/env bash
# The main job end to end on generated example data (run by `make demo`): example data -> compact
# model trained from nothing -> augmented dataset, verified -> segmenters with and without the
# synthetic pairs, scored on the real test split -> image quality and mask fidelity -> report.
set -euo pipefail
OUT=${DEMO_DIR:-example}
N_SYNTHETIC=${DEMO_N:-200}
start=$SECONDS
rm -rf "$OUT" "$OUT-augmented" "$OUT-report"

# 1. Example data: 120 pairs in the ISIC 2018 layout (72 train / 18 val / 30 test).
lesionaug demo-data "$OUT" --n 120 --layout isic2018 --size 128 --seed 0
lesionaug info "$OUT"

# 2. No model given: the compact model is trained on the training split (a few minutes on a
#    2-core CPU), exported to ONNX and cached for the next run; then the new pairs are generated.
result=$(lesionaug augment "$OUT" --n "$N_SYNTHETIC" --size 128 --steps 10 --json)
engine=$(printf '%s' "$result" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["engine"])')
lesionaug verify "$OUT-augmented"
lesionaug info "$OUT-augmented"

# 3. What the new data is worth, in the low-data regime: 16 real training pairs (0.22 of 72),
#    with and without the synthetic pairs, 3 seeds each, scored on the 30 real test images; every
#    segmenter takes the same optimizer steps (12 epochs of the 216-pair set).
lesionaug evaluate "$OUT" --augmented "$OUT-augmented" --synthetic-counts "0,$N_SYNTHETIC" \
    --repeats 3 --real-fraction 0.22 --image-size 64 --epochs 12 --out "$OUT-report"

# 4. Image quality (SSIM against the real image for the same mask) and mask fidelity.
lesionaug quality "$OUT" --model "$engine" --split test --steps 10 \
    --seg-image-size 64 --seg-epochs 20 --out "$OUT-report"

echo "main job done in $((SECONDS - start)) s; report: $OUT-report/report.md" >&2
