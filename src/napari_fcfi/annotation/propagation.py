"""Carrying an object through a stack (z or t) with FCFI's feedback input.

FCFI takes the previous mask as an input ("feedback"). Propagation hands it the object's mask on
the neighbouring slice instead, plus one automatic positive click at that mask's most interior
point, and keeps going slice by slice until the object ends or the range does.

When does the object end? Past an object's true end the network tends to copy its feedback mask
(area and overlap stay as they were), and an image-contrast rule (inside vs a ring around the mask)
ended live membrane-bounded cells, whose ring lands on a membrane or on the neighbour's cytoplasm.
What separates the two on every stack set measured (nuclei, cells, membrane-bounded cells;
docs/evaluation.md, *Stopping rule*) is the network's own confidence: the mean probability inside
the propagated mask. Confidence is a property of the model: its threshold is calibrated per model
(``fcfi_metadata["propagation"]["stop_confidence"]`` in the weights file, :func:`stop_confidence`),
:data:`MIN_CONFIDENCE` for models without one. One slice below the threshold alone is often a poor but live mask, so
the object ends only where :data:`LOW_RUN` slices in a row fall below it (the first of them is the
first slice without the object), or where the mask vanishes, shrinks below :data:`MIN_AREA_RATIO`
of the previous slice's or no longer overlaps it (:func:`mask_stop_reason`), or lies mostly where the
slice has no data (NaN, Inf: :func:`missing_data_reason`), or where the object
fades out: its raw contrast falls below half its peak (:mod:`.fading`; the network, seeing each
slice normalised on its own, is sure of a nucleus's out-of-focus light past its end).
:class:`PropagationStop` says why, and propagating with ``through`` continues past such a stop.

:func:`propagate` is the headless API; the napari widget and ``fcfi segment`` (replaying a click
log's propagation steps) both run :func:`propagation_steps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_fcfi.engine.distance import border_distance
from napari_fcfi.engine.windows import bbox_of_mask

from .fading import FadeWatch, slice_source

#: A propagated mask smaller than this fraction of the previous slice's mask ends the object.
MIN_AREA_RATIO = 0.2
#: Mean network probability inside a propagated mask below which the slice is doubtful (the value
#: calibrated on bundled model v1; a model's own calibration in its metadata wins) ...
MIN_CONFIDENCE = 0.78
#: ... and this many doubtful slices in a row end the object (at the first of them).
LOW_RUN = 2
DIRECTIONS = ("up", "down", "both")
#: The refining pass of each propagated slice runs on a square of this many times the mask's box at
#: this network size (first 2 stacks x 5 objects per set, model v2, one-step IoU from the true
#: previous mask: dsb-deformed 0.810 -> 0.826, membrane 0.759 -> 0.802, mnfinder-deformed 0.880 ->
#: 0.877; at 256 px the same within 0.004 for 1.6x the pass's time).
REFINE_ZOOM = 2.0
REFINE_INPUT_SIZE = 192


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border (first in row-major order among equals)."""
    inside = np.asarray(mask, bool)
    if not inside.any():
        raise ValueError("the mask is empty")
    distance = border_distance(inside)  # on the mask's bounding box only
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(row), int(col)


