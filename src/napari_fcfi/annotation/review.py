"""Which slices of a propagation or fill to look at first: the ones most likely wrong.

A predicted slice is suspect when the network was unsure of it (low confidence: mean probability
inside the mask), when, for a fill between two slices, the predictions from the two ends disagree,
and when it jumps in area or position against its neighbours along the stack (the annotated
slices included; this counts less: a confident slice is listed only for a large jump). Confidence is what measures best: on 510 one-step
propagations over the five stack sets (``scripts/measure_stop_features.py``), it ranks the slices
below IoU 0.85 above the others with an AUC of 0.92 (area change alone: 0.69), and listing the
slices under :data:`CONFIDENT` finds 70 % of the bad slices with 90 % of the listed ones bad.
:func:`review_slices` lists the slices scoring at least :data:`REVIEW_SCORE`, worst first; the
widget's "next slice to review" key walks that list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Slices scoring at least this are listed for review (a confident slice scores -0.5 unless its
#: area or position jumps, or the two ends of a fill disagree).
REVIEW_SCORE = 0.0
#: Confidence below which a slice is listed for review.
CONFIDENT = 0.86


@dataclass
class PredictedSlice:
    """One predicted slice: its mask, the network's confidence, and (fills) the two ends' agreement."""

    index: int
    mask: np.ndarray
    confidence: float = 1.0
    agreement: float | None = None  # IoU of the predictions from both ends (fill between)


def _shape(mask: np.ndarray) -> tuple[float, np.ndarray | None]:
    area = float(mask.sum())
    if not area:
        return 0.0, None
    rows, cols = np.nonzero(mask)
    return area, np.array([rows.mean(), cols.mean()])


def review_scores(
    predicted: Iterable[PredictedSlice], annotated: dict[int, np.ndarray] | None = None
) -> dict[int, float]:
    """Suspicion per predicted slice: ``max(10 * (CONFIDENT - confidence), -0.5)`` + ``2 * (1 - agreement)``
    where the two ends of a fill disagree + 0.5 x (the largest ``|log2(area ratio)|`` plus centroid
    shift in radii against its neighbours on either side, predicted or ``annotated`` slices): a
    confident slice is listed only when it jumps by about a radius or changes its area twofold."""
    slices = {p.index: p for p in predicted}
    shapes = {i: _shape(p.mask) for i, p in slices.items()}
    shapes.update({i: _shape(np.asarray(m, bool)) for i, m in (annotated or {}).items()})
    order = sorted(shapes)
    scores = {}
    for position, index in enumerate(order):
        if index not in slices:
            continue
        item = slices[index]
        score = max(10.0 * (CONFIDENT - item.confidence), -0.5)
        if item.agreement is not None:
            score += 2.0 * (1.0 - item.agreement)
        area, centre = shapes[index]
        change = 0.0
        for other in (position - 1, position + 1):
            if not 0 <= other < len(order) or abs(order[other] - index) != 1:
                continue
            other_area, other_centre = shapes[order[other]]
            if not area or not other_area or centre is None or other_centre is None:
                change = max(change, 2.0)
                continue
            radius = np.sqrt(max(area, other_area) / np.pi)
            shift = float(np.hypot(*(centre - other_centre))) / radius
            change = max(change, abs(np.log2(area / other_area)) + shift)
        scores[index] = score + 0.5 * change
    return scores


def review_slices(
    predicted: Iterable[PredictedSlice],
    annotated: dict[int, np.ndarray] | None = None,
    threshold: float = REVIEW_SCORE,
) -> list[int]:
    """The predicted slices scoring at least ``threshold`` (:func:`review_scores`), worst first."""
    scores = review_scores(predicted, annotated)
    return sorted((i for i, s in scores.items() if s >= threshold), key=lambda i: (-scores[i], i))


__all__ = ["CONFIDENT", "REVIEW_SCORE", "PredictedSlice", "review_scores", "review_slices"]
