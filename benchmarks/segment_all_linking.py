"""How well segment-all proposals linked across slices give one id per 3D object.

For each stack of a set (``fcfi eval --stacks`` sets: sample, dsb-deformed, mnfinder-deformed,
membrane), segment all on every slice, link neighbouring slices (:mod:`napari_fcfi.annotation.proposal_links`)
and compare with the true 3D objects. A proposal *matches* a true object on a slice at IoU >= 0.5.

* ``whole``: true objects (matched on 2+ slices) whose matched proposals all carry one id;
* ``split``: mean number of ids per true object over its matched slices (1.0 = never split);
* ``merged``: linked ids whose matched slices belong to 2+ true objects (two objects under one id).

Usage: ``OMP_NUM_THREADS=2 python benchmarks/segment_all_linking.py --sets sample dsb-deformed``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from napari_fcfi import load_model, segment_all
from napari_fcfi.annotation.proposal_links import LINK_MIN_IOU, link_to_previous
from napari_fcfi.evaluation.stack_data import stack_set


def proposals(model, image: np.ndarray) -> list[np.ndarray]:
    return [segment_all(model, plane, channel_axis=2 if image.ndim == 4 else None) for plane in image]


def linked_stack(slices: list[np.ndarray], min_iou: float) -> np.ndarray:
    out = np.zeros((len(slices), *slices[0].shape), np.int32)
    next_id, previous = 1, None
    for z, labels in enumerate(slices):
        out[z], next_id = link_to_previous(previous, labels, next_id, min_iou=min_iou)
        previous = out[z]
    return out


def matches(truth: np.ndarray, found: np.ndarray) -> list[tuple[int, int]]:
    """``(true id, proposal id)`` pairs with IoU >= 0.5 on one slice."""
    pairs = []
    for t in np.unique(truth[truth > 0]):
        inside = found[truth == t]
        ids, counts = np.unique(inside[inside > 0], return_counts=True)
        for p, inter in zip(ids, counts):
            union = (truth == t).sum() + (found == p).sum() - inter
            if inter / union >= 0.5:
                pairs.append((int(t), int(p)))
    return pairs


def score(truth: np.ndarray, linked: np.ndarray) -> dict[str, float]:
    ids_of_truth: dict[int, list[int]] = defaultdict(list)
    truths_of_id: dict[int, set[int]] = defaultdict(set)
    for z in range(truth.shape[0]):
        for t, p in matches(truth[z], linked[z]):
            ids_of_truth[t].append(p)
            truths_of_id[p].add(t)
    spanning = {t: ids for t, ids in ids_of_truth.items() if len(ids) >= 2}
    return {
        "true_objects": len(np.unique(truth[truth > 0])),
        "spanning": len(spanning),
        "whole": sum(len(set(ids)) == 1 for ids in spanning.values()),
        "ids_per_object": float(np.mean([len(set(ids)) for ids in spanning.values()])) if spanning else 0.0,
        "merged_ids": sum(len(ts) > 1 for ts in truths_of_id.values()),
        "linked_ids": len(truths_of_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sets", nargs="+", default=["sample", "dsb-deformed"])
    parser.add_argument("--count", type=int, default=None, help="stacks per set (default: the set's)")
    parser.add_argument("--min-iou", type=float, nargs="+", default=[LINK_MIN_IOU], help="link thresholds")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    for name in args.sets:
        started = time.perf_counter()
        stacks = stack_set(name, count=args.count)
        found = [proposals(model, stack.image) for stack in stacks]
        seconds = time.perf_counter() - started
        for min_iou in args.min_iou:
            totals: dict[str, float] = defaultdict(float)
            for stack, slices in zip(stacks, found):
                for key, value in score(stack.labels, linked_stack(slices, min_iou)).items():
                    totals[key] += value
            spanning = max(totals["spanning"], 1)
            print(
                f"{name} (IoU >= {min_iou}): {len(stacks)} stacks, {int(totals['true_objects'])} true 3D "
                f"objects, {int(totals['spanning'])} matched on 2+ slices; whole (one id) "
                f"{totals['whole'] / spanning:.1%}; ids per object {totals['ids_per_object'] / len(stacks):.2f}; "
                f"merged ids {int(totals['merged_ids'])} of {int(totals['linked_ids'])}; segment all {seconds:.0f} s"
            )


if __name__ == "__main__":
    main()