def propagation_order(index: int, size: int, direction: str, max_slices: int | None) -> list[list[int]]:
    """Slice indices to visit from ``index``: one list per direction, nearest first."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if max_slices is not None and int(max_slices) < 1:
        raise ValueError(f"max_slices must be at least 1, got {max_slices}")
    limit = size if max_slices is None else int(max_slices)
    up = list(range(index + 1, min(size, index + 1 + limit)))
    down = list(range(index - 1, max(-1, index - 1 - limit), -1))
    return {"up": [up], "down": [down], "both": [up, down]}[direction]


def mask_stop_reason(mask: np.ndarray, previous: np.ndarray) -> str | None:
    """Why ``mask`` (propagated from ``previous``) ends the object, or None: the mask rules."""
    area, before = int(mask.sum()), int(previous.sum())
    if area == 0:
        return "the mask vanished"
    if area < MIN_AREA_RATIO * before:
        return f"the mask shrank to {100 * area / before:.0f} % of the previous slice's"
    if not (mask & previous).any():
        return "the mask no longer overlaps the previous slice's"
    return None


#: A propagated mask with more than this share of its pixels on no data (NaN, Inf) ends the object:
#: on a blank or dropped slice the network's mask is only its feedback copied.
MAX_MISSING_SHARE = 0.5


def has_missing_values(image: Any) -> bool:
    """Whether ``image`` can hold NaN or Inf at all (a float type; integers cannot): read from its dtype,
    so an integer slice (or a dask one, not computed) costs no scan."""
    return np.dtype(getattr(image, "dtype", np.float64)).kind in "fc"


def missing_data_reason(
    image: Any, mask: np.ndarray, channel_axis: int | None = None, channel: Any = None
) -> str | None:
    """Why ``mask`` on slice ``image`` cannot be the object (most of it lies where the slice has no
    data), or None."""
    if not has_missing_values(image):
        return None
    box = bbox_of_mask(np.asarray(mask, bool))
    if box is None:
        return None
    region = slice_source(image, channel_axis, channel).read_region(box)  # (h, w, channels)
    # a pixel has data when any channel it is read from has (one NaN channel leaves the others)
    missing = 1.0 - float(np.isfinite(region).any(axis=-1)[np.asarray(mask, bool)[box.slices]].mean())
    if missing <= MAX_MISSING_SHARE:
        return None
    return f"the slice has no data under the mask ({math.floor(100 * missing)} % NaN or Inf)"


def ends_object(mask: np.ndarray, previous: np.ndarray) -> bool:
    """The object has ended by the mask rules (:func:`mask_stop_reason`)."""
    return mask_stop_reason(mask, previous) is not None


def stop_confidence(model: Any) -> float:
    """The confidence threshold of the stopping rule for ``model`` (a network, or an engine session).

    Read from the model's metadata (``propagation.stop_confidence``, written when a model is
    calibrated: ``scripts/measure_stop_features.py --suggest``); :data:`MIN_CONFIDENCE` otherwise.
    """
    network = getattr(model, "model", model)
    metadata = getattr(network, "fcfi_metadata", None)
    calibration = metadata.get("propagation") if isinstance(metadata, dict) else None
    value = calibration.get("stop_confidence") if isinstance(calibration, dict) else None
    if isinstance(value, int | float) and 0.0 < float(value) < 1.0:
        return float(value)
    return MIN_CONFIDENCE


def mask_confidence(probability: np.ndarray, mask: np.ndarray) -> float:
    """Mean probability inside ``mask`` (0 for an empty mask): the network's confidence in it."""
    inside = np.asarray(probability)[mask]
    return float(inside.mean()) if inside.size else 0.0


def propagate_step(
    segmenter: Any,
    image: Any,
    previous: np.ndarray,
    channel_axis: int | None = None,
    channel: Any = None,
    refine: bool = True,
) -> tuple[np.ndarray, float]:
    """One slice: ``previous`` as the session's starting mask plus a click at its interior point.

    With ``refine`` (and an engine session) the mask then gets a second pass: the same click with the
    new mask as feedback on a square of :data:`REFINE_ZOOM` times its box at :data:`REFINE_INPUT_SIZE` px
    (:meth:`~napari_fcfi.engine.InteractiveSegmenter.refine_predictions`, which keeps the first mask
    when the refined one misses the click or was cut by its window). Returns the mask and the
    first pass's confidence (:func:`mask_confidence`: what the stop threshold is calibrated on)."""
    row, col = interior_point(previous)
    segmenter.set_image(image, channel_axis=channel_axis, channel=channel, initial_mask=previous)
    segmenter.add_click(row, col, True)
    mask = np.array(segmenter.mask, dtype=bool)
    patch = getattr(segmenter, "probability_patch", None)  # the engine's sparse form: no full-size array
    if patch is None or not hasattr(patch, "values"):
        return mask, mask_confidence(segmenter.probability, mask)
    values = patch.values[mask[patch.box.slices]]
    confidence = float(values.mean()) if values.size else 0.0
    if refine and mask.any() and hasattr(segmenter, "refine_predictions"):
        second = segmenter.refine_predictions(
            [(row, col)], [patch], zoom=REFINE_ZOOM, input_size=REFINE_INPUT_SIZE
        )[0]
        if second is not patch:
            mask = np.zeros_like(mask)
            mask[second.box.slices] = second.values > segmenter.threshold
    return mask, confidence


@dataclass
class PropagatedSlice:
    """A slice the object was carried to: its mask and the network's confidence in it."""

    index: int
    mask: np.ndarray
    confidence: float


@dataclass
class PropagationStop:
    """Where and why propagation ended the object in one direction (the range's end is no stop).

    ``index`` is the first slice left empty; ``span`` the slices the decision looked at (propagating
    again from the last filled slice with ``through=span`` continues past the stop)."""

    index: int
    reason: str
    span: int = 1
    mask: np.ndarray | None = None  # the mask the rule rejected on slice ``index``

    def describe(self) -> str:
        return f"stopped at slice {self.index}: {self.reason}"


