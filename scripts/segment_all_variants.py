"""Compare segment-all variants on the same images: detection and (optionally) whole-image effort.

Each variant is ``name=python-dict`` of keyword arguments for ``segment_all``; with ``--effort`` the
robot's from-scratch runs are shared between the variants of an image (paired comparison).

    python scripts/segment_all_variants.py --split train --dsb 12 --mnfinder 3 \
        "plain=dict(refine=False)" "refined=dict()"
    python scripts/segment_all_variants.py --split val --dsb 5 --mnfinder 0 --effort \
        "plain=dict(refine=False)" "refined=dict()"

Choose on ``--split train``; val is for reporting.
"""

from __future__ import annotations

import argparse
import ast
import time

import numpy as np
import torch

from napari_fcfi.annotation.proposals import segment_all
from napari_fcfi.evaluation.segment_all_eval import (
    GOOD_IOU,
    annotation_effort,
    detection_scores,
    evaluation_sets,
    match_instances,
)
from napari_fcfi.evaluation.segmenters import EngineSegmenter
from napari_fcfi.model import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("variants", nargs="+", help="name=dict(...) keyword arguments for segment_all")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--dsb", type=int, default=12, help="first N DSB fluorescence images")
    parser.add_argument("--mnfinder", type=int, default=3, help="first N mnfinder images")
    parser.add_argument("--effort", action="store_true", help="also whole-image annotation effort")
    parser.add_argument("--max-clicks", type=int, default=10)
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dsb-data", default="../shared/data/dsb2018_train")
    parser.add_argument("--mnfinder-data", default="../shared/data/mnfinder_nuclei")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {}
    for text in args.variants:
        name, _, kwargs = text.partition("=")
        call = ast.parse(kwargs, mode="eval").body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "dict"):
            parser.error(f"{text!r}: expected name=dict(...)")
        variants[name] = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    model = load_model(args.model)
    segmenter = EngineSegmenter(model)
    sets = evaluation_sets(args.dsb_data, args.mnfinder_data, args.split, max(args.dsb, args.mnfinder, 1))
    counts = {"DSB fluorescence": args.dsb, "mnfinder": args.mnfinder}
    for set_name, images in sets.items():
        images = images[: counts[set_name]]
        if not images:
            continue
        rows = {
            name: {"f1": [], "iou": [], "good": 0, "matched": 0, "effort": 0, "s": 0.0} for name in variants
        }
        scratch_total = 0
        for _, image, gt in images:
            cache: dict[int, int] = {}
            for name, kwargs in variants.items():
                start = time.perf_counter()
                labels = segment_all(model, image, **kwargs)
                row = rows[name]
                row["s"] += time.perf_counter() - start
                f1, mean_iou, _ = detection_scores(gt, labels)
                matches = match_instances(gt, labels)
                row["f1"].append(f1)
                row["iou"].append(mean_iou)
                row["good"] += sum(1 for m in matches if m[2] >= GOOD_IOU)
                row["matched"] += len(matches)
                if args.effort:
                    actions, scratch = annotation_effort(segmenter, image, gt, labels, args.max_clicks, cache)
                    row["effort"] += actions
            if args.effort:
                scratch_total += scratch
        for name, row in rows.items():
            effort = (
                f" | effort {row['effort']} vs {scratch_total} from scratch ({scratch_total / row['effort']:.2f}x)"
                if args.effort and row["effort"]
                else ""
            )
            print(
                f"{set_name} ({len(images)} images) {name}: F1 {np.mean(row['f1']):.3f} | mean IoU "
                f"{np.mean(row['iou']):.3f} | matches >= {GOOD_IOU} {row['good']}/{row['matched']} | "
                f"{row['s']:.1f} s{effort}",
                flush=True,
            )


if __name__ == "__main__":
    main()
