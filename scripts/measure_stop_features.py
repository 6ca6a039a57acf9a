"""Which signal tells that a propagated object has ended? Features of one-step propagations, per stack set.

For each chosen object of each stack set (:mod:`napari_fcfi.evaluation.stack_data`), from its middle
slice outwards: every step propagates the ground-truth mask of slice ``z - step`` onto slice ``z``
(as from a corrected neighbour) with the widget's step (previous mask as the session's starting mask
plus the automatic interior click, no stopping rule) and records the candidate stop signals, on the
slices where the object continues and on the first slice past its end:

* ``area_ratio`` (propagated / previous area), ``overlap`` (share of the previous mask kept);
* ``confidence``: mean network probability inside the propagated mask; ``sure``: share of the mask
  with probability >= 0.9;
* ``contrast_ratio``: inside-vs-ring contrast (:func:`object_contrast`, the former image rule) of the
  propagated mask over the previous slice's;
* ``click_iou``: IoU of the propagated mask with the network's mask from the same interior click
  *without* the previous mask (what the image alone says is at that point), ``click_ratio`` its area
  over the propagated mask's;
* with ``--cycle``: ``back_iou``, the propagated mask carried back onto the previous slice the same way
  (cycle consistency: a chain that walked into a neighbour should not come back to the object), IoU
  with the previous mask, and ``back_confidence``.

Writes one JSON line per step to ``--out`` and prints, for simple threshold rules, false stops (the
object continues) and misses (the object ended, the rule let it through) per set::

    OMP_NUM_THREADS=1 python scripts/measure_stop_features.py --out results/stop_features.jsonl

Calibrating a model's stopping threshold (confidence is a property of the model: a model trained
longer is surer or less sure of everything)::

    python scripts/measure_stop_features.py --model M --confidence-only --suggest --out results/stop_M.jsonl

prints the suggested ``propagation.stop_confidence`` (:func:`suggest_stop_confidence`) for the model's
metadata (``scripts/line_report.py ship`` writes it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_fcfi.annotation.propagation import interior_point
from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.evaluation.metrics import iou
from napari_fcfi.evaluation.stack_data import STACK_SETS, stack_set
from napari_fcfi.evaluation.stacks import stack_objects
from napari_fcfi.model import load_model


def object_contrast(image: Any, mask: np.ndarray, channel_axis: int | None = None) -> float | None:
    """(mean inside ``mask`` - mean of a 3-pixel ring around it) / std of both, or None.

    ``image`` is a slice as the engine takes it (gray, RGB(A) last, or with ``channel_axis``); its
    channels are averaged. Positive for bright objects, negative for dark ones (brightfield).
    """
    data = np.asarray(image, dtype=np.float32)
    if channel_axis is not None:
        data = data.mean(axis=channel_axis)
    elif data.ndim == 3:
        data = data[..., :3].mean(axis=-1)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    pad = 3 + 1
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, mask.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, mask.shape[1])
    inside = mask[r0:r1, c0:c1]
    ring = ndi.binary_dilation(inside, iterations=3) & ~inside
    if not ring.any():
        return None
    window = data[r0:r1, c0:c1]
    values = window[inside | ring]
    spread = float(values.std())
    if not np.isfinite(spread) or spread <= 0:
        return 0.0
    return float((window[inside].mean() - window[ring].mean()) / spread)


#: The calibration keeps single-slice false stops at this share of the continuing steps, pooled over sets.
CALIBRATION_FALSE_STOPS = 0.05


def suggest_stop_confidence(rows: list[dict], false_stops: float = CALIBRATION_FALSE_STOPS) -> float:
    """The stopping threshold for a model: the ``false_stops`` quantile of the confidence on slices where
    the object continues, each stack set weighted equally, floored to 0.01.

    On bundled model v1 this gives 0.78 (the threshold chosen by hand from the same measurements); the
    rule's two-slices-in-a-row condition then keeps measured false stops far below this share.
    """
    by_set: dict[str, list[float]] = {}
    for row in rows:
        if row["continues"]:
            by_set.setdefault(row["set"], []).append(float(row["confidence"]))
    if not by_set:
        raise ValueError("no continuing steps to calibrate on")
    values = np.concatenate([np.asarray(v) for v in by_set.values()])
    weights = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in by_set.values()])
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    quantile = float(values[order][min(int(np.searchsorted(cumulative, false_stops)), len(values) - 1)])
    return float(np.floor(quantile * 100) / 100)


def carried(session, image, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The widget's propagation step: ``previous`` as the starting mask plus its interior click."""
    row, col = interior_point(previous)
    session.set_image(image, initial_mask=previous)
    session.add_click(row, col, True)
    return np.array(session.mask, bool), np.array(session.probability)


