#!/usr/bin/env bash
# The full benchmark set for docs/benchmarks.md, meant for an idle machine (about 20-30 min on the
# 2-core CPU). Writes JSON and Markdown tables to benchmarks/measurements/<tag>_* and the plot to
# docs/images/latency.png. Usage: benchmarks/run_all.sh [tag]   (run from the repository root)
set -euo pipefail
tag="${1:-clean}"
out="benchmarks/measurements"
mkdir -p "$out"
uptime | tee "$out/${tag}_load_before.txt"

# 1. every model and size, the machine's default threads (20 clicks each, also for the slow ones)
fcfi bench --models default hrnet18s-ocr48 deeplab-r101 --sizes 256 400 512 700 \
    --repeats 20 --warmup 3 --cpu-precisions fp32 bf16 --module-sizes 256 400 \
    --engine-sizes 512 8192 --out "$out/${tag}_default_threads.json" --markdown "$out/${tag}_default_threads.md"

# 2. the bundled model with 1 thread (what a busy machine should use) and channels_last
fcfi bench --threads 1 --models default --sizes 256 400 512 700 --sections latency \
    --out "$out/${tag}_1thread.json" --markdown "$out/${tag}_1thread.md"
fcfi bench --models default hrnet18s-ocr48 --sizes 256 400 --channels-last --sections latency \
    --out "$out/${tag}_channels_last.json" --markdown "$out/${tag}_channels_last.md"

# 3. GPU, when there is one
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    fcfi bench --devices cuda --models default hrnet18s-ocr48 deeplab-r101 --sections latency modules \
        --out "$out/${tag}_cuda.json" --markdown "$out/${tag}_cuda.md"
    fcfi bench --sections engine --engine-device cuda --out "$out/${tag}_cuda_engine.json" \
        --markdown "$out/${tag}_cuda_engine.md"
fi

# 4. napari end to end (needs a display: Xvfb when there is none)
e2e=(python benchmarks/napari_e2e.py --model default --image-sizes 256 2048 8192 --objects 3 --clicks 4
     --out "$out/${tag}_napari_e2e.json")
if [ -n "${DISPLAY:-}" ]; then "${e2e[@]}"; else xvfb-run -a -s "-screen 0 1600x1000x24" "${e2e[@]}"; fi
accept=(python benchmarks/accept_all.py --objects 80 --size 512)  # Accept all on the main thread
if [ -n "${DISPLAY:-}" ]; then "${accept[@]}"; else xvfb-run -a "${accept[@]}"; fi | tee "$out/${tag}_accept_all.txt"

# 5. the plot
python benchmarks/plot_latency.py "$out/${tag}_default_threads.json" --out docs/images/latency.png \
    --title "FCFI per-click network latency ($tag run)"
uptime | tee "$out/${tag}_load_after.txt"
