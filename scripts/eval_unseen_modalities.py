"""Does a model still help on images unlike its training nuclei? (model card)

Evaluates models and the classical baselines with the robot user on procedural images from
``napari_fcfi.training.synthetic`` drawn with seeds that training never uses
(``np.random.default_rng([2026, 555, i])``; training pools use ``[seed, 7919, i]``), stored as
uint16 like a camera would give, and optionally on GrabCut (natural photographs)::

    python scripts/eval_unseen_modalities.py --model default --model runs/x.safetensors \
        [--grabcut ../shared/data/grabcut] [--images 12] [--threads 1] [--out results/unseen]

Prints one table per data kind (NoC@85/90, NoF@90, IoU after 1/3/5/20 clicks) and writes the
JSON of every run under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_fcfi.evaluation.datasets import open_dataset
from napari_fcfi.evaluation.results import format_table
from napari_fcfi.evaluation.runner import evaluate
from napari_fcfi.evaluation.samples import Sample, SampleList, sample_object_labels
from napari_fcfi.training.synthetic import GENERATORS

BASELINE_NAMES = ("random-walker", "geodesic")


def as_uint16(raw: np.ndarray) -> np.ndarray:
    """Raw float intensities -> the full uint16 range (0.1/99.9 percentiles), as a camera would store them."""
    low, high = np.percentile(raw, (0.1, 99.9))
    scaled = np.clip((raw - low) / max(high - low, 1e-6), 0, 1)
    return np.round(scaled * 65535).astype(np.uint16)


def synthetic_samples(kind: str, images: int, max_objects: int = 5, min_area: int = 30) -> SampleList:
    """Up to ``max_objects`` objects of each of ``images`` unseen procedural images of ``kind``."""
    samples = []
    for index in range(images):
        raw, labels = GENERATORS[kind](np.random.default_rng([2026, 555, index]), (256, 256))
        image = as_uint16(raw)
        key = f"{kind}-{index}"
        for label in sample_object_labels(labels, key=key, min_area=min_area, max_objects=max_objects):
            samples.append(Sample(image, labels == label, None, f"{key}#{label}"))
    return SampleList(samples, name=f"synthetic-{kind}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="model source (repeatable)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the random walker and geodesic")
    parser.add_argument("--kinds", nargs="+", default=["cells", "compartments"], choices=sorted(GENERATORS))
    parser.add_argument("--images", type=int, default=12, help="procedural images per kind (default 12)")
    parser.add_argument("--grabcut", type=Path, default=None, help="GrabCut folder to evaluate as well")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path("results/unseen"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    specs = list(args.model) + ([] if args.no_baselines else list(BASELINE_NAMES))
    if not specs:
        parser.error("nothing to evaluate: give --model or drop --no-baselines")
    datasets = [synthetic_samples(kind, args.images) for kind in args.kinds]
    if args.grabcut is not None:
        datasets.append(open_dataset(args.grabcut, "grabcut"))
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        results = []
        for spec in specs:
            name = spec if spec in BASELINE_NAMES else (Path(spec).stem if Path(spec).suffix else spec)
            result = evaluate(spec, dataset, args.max_clicks, name=name)
            result.save_json(args.out / f"{dataset.name}_{name}.json")
            results.append(result)
        print(f"\n{dataset.name}")
        print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
