"""Segment-all proposals of neighbouring slices linked into one object.

Segment all proposes the objects of each 2D slice on its own. In a z-stack one nucleus then shows on
many slices; :func:`link_to_previous` gives a slice's proposal the id of the proposal it continues on
the slice before (they overlap with IoU >= ``min_iou`` and each is the other's best match), so one
object keeps one id through the stack and Accept commits it whole, with one label id.
"""

from __future__ import annotations

import numpy as np

#: Overlap that makes two proposals of neighbouring slices one object (with mutual best match).
#: Measured by ``benchmarks/segment_all_linking.py`` (docs/evaluation.md): on deformed nucleus stacks
#: 0.25 keeps 85-88 % of the nuclei whole (52-56 % at 0.5) and merges none.
LINK_MIN_IOU = 0.25


def link_to_previous(
    previous: np.ndarray | None, current: np.ndarray, first_free: int, min_iou: float = LINK_MIN_IOU
) -> tuple[np.ndarray, int]:
    """``current`` (0 background, positive proposal ids of one slice) relabelled: a proposal continuing
    one of ``previous`` (the slice before, already relabelled; None: nothing to continue) takes its id,
    every other one a new id from ``first_free`` on. Returns ``(int32 labels, next free id)``."""
    current = np.asarray(current)
    ids = np.unique(current[current > 0])
    if ids.size == 0:
        return np.zeros(current.shape, np.int32), first_free
    continued = _mutual_best_matches(previous, current, min_iou) if previous is not None else {}
    lookup = np.zeros(int(ids.max()) + 1, np.int64)
    for proposal in ids:
        if int(proposal) in continued:
            lookup[proposal] = continued[int(proposal)]
        else:
            lookup[proposal] = first_free
            first_free += 1
    relabelled = np.where(current > 0, lookup[np.clip(current, 0, None)], 0).astype(np.int32)
    return relabelled, first_free


def _mutual_best_matches(previous: np.ndarray, current: np.ndarray, min_iou: float) -> dict[int, int]:
    """``{current id: previous id}`` for pairs that are each other's best overlap with IoU >= min_iou."""
    previous = np.asarray(previous)
    if previous.shape != current.shape:
        raise ValueError(f"slices differ in shape: {previous.shape} and {current.shape}")
    both = (previous > 0) & (current > 0)
    if not both.any():
        return {}
    pairs, overlap = np.unique(np.stack([previous[both], current[both]]), axis=1, return_counts=True)
    prev_ids, prev_areas = np.unique(previous[previous > 0], return_counts=True)
    cur_ids, cur_areas = np.unique(current[current > 0], return_counts=True)
    prev_area = dict(zip(prev_ids.tolist(), prev_areas.tolist()))
    cur_area = dict(zip(cur_ids.tolist(), cur_areas.tolist()))
    best_of_prev: dict[int, tuple[float, int]] = {}
    best_of_cur: dict[int, tuple[float, int]] = {}
    for (p, c), inter in zip(pairs.T.tolist(), overlap.tolist()):
        iou = inter / (prev_area[p] + cur_area[c] - inter)
        if iou > best_of_prev.get(p, (0.0, 0))[0]:
            best_of_prev[p] = (iou, c)
        if iou > best_of_cur.get(c, (0.0, 0))[0]:
            best_of_cur[c] = (iou, p)
    return {c: p for c, (iou, p) in best_of_cur.items() if iou >= min_iou and best_of_prev[p][1] == c}


__all__ = ["LINK_MIN_IOU", "link_to_previous"]
