"""Fill between: the slices between two annotated slices of one object, predicted from both sides.

The object is known on slices ``a`` and ``b``; every slice strictly between them is predicted by
propagation (:func:`~.propagation.propagate_step`) from both ends: a chain from ``a`` towards ``b``
and a chain from ``b`` towards ``a``. Each slice takes the mask of the chain from its **nearer**
annotated slice (ties go to ``a``); the other chain's mask on that slice is the check: where the two
overlap less than :data:`REVIEW_AGREEMENT` (IoU), the slice is marked for review. No stopping rule
applies (the object is there on both ends); a chain whose mask vanishes ends, and the slices it
would have given take the other chain's mask (marked for review).

The two chains do not depend on each other, so their steps alternate (``a+1``, ``b-1``, ``a+2``,
...), and the middle slices, which need both chains, come first. :func:`fill_between` is the
headless API; the widget and ``fcfi segment`` (a click log's fill steps) run :func:`fill_slices`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_fcfi.annotation.propagation import propagate_step, read_volume_slice

#: A filled slice whose two predictions (from either annotated end) overlap less than this IoU is
#: marked for review.
REVIEW_AGREEMENT = 0.8


@dataclass
class FilledSlice:
    """One slice between the two annotated ones: its mask, where it came from and how sure it is."""

    index: int
    mask: np.ndarray
    source: int  # the annotated slice whose chain gave the mask
    confidence: float  # network confidence in ``mask`` (mean probability inside it)
    agreement: float  # IoU with the other chain's mask on this slice (0 when that chain ended)

    @property
    def review(self) -> bool:
        return self.agreement < REVIEW_AGREEMENT


class FillResult(dict):
    """``{slice index: mask}`` of :func:`fill_between`, plus ``slices`` (the :class:`FilledSlice`
    records) and ``review`` (the indices whose two predictions disagree, in slice order)."""

    def __init__(self, slices: list[FilledSlice]):
        super().__init__((s.index, s.mask) for s in sorted(slices, key=lambda s: s.index))
        self.slices = sorted(slices, key=lambda s: s.index)
        self.review = [s.index for s in self.slices if s.review]


def _iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 0.0
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def fill_slices(
    segmenter: Any,
    read_slice: Callable[[int], Any],
    index_a: int,
    mask_a: np.ndarray,
    index_b: int,
    mask_b: np.ndarray,
    *,
    channel_axis: int | None = None,
    channel: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[FilledSlice]:
    """Yield a :class:`FilledSlice` for each slice strictly between ``index_a`` and ``index_b`` as soon
    as both chains have passed it (middle slices first). ``segmenter`` and ``read_slice`` as for
    :func:`~.propagation.propagation_steps`; ``should_stop()`` (Cancel) is asked before each step:
    slices not finished then are not yielded."""
    a, b = int(index_a), int(index_b)
    if a > b:
        a, b, mask_a, mask_b = b, a, mask_b, mask_a
    between = list(range(a + 1, b))
    if not between:
        return
    chains: dict[int, dict[int, tuple[np.ndarray, float]]] = {a: {}, b: {}}
    previous = {a: np.asarray(mask_a, bool), b: np.asarray(mask_b, bool)}
    alive = {a: bool(previous[a].any()), b: bool(previous[b].any())}
    paths = {a: between, b: between[::-1]}
    done: set[int] = set()
    for step in range(len(between)):
        for source in (a, b):
            if not alive[source]:
                continue
            if should_stop is not None and should_stop():
                return
            index = paths[source][step]
            mask, confidence = propagate_step(
                segmenter, read_slice(index), previous[source], channel_axis, channel
            )
            if not mask.any():
                alive[source] = False
                continue
            chains[source][index] = (mask, confidence)
            previous[source] = mask
        # A slice is final once each chain has passed it or has ended.
        last = len(between) - 1
        for position, index in enumerate(between):
            settled_a = step >= position or not alive[a]
            settled_b = step >= last - position or not alive[b]
            if index in done or not (settled_a and settled_b):
                continue
            done.add(index)
            near, far = (a, b) if index - a <= b - index else (b, a)
            chosen, other = chains[near].get(index), chains[far].get(index)
            if chosen is None:
                chosen, other, near = other, None, far
            if chosen is None:
                continue  # neither chain reached this slice: nothing to fill
            yield FilledSlice(
                index, chosen[0], near, chosen[1], _iou(chosen[0], other[0] if other is not None else None)
            )


def fill_between(
    model: Any,
    volume: Any,
    index_a: int,
    mask_a: Any,
    index_b: int,
    mask_b: Any,
    *,
    axis: int = 0,
    channel_axis: int | None = None,
    channel: Any = None,
    **settings: Any,
) -> FillResult:
    """Masks of the object on the slices strictly between slices ``index_a`` and ``index_b``.

    ``volume``, ``axis``, ``channel_axis``/``channel`` and ``settings`` as for
    :func:`~.propagation.propagate`; ``mask_a``/``mask_b`` are the object's bool masks on the two
    slices. Returns ``{slice index: mask}`` (a :class:`FillResult`: ``.review`` lists the slices whose
    predictions from the two ends disagree, ``.slices`` has each slice's source, confidence and
    agreement). Raises ``ValueError`` for masks of the wrong shape, empty masks, indices out of range
    or equal.
    """
    from napari_fcfi.engine import InteractiveSegmenter

    read, size, plane_shape = read_volume_slice(volume, axis, channel_axis)
    masks = []
    for name, index, mask in (("index_a", index_a, mask_a), ("index_b", index_b, mask_b)):
        if not 0 <= int(index) < size:
            raise ValueError(f"{name} {index} is outside the {size} slices of axis {axis}")
        mask = np.asarray(mask)
        if mask.shape != plane_shape:
            raise ValueError(
                f"the mask on slice {index} has shape {mask.shape}, the slices are {plane_shape}"
            )
        if not mask.astype(bool).any():
            raise ValueError(f"the mask on slice {index} is empty: annotate the object there first")
        masks.append(mask.astype(bool))
    if int(index_a) == int(index_b):
        raise ValueError("fill between needs two different slices")
    segmenter = InteractiveSegmenter(model, **settings)
    return FillResult(
        list(
            fill_slices(
                segmenter,
                read,
                int(index_a),
                masks[0],
                int(index_b),
                masks[1],
                channel_axis=channel_axis,
                channel=channel,
            )
        )
    )


__all__ = ["REVIEW_AGREEMENT", "FillResult", "FilledSlice", "fill_between", "fill_slices"]
