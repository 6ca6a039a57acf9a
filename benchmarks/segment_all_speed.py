"""How long does segment-all take on a 512 x 512 image with 100 nuclei, and how much memory on 8192²?

Speed: a 512 x 512 uint16 image with 100 bright elliptic nuclei (radius 8-12 px) on a 10 x 10 jittered
grid; :func:`napari_fcfi.segment_all` with the engine defaults (seeds detected, object size estimated);
one warm-up run, then ``--runs`` timed runs. Prints the median wall time, seconds per megapixel, the
objects found and the F1 at IoU 0.5 against the drawn nuclei.

Memory (``--large``): an 8192 x 8192 uint16 image of the same kind (``bench.synthetic``); the peak RSS
increase of the seed detector over the whole image plus segment-all on 64 of its seeds (the labels,
tiles and one chunk of patches: what does not grow with the number of objects)::

    python benchmarks/segment_all_speed.py --threads 2 --runs 3
    python benchmarks/segment_all_speed.py --threads 2 --large
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import numpy as np
import torch

from napari_fcfi import load_model, segment_all
from napari_fcfi.annotation.seeds import detect_seeds
from napari_fcfi.bench.synthetic import synthetic_nuclei_image
from napari_fcfi.engine import ImageSource
from napari_fcfi.evaluation.segment_all_eval import detection_scores


def grid_nuclei(size: int = 512, per_side: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(180, 260, size=(size, size)).astype(np.uint16)
    labels = np.zeros((size, size), np.int32)
    spacing = size / per_side
    rows, cols = np.mgrid[:size, :size]
    for index in range(per_side * per_side):
        centre_r = (index // per_side + 0.5) * spacing + rng.uniform(-4, 4)
        centre_c = (index % per_side + 0.5) * spacing + rng.uniform(-4, 4)
        radius = rng.uniform(8, 12)
        inside = ((rows - centre_r) / radius) ** 2 + ((cols - centre_c) / (0.8 * radius)) ** 2 <= 1
        image[inside] = rng.integers(1800, 2400, size=int(inside.sum()))
        labels[inside] = index + 1
    return image, labels


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--large", action="store_true", help="peak memory on 8192 x 8192 instead of speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    if args.large:
        image, _ = synthetic_nuclei_image(8192)
        before = peak_rss_mb()
        start = time.perf_counter()
        seeds = detect_seeds(ImageSource(image), 30.0)
        labels = segment_all(model, image, object_size=30.0, seeds=seeds[:64])
        print(
            json.dumps(
                {
                    "image": "8192x8192 uint16",
                    "seeds_detected": len(seeds),
                    "objects": int(labels.max()),
                    "seconds": round(time.perf_counter() - start, 1),
                    "peak_rss_increase_mb": round(peak_rss_mb() - before, 1),
                }
            )
        )
        return
    image, truth = grid_nuclei()
    for _ in range(args.warmup):
        segment_all(model, image)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        labels = segment_all(model, image)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    f1, mean_iou, _ = detection_scores(truth, labels)
    print(
        json.dumps(
            {
                "image": "512x512 uint16, 100 nuclei",
                "threads": args.threads,
                "runs": times,
                "load_average": os.getloadavg(),
                "median_s": round(median, 2),
                "s_per_megapixel": round(median / (512 * 512 / 1e6), 2),
                "objects": int(labels.max()),
                "f1": round(f1, 3),
                "mean_iou": round(mean_iou, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
