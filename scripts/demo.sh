#!/usr/bin/env bash
# The main job end to end on generated example data (run by `make demo`): example data -> compact
# model trained from nothing -> augmented dataset, verified -> segmenters with and without the
# synthetic pairs, scored on the real test split -> image quality and mask fidelity -> report.
# DEMO_STYLE=deep draws the example data in its second look (Fitzpatrick IV-VI skin, side light,
# other lesion colours and artefacts: `lesionaug demo-data --style`); the default is light.
set -euo pipefail
OUT=${DEMO_DIR:-example}
N_SYNTHETIC=${DEMO_N:-200}
REAL=${DEMO_REAL:-16}
STYLE=${DEMO_STYLE:-light}
start=$SECONDS
rm -rf "$OUT" "$OUT-augmented" "$OUT-report"

# 1. Example data: 120 pairs in the ISIC 2018 layout (72 train / 18 val / 30 test). As in the real
#    release no file of the layout gives the Task 1 images a diagnosis: it comes from an ISIC Archive
#    metadata export, joined by image id with --labels on every command that reads the dataset.
lesionaug demo-data --out "$OUT" --n 120 --layout isic2018 --size 128 --seed 0 --style "$STYLE"
LABELS=(--labels "$OUT/isic_archive_metadata.csv")
lesionaug info "$OUT" "${LABELS[@]}"

# 2. The low-data regime without hidden real data: the generator sees only the 16 real training
#    pairs the segmenters get (--real-count, chosen by the split seed). No model given, so the
#    compact model is trained on those 16 pairs (a few minutes on a 2-core CPU), exported to ONNX and
#    cached; the masks' shape model and the labels are fitted on the same 16; then the new pairs
#    are generated.
result=$(lesionaug augment "$OUT" "${LABELS[@]}" --n "$N_SYNTHETIC" --size 128 --denoise-steps 10 --real-count "$REAL" --json)
engine=$(printf '%s' "$result" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["engine"])')
lesionaug verify "$OUT-augmented"
lesionaug info "$OUT-augmented" "${LABELS[@]}"

# 3. What the new data is worth: the same 16 real pairs with and without the synthetic pairs, the
#    classic MONAI augmentation for both (flips, rotations, affine, elastic, intensity, noise), 5 seeds
#    each, scored on the 30 real test images; every segmenter takes the same optimizer steps (10
#    epochs of the 216-pair set: 270 steps), every batch of an augmented one is half real, half
#    synthetic (--synthetic-share 0.5: drawn in proportion, 16 real pairs would fill one slot in 14),
#    and the last quarter of its steps real only (--real-finish 0.25: fine-tuning on the real pairs).
#    evaluate refuses pairs whose generator saw other real pairs.
lesionaug evaluate "$OUT" "${LABELS[@]}" --augmented "$OUT-augmented" --synthetic-counts "0,$N_SYNTHETIC" \
    --repeats 5 --real-count "$REAL" --seg-augment classic --seg-size 64 --seg-epochs 10 --synthetic-share 0.5 \
    --real-finish 0.25 --out "$OUT-report"

# 4. Image quality (SSIM against the real image for the same mask) and mask fidelity.
lesionaug quality "$OUT" "${LABELS[@]}" --model "$engine" --split test --denoise-steps 10 \
    --seg-size 64 --seg-epochs 20 --out "$OUT-report"

echo "main job done in $((SECONDS - start)) s; report: $OUT-report/report.md" >&2