def propagation_steps(
    segmenter: Any,
    read_slice: Callable[[int], Any],
    start_mask: np.ndarray,
    order: list[list[int]],
    *,
    channel_axis: int | None = None,
    channel: Any = None,
    should_stop: Callable[[], bool] | None = None,
    through: int = 0,
    min_confidence: float | None = None,
    start_index: int | None = None,
    fading: bool = True,
    direction_ended: Callable[[int], bool] | None = None,
) -> Iterator[PropagatedSlice | PropagationStop]:
    """Yield each propagated slice along each direction of ``order``, and a stop where the object ends.

    ``segmenter`` is an engine session (``set_image``/``add_click``/``mask``/``probability``),
    re-used for every slice; ``read_slice(i)`` gives slice ``i`` as the engine accepts it. The first
    ``through`` slices of each direction are kept whatever the stopping rules say (except a vanished
    mask): continuing past a stop. A doubtful slice (confidence below ``min_confidence``, by default
    the model's :func:`stop_confidence`) is held back until the next slices decide; at the range's end
    it is kept. With ``fading``, an object that fades out (:mod:`.fading`) ends at once; its contrast is
    followed from ``start_index``, the slice of ``start_mask`` (None: from the first propagated slice
    on), and a slice kept by ``through`` becomes the new reference (the user said it is the object).
    ``should_stop()`` is asked before each slice (Cancel in the widget); the slices done so far are kept.
    ``direction_ended(index)`` too, with the slice about to be computed: True drops the rest of that
    direction without a stop (the widget: the user changed a slice there, nothing past it is placed).
    """
    threshold = stop_confidence(segmenter) if min_confidence is None else float(min_confidence)
    start = (
        slice_source(read_slice(start_index), channel_axis, channel)
        if fading and start_index is not None
        else None
    )

    def chain(indices: list[int]) -> Iterator[PropagatedSlice | PropagationStop]:
        previous = np.asarray(start_mask, bool)
        watch = None if start is None else FadeWatch(start, previous)
        doubtful: list[PropagatedSlice] = []
        stopped = False
        for position, index in enumerate(indices):
            if should_stop is not None and should_stop():
                yield from doubtful
                return
            if direction_ended is not None and direction_ended(index):
                doubtful, stopped = [], True  # no network time for slices nobody will get
                break
            image = read_slice(index)
            mask, confidence = propagate_step(segmenter, image, previous, channel_axis, channel)
            forced = position < through
            reason = mask_stop_reason(mask, previous) or missing_data_reason(
                image, mask, channel_axis, channel
            )
            if fading and reason is None:
                source = slice_source(image, channel_axis, channel)
                if forced or watch is None:
                    watch = watch or FadeWatch(source, mask)
                    watch.rebase(source, mask)
                elif (ratio := watch.faded(source, mask)) is not None:
                    # The object ends here. Doubtful slices just before it are kept: their contrast had
                    # not faded (measured: fewer live objects stopped early, on mnfinder-deformed
                    # 3.8 -> 1.3 %; the cost, one dsb-deformed slice kept whose mask sat on a neighbour).
                    yield from doubtful
                    reason = f"the object faded ({math.floor(ratio * 100)} % of its brightest recent slice's contrast)"
                    yield PropagationStop(index, reason, 1, mask)
                    stopped = True
                    break
            if reason is not None and not (forced and mask.any()):
                first = doubtful[0] if doubtful else PropagatedSlice(index, mask, confidence)
                yield PropagationStop(first.index, reason, len(doubtful) + 1, first.mask)
                stopped = True
                break
            step = PropagatedSlice(index, mask, confidence)
            if confidence < threshold and not forced:
                doubtful.append(step)
                if len(doubtful) >= LOW_RUN:
                    values = ", ".join(f"{d.confidence:.2f}" for d in doubtful)
                    yield PropagationStop(
                        doubtful[0].index,
                        f"the network is unsure ({values} < "
                        f"{threshold:.2f} on {len(doubtful)} slices in a row)",
                        len(doubtful),
                        doubtful[0].mask,
                    )
                    stopped = True
                    break
            else:
                yield from doubtful
                doubtful = []
                yield step
            previous = mask
        if not stopped:
            yield from doubtful

    # The directions take turns (about a slice each): a run cancelled part-way has grown on both sides,
    # not only up. Each direction keeps its own state; the engine session is set up afresh per slice.
    chains = [chain(indices) for indices in order]
    while chains:
        for running in list(chains):
            item = next(running, None)
            if item is None:
                chains.remove(running)
            else:
                yield item


