"""Does an object's raw contrast, relative to its peak along the propagation, tell that it has ended?

Ground truth only (no network): for each chosen object of each stack set, from its middle slice
outwards, the core contrast (:func:`napari_fcfi.annotation.fading.object_contrast`) of the true mask on
every slice where the object continues, and of the previous slice's mask on the first slice past its
end (what propagation gets when the network copies its feedback), over the highest contrast of the
last ``PEAK_WINDOW`` slices (start slice included), as :class:`~napari_fcfi.annotation.fading.FadeWatch`
follows it. Objects
whose mean contrast on the start slice is below ``--standout`` of the slice's 1-99 % range are not watched.
Prints, per set and ratio cut: the watched objects, false stops (continuing slices below the cut)
and the ended slices caught::

    python scripts/measure_fading.py --count 3 --objects 5
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_fcfi.annotation.fading import MIN_STANDOUT, PEAK_WINDOW, object_contrast, slice_source
from napari_fcfi.evaluation.stack_data import STACK_SETS, stack_set
from napari_fcfi.evaluation.stacks import stack_objects


def object_ratios(
    stack, label: int, min_area: int, standout: float
) -> tuple[list[float], list[float]] | None:
    """(ratios on continuing slices, ratios on the first slices past the ends), None if not watched."""
    depth = stack.labels.shape[0]
    present = [int((stack.labels[z] == label).sum()) >= min_area for z in range(depth)]
    zs = [z for z in range(depth) if present[z]]
    start = zs[len(zs) // 2]
    mean, core, spread = object_contrast(slice_source(stack.image[start]), stack.labels[start] == label)
    if not np.isfinite(mean) or abs(mean) < standout * spread:
        return None
    sign = 1.0 if mean >= 0 else -1.0
    continuing, ended = [], []
    for step in (1, -1):
        recent, z = [sign * core], start + step
        while 0 <= z < depth and present[z - step]:
            mask = stack.labels[z if present[z] else z - step] == label
            value = sign * object_contrast(slice_source(stack.image[z]), mask, sign)[1]
            (continuing if present[z] else ended).append(value / max(recent[-PEAK_WINDOW:]))
            if not present[z]:
                break
            recent.append(value)
            z += step
    return continuing, ended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(STACK_SETS))
    parser.add_argument("--count", type=int, default=3, help="stacks per set (sample has one)")
    parser.add_argument("--objects", type=int, default=5, help="objects per stack")
    parser.add_argument("--min-area", type=int, default=20)
    parser.add_argument("--standout", type=float, default=MIN_STANDOUT)
    parser.add_argument("--cuts", type=float, nargs="*", default=[0.3, 0.4, 0.5, 0.6])
    args = parser.parse_args()
    print(
        "| stack set | watched objects | continuing: 5th pct / median | ended: median | "
        + " | ".join(f"false stops / caught at {cut}" for cut in args.cuts)
        + " |"
    )
    print("|---|---:|---:|---:|" + "---:|" * len(args.cuts))
    for name in args.sets:
        continuing, ended, watched, total = [], [], 0, 0
        for stack in stack_set(name, count=args.count):
            for label in stack_objects(stack, min_area=args.min_area, max_objects=args.objects):
                total += 1
                ratios = object_ratios(stack, label, args.min_area, args.standout)
                if ratios is not None:
                    watched += 1
                    continuing += ratios[0]
                    ended += ratios[1]
        c, e = np.asarray(continuing), np.asarray(ended)
        cells = [
            f"{np.mean(c < cut) * 100:.0f} % / {np.mean(e < cut) * 100:.0f} % of {e.size}" if c.size else "-"
            for cut in args.cuts
        ]
        spread = f"{np.percentile(c, 5):.2f} / {np.median(c):.2f}" if c.size else "-"
        print(
            f"| {name} | {watched} / {total} | {spread} | {np.median(e) if e.size else float('nan'):.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
