#!/usr/bin/env bash
# The paper's comparison on generated example data (run by `make compare`): the diffusion generator
# (compact ControlNet) against the Pix2PixHD baseline, both trained on the same 16 real pairs, each
# generating the same number of pairs, then `lesionaug compare`: segmenter Dice with and without each
# generator's pairs (shared seeds, real pairs and steps), the paired difference between generators,
# and each generator's SSIM and mask fidelity, in one report.
set -euo pipefail
# Every setting can be lowered for a quick look, e.g. on a busy machine:
#   COMPARE_PAIRS=40 COMPARE_N=32 COMPARE_REAL=12 COMPARE_MODEL_SIZE=tiny COMPARE_TRAIN_STEPS=60 \
#   COMPARE_GAN_SIZE=tiny COMPARE_GAN_RESOLUTION=64 COMPARE_GAN_STEPS=60 COMPARE_REPEATS=3 COMPARE_EPOCHS=3 bash scripts/compare.sh
OUT=${COMPARE_DIR:-example}
PAIRS=${COMPARE_PAIRS:-120}
N_SYNTHETIC=${COMPARE_N:-200}
REAL=${COMPARE_REAL:-16}
STYLE=${DEMO_STYLE:-light}  # the example data's look, as in scripts/demo.sh
MODEL_SIZE=${COMPARE_MODEL_SIZE:-small}  # the compact diffusion model (its default CPU budget)
TRAIN_STEPS=(${COMPARE_TRAIN_STEPS:+--train-steps "$COMPARE_TRAIN_STEPS"})
GAN_SIZE=${COMPARE_GAN_SIZE:-compact}
GAN_STEPS=${COMPARE_GAN_STEPS:-200}
GAN_RESOLUTION=(${COMPARE_GAN_RESOLUTION:+--size "$COMPARE_GAN_RESOLUTION"})
REPEATS=${COMPARE_REPEATS:-5}
EPOCHS=${COMPARE_EPOCHS:-10}
start=$SECONDS
rm -rf "$OUT-controlnet" "$OUT-pix2pixhd-model" "$OUT-pix2pixhd" "$OUT-compare"

# 1. Example data, as `make demo` writes it (kept when it is already there in the same style).
written=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("style", "light"))' \
    "$OUT/.lesionaug-demo.json" 2>/dev/null || true)
if [ "$written" != "$STYLE" ]; then
    lesionaug demo-data --out "$OUT" --n "$PAIRS" --layout isic2018 --size 128 --seed 0 --style "$STYLE"
fi
LABELS=(--labels "$OUT/isic_archive_metadata.csv")

# 2. The diffusion generator: the compact model trained on the 16 real pairs the segmenters get
#    (cached after the first run, shared with `make demo`), then the new pairs.
lesionaug augment "$OUT" "${LABELS[@]}" --n "$N_SYNTHETIC" --size 128 --denoise-steps 10 --real-count "$REAL" \
    --model-size "$MODEL_SIZE" "${TRAIN_STEPS[@]}" --out "$OUT-controlnet"

# 3. The Pix2PixHD baseline on the same 16 pairs (compact size, 128 px), exported on first use,
#    generating from the same plan: the same masks and labels, job for job.
lesionaug train "$OUT" "${LABELS[@]}" --generator pix2pixhd --model-size "$GAN_SIZE" --real-count "$REAL" \
    --train-steps "$GAN_STEPS" "${GAN_RESOLUTION[@]}" \
    --out "$OUT-pix2pixhd-model"
lesionaug augment "$OUT" "${LABELS[@]}" --n "$N_SYNTHETIC" --size 128 --real-count "$REAL" \
    --model "$OUT-pix2pixhd-model" --out "$OUT-pix2pixhd"
lesionaug verify "$OUT-controlnet"
lesionaug verify "$OUT-pix2pixhd"

# 4. The comparison: 5 seeds (by default), the classic MONAI augmentation, every segmenter the same steps,
#    augmented batches half real, half synthetic, the last quarter real only (as in scripts/demo.sh).
lesionaug compare "$OUT" "${LABELS[@]}" --augmented "controlnet=$OUT-controlnet" \
    --augmented "pix2pixhd=$OUT-pix2pixhd" --synthetic-counts "0,$N_SYNTHETIC" \
    --repeats "$REPEATS" --real-count "$REAL" --seg-augment classic --seg-size 64 --seg-epochs "$EPOCHS" \
    --synthetic-share 0.5 --real-finish 0.25 --out "$OUT-compare" ${COMPARE_JSON:+--json}

echo "comparison done in $((SECONDS - start)) s; report: $OUT-compare/report.md" >&2
