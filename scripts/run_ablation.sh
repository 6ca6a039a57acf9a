#!/usr/bin/env bash
# The FCFI ablation on our domain: the same tiny HRNet, data, seed and number of steps,
# trained four times - without FFCM and CFFM (RITM-style baseline), +FFCM, +CFFM, both - then all
# four evaluated with the robot user on the DSB validation split.
#
#   bash scripts/run_ablation.sh [STEPS] [OUT]        # defaults: 1200 runs/ablation
#
# Runs one variant after the other on one CPU thread (about 0.8 s/step here), so that it can run
# beside another training job on a 2-core machine. Results: OUT/eval/*.json and the table printed
# by `fcfi eval`.
set -euo pipefail
STEPS="${1:-1200}"
OUT="${2:-runs/ablation}"
DATA="${DATA:-../shared/data/dsb2018_train}"
mkdir -p "$OUT"
declare -A FLAGS=([baseline]="--no-ffcm --no-cffm" [ffcm]="--no-cffm" [cffm]="--no-ffcm" [fcfi]="")
MODELS=()
for variant in baseline ffcm cffm fcfi; do
  model="$OUT/$variant.safetensors"
  if [[ ! -f "$model" ]]; then
    resume=()
    [[ -f "$OUT/$variant/last.pt" ]] && resume=(--resume "$OUT/$variant/last.pt")
    # shellcheck disable=SC2086 # FLAGS holds several words on purpose
    fcfi train --data "$DATA" --out "$OUT/$variant" --preset tiny --steps "$STEPS" --batch-size 8 \
      --crop-size 160 --view-size 256 --lr 5e-4 --warmup-steps 100 --max-extra-clicks 3 \
      --synthetic-fraction 0.25 --synthetic-images 300 --click-scale-init 1.0 --val-every 0 \
      --checkpoint-minutes 3 --threads 1 --bf16 --device cpu --seed 0 --no-progress \
      ${FLAGS[$variant]} "${resume[@]}"
    fcfi train --export "$OUT/$variant/last.pt" "$model" --name "ablation-$variant"
  fi
  MODELS+=(--model "$model")
done
fcfi eval --data "$DATA" --split val --limit 40 --max-objects 5 --min-area 30 --max-clicks 20 \
  --stop-iou 0.9 --threads 1 --no-progress --out "$OUT/eval" "${MODELS[@]}"
