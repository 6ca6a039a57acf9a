"""How long does propagating one object through 20 slices of 512 x 512 take on this CPU?

The stack: a procedural 2D nuclei image (``napari_fcfi.training.synthetic.nuclei_image``, seed 0)
moved through 21 slices by :func:`napari_fcfi.evaluation.stack_data.deformed_stack` (drift,
rotation, elastic warp, noise; no object ends inside the stack), 512 x 512 per slice. The object is
the nucleus of median size among those present on every slice. Each run is one call of the headless
API, :func:`napari_fcfi.annotation.propagation.propagate` from slice 0 upwards with ``max_slices=20``
(engine defaults, the same code the widget runs); one warm-up run is not counted. Prints the median
(and min/max) wall time of the runs, the slices reached, ms per slice and the mean IoU of the
propagated masks with the ground truth, and the time outside the network: main-thread CPU time per
slice of everything but the network's forward pass (``time.thread_time``, which a busy shared machine
inflates far less than wall time; the network's own main-thread share is taken out)::

    python benchmarks/propagation_speed.py --model default --threads 2 --runs 5

``--fill`` times :func:`~napari_fcfi.annotation.filling.fill_between` instead: the object annotated
(ground truth) on the first and the last slice, the slices between filled from both ends.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_fcfi.annotation.filling import fill_between
from napari_fcfi.annotation.propagation import propagate
from napari_fcfi.engine.network_runner import NetworkRunner
from napari_fcfi.evaluation.metrics import iou
from napari_fcfi.evaluation.stack_data import deformed_stack
from napari_fcfi.model import load_model
from napari_fcfi.training.synthetic import nuclei_image


def benchmark_stack(size: int = 512, slices: int = 21, seed: int = 0):
    """(image (Z, size, size), labels, chosen label): 21 slices, the median-size nucleus on all of them."""
    rng = np.random.default_rng(seed)
    margin = 24
    image, labels = nuclei_image(rng, (size + 2 * margin, size + 2 * margin))
    stack = deformed_stack(
        image, labels, rng, slices, crop=size, margin=margin, ending_fraction=0.0, name="speed"
    )
    areas = np.stack([np.bincount(s.ravel(), minlength=int(stack.labels.max()) + 1) for s in stack.labels])
    everywhere = [int(lab) for lab in np.flatnonzero((areas >= 100).all(axis=0)) if lab > 0]
    if not everywhere:
        raise RuntimeError("no nucleus is on every slice; try another --seed")
    everywhere.sort(key=lambda lab: areas[slices // 2, lab])
    return stack.image, stack.labels, everywhere[len(everywhere) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=20, help="slices to propagate through (20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fill", action="store_true", help="time fill between the first and last slice")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    image, labels, label = benchmark_stack(args.size, args.slices + 1, args.seed)
    start = labels[0] == label
    network_cpu = [0.0]
    forward = NetworkRunner._forward

    def timed_forward(self, *a, **k):
        cpu = time.thread_time()
        try:
            return forward(self, *a, **k)
        finally:
            network_cpu[0] += time.thread_time() - cpu

    NetworkRunner._forward = timed_forward
    times, outside, reached = [], [], {}
    for run in range(args.runs + 1):
        network_cpu[0] = 0.0
        t0, cpu0 = time.perf_counter(), time.thread_time()
        if args.fill:
            reached = fill_between(model, image, 0, start, args.slices, labels[args.slices] == label)
        else:
            reached = propagate(model, image, 0, start, direction="up", max_slices=args.slices)
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
        if run:  # run 0 is the warm-up
            times.append(elapsed)
            outside.append(1000 * (cpu - network_cpu[0]) / max(len(reached), 1))
    median = statistics.median(times)
    ious = [iou(mask, labels[z] == label) for z, mask in sorted(reached.items())]
    result = {
        "mode": "fill between" if args.fill else "propagation",
        "model": args.model,
        "threads": args.threads,
        "slice_shape": [args.size, args.size],
        "object_area_start": int(start.sum()),
        "slices_requested": args.slices,
        "slices_reached": len(reached),
        "runs": args.runs,
        "seconds_median": median,
        "seconds_min": min(times),
        "seconds_max": max(times),
        "ms_per_slice": 1000 * median / max(len(reached), 1),
        "outside_network_cpu_ms_per_slice": statistics.median(outside),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "loadavg_1min": os.getloadavg()[0],
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    print(
        f"{result['mode']} of one object ({result['object_area_start']} px) through {len(reached)}/{args.slices} "
        f"slices of {args.size}x{args.size}, model {args.model}, {args.threads} torch threads: "
        f"median {median:.2f} s over {args.runs} runs (min {min(times):.2f}, max {max(times):.2f}), "
        f"{result['ms_per_slice']:.0f} ms per slice ({result['outside_network_cpu_ms_per_slice']:.1f} ms main-thread "
        f"CPU outside the network); mean IoU {result['mean_iou']:.3f}; "
        f"load average {result['loadavg_1min']:.2f} on {result['cpus']} CPUs"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
