"""How to make a filled slice from the two chains of a fill between: the variants, measured.

    python scripts/measure_fill_variants.py [--sets dsb-deformed mnfinder-deformed membrane]
                                            [--stacks 3] [--objects 6] [--model default]

For every object of the stack robot's sets (:mod:`napari_fcfi.evaluation.stacks`), the robot annotates
every 5th slice and the last one from scratch (as ``fcfi eval --stacks --fill-every 5``); the two
propagation chains between each pair of those slices run as in
:func:`napari_fcfi.annotation.filling.fill_slices`, and each slice between gets, side by side:

* ``near``: the nearer chain's mask (the fill before 2026-12-04);
* ``near_net``: one more network pass on it (is it the fusion or just the extra pass?);
* ``anchors_net``: the two *annotated* masks interpolated (:func:`interpolate_masks`), then one pass;
* ``chains_net``: the two *chains'* masks on this slice interpolated, then one pass (the fill now);
* ``mixed_net``: the mean of the last two shapes' signed distances, then one pass.

Prints, per set, the mean IoU and the share of filled slices at IoU >= 0.85 (no correction needed).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_fcfi.annotation.filling import interpolate_masks, signed_distance
from napari_fcfi.annotation.propagation import propagate_step
from napari_fcfi.evaluation import metrics, stack_data
from napari_fcfi.evaluation.stacks import _robot, stack_objects, stack_session

VARIANTS = ("near", "near_net", "anchors_net", "chains_net", "mixed_net")


def _mixed(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Both shapes' signed distances averaged, ``second`` moved onto ``first``'s centroid."""
    if not (first.any() and second.any()):
        return first if first.any() else second
    shift = np.array(ndi.center_of_mass(first)) - np.array(ndi.center_of_mass(second))
    return (signed_distance(first) + ndi.shift(signed_distance(second), shift, order=1, mode="nearest")) > 0


def measure_object(session, stack, label: int) -> list[dict[str, float]]:
    def truth(z):
        return stack.labels[z] == label

    def read(z):
        return stack.image[z]

    def net(image, shape):
        return propagate_step(session, image, shape)[0] if shape.any() else shape

    zs = [z for z in range(stack.labels.shape[0]) if truth(z).sum() >= 20]
    anchors = sorted(set(zs[::5]) | {zs[-1]})
    annotated = {z: _robot(session, read(z), truth(z), 20, 0.85)[2] for z in anchors}
    rows = []
    for a, b in itertools.pairwise(anchors):
        chains: dict[int, dict[int, np.ndarray]] = {a: {}, b: {}}
        for source, path in ((a, range(a + 1, b)), (b, range(b - 1, a, -1))):
            previous = annotated[source]
            for index in path:
                mask = propagate_step(session, read(index), previous)[0]
                if not mask.any():
                    break
                chains[source][index] = previous = mask
        for index in range(a + 1, b):
            t, gt, empty = (index - a) / (b - a), truth(index), np.zeros_like(truth(index))
            near = chains[a if index - a <= b - index else b].get(index, empty)
            from_a, from_b = chains[a].get(index, empty), chains[b].get(index, empty)
            both = interpolate_masks(from_a, from_b, t) if from_a.any() and from_b.any() else near
            anchors_shape = interpolate_masks(annotated[a], annotated[b], t)
            masks = {
                "near": near,
                "near_net": net(read(index), near),
                "anchors_net": net(read(index), anchors_shape),
                "chains_net": net(read(index), both),
                "mixed_net": net(read(index), _mixed(both, anchors_shape)),
            }
            rows.append({name: metrics.iou(mask, gt) for name, mask in masks.items()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["dsb-deformed", "mnfinder-deformed", "membrane"])
    parser.add_argument("--stacks", type=int, default=3)
    parser.add_argument("--objects", type=int, default=6, help="objects per stack")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, session = stack_session(args.model)
    for name in args.sets:
        rows = []
        for stack in stack_data.stack_set(name, count=args.stacks):
            for label in stack_objects(stack, max_objects=args.objects):
                rows.extend(measure_object(session, stack, label))
        cells = [
            f"{v} {np.mean([r[v] for r in rows]):.3f} / {np.mean([r[v] >= 0.85 for r in rows]):.2f}"
            for v in VARIANTS
        ]
        print(f"{name} ({len(rows)} filled slices; mean IoU / share >= 0.85):", "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