def step_features(
    session, image, previous: np.ndarray, previous_image, confidence_only=False, cycle=False
) -> dict:
    row, col = interior_point(previous)
    mask, prob = carried(session, image, previous)
    area, prev_area = int(mask.sum()), int(previous.sum())
    features = {
        "area_ratio": area / prev_area,
        "overlap": float((mask & previous).sum() / prev_area),
        "iou_prev": iou(mask, previous),
        "confidence": float(prob[mask].mean()) if area else 0.0,
        "sure": float((prob[mask] >= 0.9).mean()) if area else 0.0,
    }
    before = object_contrast(previous_image, previous)
    after = object_contrast(image, mask) if area else None
    features["contrast_ratio"] = (
        None if before is None or after is None or abs(before) < 1e-6 else after / before
    )
    if cycle:
        back, back_prob = carried(session, previous_image, mask) if area else (previous & False, prob)
        features["back_iou"] = iou(back, previous)
        features["back_confidence"] = float(back_prob[back].mean()) if back.any() else 0.0
    if confidence_only:
        return features, mask
    session.set_image(image)
    session.add_click(row, col, True)
    alone = np.array(session.mask, bool)
    features["click_iou"] = iou(alone, mask) if area else 0.0
    features["click_ratio"] = float(alone.sum() / max(area, 1))
    return features, mask


def object_steps(
    session, stack, label: int, min_area: int, confidence_only: bool = False, cycle: bool = False
) -> list[dict]:
    depth = stack.labels.shape[0]
    present = [int((stack.labels[z] == label).sum()) >= min_area for z in range(depth)]
    zs = [z for z in range(depth) if present[z]]
    start = zs[len(zs) // 2]
    rows = []
    for step in (1, -1):
        z = start + step
        while 0 <= z < depth:
            previous = stack.labels[z - step] == label
            if not present[z - step]:
                break
            features, mask = step_features(
                session, stack.image[z], previous, stack.image[z - step], confidence_only, cycle
            )
            gt = stack.labels[z] == label
            rows.append(
                {
                    "stack": stack.name,
                    "label": int(label),
                    "z": z,
                    "distance": abs(z - start),
                    "continues": bool(present[z]),
                    "gt_iou": iou(mask, gt),
                    **features,
                }
            )
            if not present[z]:
                break
            z += step
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sets", nargs="*", default=list(STACK_SETS))
    parser.add_argument("--count", type=int, default=2, help="stacks per set (sample has one)")
    parser.add_argument("--objects", type=int, default=5, help="objects per stack")
    parser.add_argument("--min-area", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/stop_features.jsonl")
    parser.add_argument(
        "--confidence-only", action="store_true", help="skip the click-alone pass (half the time)"
    )
    parser.add_argument("--cycle", action="store_true", help="also carry each mask back (back_iou)")
    parser.add_argument("--suggest", action="store_true", help="print the suggested stop_confidence")
    parser.add_argument("--from-file", action="store_true", help="read --out instead of measuring")
    args = parser.parse_args()
    if args.from_file:
        rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
        print(f"suggested stop_confidence: {suggest_stop_confidence(rows):.2f}")
        return 0
    torch.set_num_threads(args.threads)
    session = InteractiveSegmenter(load_model(args.model, device="cpu"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with out.open("w") as handle:
        for name in args.sets:
            for stack in stack_set(name, count=args.count):
                for label in stack_objects(stack, min_area=args.min_area, max_objects=args.objects):
                    steps = object_steps(
                        session, stack, label, args.min_area, args.confidence_only, args.cycle
                    )
                    for row in steps:
                        rows.append({"set": name, **row})
                        handle.write(json.dumps({"set": name, **row}) + "\n")
                        handle.flush()
            print(f"{name}: done", flush=True)
    if args.suggest:
        print(f"suggested stop_confidence: {suggest_stop_confidence(rows):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
