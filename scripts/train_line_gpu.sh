#!/usr/bin/env bash
# Continue the committed training line on a CUDA machine (mixed precision, a GPU-sized batch) and write
# its state back to the line folder in the same format, so the next CPU or GPU session goes on from it.
#
#   scripts/train_line_gpu.sh MINUTES OUT [LINE]      e.g. scripts/train_line_gpu.sh 12 runs/line-gpu
#
# OUT is the run folder (full resume checkpoint with the optimizer, log); LINE defaults to training/line.
# Environment: FCFI_DEVICE (cuda), FCFI_BATCH (32), FCFI_THREADS (8, data and CPU-side work),
# FCFI_COMMIT_MINUTES (0: commit the line folder yourself afterwards; N: git-commit it every N minutes).
# Commit the line folder when it is done: `git add training/line && git commit -m "training line: ..."`.
set -euo pipefail
minutes=${1:?usage: train_line_gpu.sh MINUTES OUT [LINE]}
out=${2:?usage: train_line_gpu.sh MINUTES OUT [LINE]}
line=${3:-training/line}
exec fcfi train --line "$line" --minutes "$minutes" --out "$out" \
    --device "${FCFI_DEVICE:-cuda}" --recipe "batch_size=${FCFI_BATCH:-32}" --threads "${FCFI_THREADS:-8}" \
    --checkpoint-minutes 3 --commit-minutes "${FCFI_COMMIT_MINUTES:-0}" --no-progress ${FCFI_EXTRA:-}
