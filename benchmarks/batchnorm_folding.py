"""Does folding BatchNorm into the convolutions (engine setting ``fuse_batchnorm``) make clicks faster?

Engine sessions with the setting on and off, interleaved, on the same real objects (DSB 2018 validation
split) and the same robot clicks; prints the median wall time per click and per first click (which
runs the network twice: focus window and zoom-in) of each, and whether the masks are identical::

    OMP_NUM_THREADS=1 python benchmarks/batchnorm_folding.py --threads 1 --objects 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import numpy as np
import torch

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.evaluation.datasets import open_dataset
from napari_fcfi.evaluation.robot import robot_click
from napari_fcfi.model import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="../shared/data/dsb2018_train")
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    dataset = open_dataset(args.data, split="val", max_objects=2, min_area=30)
    samples = list(itertools.islice(iter(dataset), args.objects))
    times: dict[bool, dict[str, list[float]]] = {f: {"first": [], "later": []} for f in (True, False)}
    same = 0
    for sample in samples:
        masks = {}
        for fuse in (True, False) if len(times[True]["first"]) % 2 == 0 else (False, True):
            session = InteractiveSegmenter(model, fuse_batchnorm=fuse)
            session.set_image(sample.image)
            mask = np.zeros(sample.gt_mask.shape, bool)
            for k in range(args.clicks):
                click = robot_click(sample.gt_mask, mask)
                if click is None:
                    break
                start = time.perf_counter()
                session.add_click(click.row, click.col, click.positive)
                times[fuse]["first" if k == 0 else "later"].append(time.perf_counter() - start)
                mask = session.mask
            masks[fuse] = mask
        same += int(np.array_equal(masks[True], masks[False]))
    report = {
        "threads": args.threads,
        "objects": len(samples),
        "identical_masks": same,
        **{
            f"{'folded' if fuse else 'plain'}_{kind}_ms": round(1000 * statistics.median(values), 1)
            for fuse, kinds in times.items()
            for kind, values in kinds.items()
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