def propagate_slices(
    segmenter: Any,
    read_slice: Callable[[int], Any],
    start_mask: np.ndarray,
    order: list[list[int]],
    *,
    channel_axis: int | None = None,
    channel: Any = None,
    should_stop: Callable[[], bool] | None = None,
    through: int = 0,
    start_index: int | None = None,
    fading: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(slice index, mask)`` of each slice :func:`propagation_steps` carries the object to."""
    for item in propagation_steps(
        segmenter,
        read_slice,
        start_mask,
        order,
        channel_axis=channel_axis,
        channel=channel,
        should_stop=should_stop,
        through=through,
        start_index=start_index,
        fading=fading,
    ):
        if isinstance(item, PropagatedSlice):
            yield item.index, item.mask


def read_volume_slice(
    volume: Any, axis: int, channel_axis: int | None = None
) -> tuple[Callable[[int], np.ndarray], int, tuple[int, ...]]:
    """``(read(i), slice count, mask shape)`` for the slices of ``volume`` along ``axis``.

    ``read(i)`` takes slice ``i`` as a numpy array (only that slice is read from dask or zarr). The
    mask shape leaves out the slice's channel axis (``channel_axis``, or RGB(A) last). Raises
    ``ValueError`` for an axis out of range.
    """
    shape = tuple(int(s) for s in volume.shape)
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for a volume of shape {shape}")
    axis %= len(shape)
    slice_shape = shape[:axis] + shape[axis + 1 :]
    rgb = channel_axis is None and len(slice_shape) == 3 and slice_shape[-1] in (3, 4)
    if channel_axis is not None or rgb:
        drop = (channel_axis if channel_axis is not None else -1) % len(slice_shape)
        slice_shape = tuple(n for i, n in enumerate(slice_shape) if i != drop)

    def read(i: int) -> np.ndarray:
        selection: list[Any] = [slice(None)] * len(shape)
        selection[axis] = i
        return np.asarray(volume[tuple(selection)])

    return read, shape[axis], slice_shape


def propagate(
    model: Any,
    volume: Any,
    index: int,
    mask: Any,
    *,
    axis: int = 0,
    direction: str = "both",
    max_slices: int | None = None,
    channel_axis: int | None = None,
    channel: Any = None,
    **settings: Any,
) -> dict[int, np.ndarray]:
    """Masks of the object on the slices it reaches from slice ``index`` (the start slice excluded).

    ``volume`` is an array-like (numpy, dask, zarr: only the visited slices are read) whose axis
    ``axis`` is the slice axis; taking one index of it leaves a 2D image, RGB(A) ``(H, W, 3|4)`` or an
    image with a channel axis (``channel_axis``/``channel`` in the slice's axes, as for
    :meth:`~napari_fcfi.engine.InteractiveSegmenter.set_image`). ``mask`` is the object's bool mask on
    slice ``index``. ``direction`` is ``"up"`` (increasing index), ``"down"`` or ``"both"``;
    ``max_slices`` limits the slices per direction. ``settings`` are
    :class:`~napari_fcfi.engine.InteractiveSegmenter` settings. Raises ``ValueError`` for a mask of the
    wrong shape, an index out of range, an empty mask or a bad direction/axis.
    """
    from napari_fcfi.engine import InteractiveSegmenter

    read, size, plane_shape = read_volume_slice(volume, axis, channel_axis)
    if not 0 <= int(index) < size:
        raise ValueError(f"index {index} is outside the {size} slices of axis {axis}")
    mask = np.asarray(mask)
    if mask.shape != plane_shape:
        raise ValueError(f"mask has shape {mask.shape}, the slices of axis {axis} are {plane_shape}")
    if not mask.astype(bool).any():
        raise ValueError("the start mask is empty: there is no object to propagate")
    order = propagation_order(int(index), size, direction, max_slices)
    segmenter = InteractiveSegmenter(model, **settings)
    return dict(
        propagate_slices(
            segmenter,
            read,
            mask.astype(bool),
            order,
            channel_axis=channel_axis,
            channel=channel,
            start_index=int(index),
        )
    )


__all__ = [
    "DIRECTIONS",
    "LOW_RUN",
    "MIN_AREA_RATIO",
    "MIN_CONFIDENCE",
    "PropagatedSlice",
    "PropagationStop",
    "ends_object",
    "interior_point",
    "mask_confidence",
    "mask_stop_reason",
    "propagate",
    "propagate_slices",
    "propagate_step",
    "propagation_order",
    "propagation_steps",
    "read_volume_slice",
    "stop_confidence",
]
