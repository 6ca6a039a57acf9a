"""Interactive-segmentation metrics: IoU, NoC@t, NoF@t, mean IoU after k clicks, seconds per click.

Conventions (those of RITM/FCFI, so our numbers compare with the papers'):

* IoU counts only pixels outside the ignore region.
* NoC@t of one object is the first click count k (1-based) whose IoU is >= t, or ``max_clicks``
  when the IoU never reaches t within ``max_clicks`` clicks. NoC@t of a dataset is the mean.
* NoF@t (number of failures) counts objects whose IoU never reaches t within ``max_clicks`` clicks.
  (The published scripts count ``NoC == max_clicks``, which also counts an object reaching t exactly
  at the last click; we count true failures, as the papers define NoF. ``nof_published`` gives the
  other number.)
* IoU@k is the mean over objects of the IoU after k clicks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IOU_THRESHOLDS = (0.85, 0.90, 0.95)


def iou(pred_mask: np.ndarray, gt_mask: np.ndarray, ignore_mask: np.ndarray | None = None) -> float:
    """Intersection over union of two bool masks, ignoring ``ignore_mask`` pixels.

    Two empty masks have IoU 1.0 (nothing to segment, nothing predicted).
    """
    pred_mask = np.asarray(pred_mask, dtype=bool)
    gt_mask = np.asarray(gt_mask, dtype=bool)
    if pred_mask.shape != gt_mask.shape:
        raise ValueError(f"iou: prediction shape {pred_mask.shape} differs from ground truth {gt_mask.shape}")
    inter = pred_mask & gt_mask
    union = pred_mask | gt_mask
    if ignore_mask is not None:
        valid = ~np.asarray(ignore_mask, dtype=bool)
        inter &= valid
        union &= valid
    n_union = int(union.sum())
    if n_union == 0:
        return 1.0
    return float(inter.sum()) / n_union


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """Clicks needed for one object to reach ``threshold`` (``max_clicks`` if it never does)."""
    for k, value in enumerate(list(ious)[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def reached(ious: Sequence[float], threshold: float, max_clicks: int) -> bool:
    """Whether the IoU reaches ``threshold`` within ``max_clicks`` clicks."""
    return any(v >= threshold for v in list(ious)[:max_clicks])


def noc(all_ious: Sequence[Sequence[float]], threshold: float, max_clicks: int) -> float:
    """Mean number of clicks to reach ``threshold`` (NoC@threshold) over objects."""
    if len(all_ious) == 0:
        return float("nan")
    return float(np.mean([clicks_to_reach(s, threshold, max_clicks) for s in all_ious]))


def nof(all_ious: Sequence[Sequence[float]], threshold: float, max_clicks: int) -> int:
    """Number of objects never reaching ``threshold`` within ``max_clicks`` clicks."""
    return int(sum(not reached(s, threshold, max_clicks) for s in all_ious))


def nof_published(all_ious: Sequence[Sequence[float]], threshold: float, max_clicks: int) -> int:
    """NoF as the RITM/FCFI scripts count it: objects with NoC == max_clicks."""
    return int(sum(clicks_to_reach(s, threshold, max_clicks) == max_clicks for s in all_ious))


def pad_ious(ious: Sequence[float], max_clicks: int) -> np.ndarray:
    """IoU sequence of length ``max_clicks``; a sequence stopped early repeats its last value."""
    values = np.asarray(list(ious)[:max_clicks], dtype=np.float64)
    if values.size == 0:
        raise ValueError("pad_ious: empty IoU sequence")
    if values.size < max_clicks:
        values = np.concatenate([values, np.full(max_clicks - values.size, values[-1])])
    return values


def mean_iou_curve(all_ious: Sequence[Sequence[float]], max_clicks: int) -> np.ndarray:
    """Mean IoU after k = 1..max_clicks clicks (length ``max_clicks``)."""
    if len(all_ious) == 0:
        return np.full(max_clicks, np.nan)
    return np.mean([pad_ious(s, max_clicks) for s in all_ious], axis=0)


def seconds_per_click(click_times: Sequence[float]) -> tuple[float, float]:
    """Mean and median seconds per click."""
    if len(click_times) == 0:
        return float("nan"), float("nan")
    times = np.asarray(click_times, dtype=np.float64)
    return float(times.mean()), float(np.median(times))


def summarize(
    all_ious: Sequence[Sequence[float]],
    click_times: Sequence[float],
    max_clicks: int,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict:
    """All headline numbers as a JSON-ready dict.

    Keys: ``objects``, ``max_clicks``, ``noc@85`` ..., ``nof@85`` ..., ``iou@k`` for k in 1, 3, 5, 10,
    20 (those <= max_clicks), ``spc_mean``, ``spc_median``, ``clicks`` (total clicks timed),
    ``iou_curve`` (list of mean IoU after 1..max_clicks).
    """
    summary: dict = {"objects": len(all_ious), "max_clicks": max_clicks}
    for t in thresholds:
        key = f"{round(t * 100):d}"
        summary[f"noc@{key}"] = noc(all_ious, t, max_clicks)
        summary[f"nof@{key}"] = nof(all_ious, t, max_clicks)
    curve = mean_iou_curve(all_ious, max_clicks)
    for k in (1, 3, 5, 10, 20):
        if k <= max_clicks:
            summary[f"iou@{k}"] = float(curve[k - 1])
    summary["spc_mean"], summary["spc_median"] = seconds_per_click(click_times)
    summary["clicks"] = len(click_times)
    summary["iou_curve"] = [float(v) for v in curve]
    return summary
