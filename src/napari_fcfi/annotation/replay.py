"""Replaying committed objects: the steps of an :class:`~.clicklog.ObjectRecord` -> masks -> labels.

The widget and ``fcfi segment`` share these functions: :func:`object_masks` runs an object's steps
(clicks on slices, propagations, fills between slices) through an engine session, :func:`paint_slices` writes its masks
with the painting rules of :mod:`.painting`. A saved click log therefore reproduces the labels the
user committed, bit for bit on the same machine and thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .clicklog import ClickLog, ClicksStep, FillStep, ObjectRecord, PropagateStep, SliceKey
from .filling import fill_slices
from .geometry import ImageGeometry, describe_slice, describe_slices, read_plane
from .painting import PaintResult, check_label_id, paint_region
from .propagation import propagate_slices, propagation_order


def stack_key(key: SliceKey, axis: int, index: int) -> SliceKey:
    """``key`` with its ``axis``-th slice index replaced by ``index``."""
    return key[:axis] + (int(index),) + key[axis + 1 :]


def drop_beyond(masks: dict[SliceKey, np.ndarray], start: SliceKey, axis: int, direction: str) -> None:
    """Forget the masks a new propagation from ``start`` replaces (the slices beyond it in ``direction``)."""
    for key in list(masks):
        same_line = all(k == s for i, (k, s) in enumerate(zip(key, start)) if i != axis)
        if not same_line:
            continue
        if (direction in ("up", "both") and key[axis] > start[axis]) or (
            direction in ("down", "both") and key[axis] < start[axis]
        ):
            del masks[key]


def object_masks(
    segmenter: Any,
    image: Any,
    geometry: ImageGeometry,
    record: ObjectRecord,
    channel: Any = None,
) -> dict[SliceKey, np.ndarray]:
    """The object's mask on every slice it covers, by re-running ``record``'s steps in order.

    Every step runs at the probability threshold it was made with (its own, else the object's, else
    the segmenter's); the segmenter's threshold is restored afterwards.
    """
    default_threshold = getattr(segmenter, "threshold", None)
    try:
        return _object_masks(segmenter, image, geometry, record, channel, default_threshold)
    finally:
        if default_threshold is not None:
            segmenter.threshold = default_threshold


def _object_masks(
    segmenter: Any,
    image: Any,
    geometry: ImageGeometry,
    record: ObjectRecord,
    channel: Any,
    default_threshold: float | None,
) -> dict[SliceKey, np.ndarray]:
    masks: dict[SliceKey, np.ndarray] = {}
    propagated: dict[SliceKey, np.ndarray] = {}  # the mask the latest propagation left on each slice
    slice_channel_axis = geometry.slice_channel_axis()
    for step in record.steps:
        # Each mask at the threshold it was made with: the step's, else the object's, else the session's.
        threshold = next(
            (t for t in (step.threshold, record.threshold, default_threshold) if t is not None), None
        )
        if threshold is not None:
            segmenter.threshold = threshold
        if isinstance(step, ClicksStep):
            initial = step.initial_mask
            if step.from_propagation:
                initial = propagated.get(step.slice_key)
            segmenter.set_image(
                read_plane(image, geometry, step.slice_key),
                channel_axis=slice_channel_axis,
                channel=channel,
                initial_mask=initial,
            )
            for click in step.clicks:
                segmenter.add_click(click.row, click.col, click.positive)
            masks[step.slice_key] = np.array(segmenter.mask, dtype=bool)
        elif isinstance(step, PropagateStep):
            start = masks.get(step.slice_key)
            if start is None or not start.any():
                raise ValueError(
                    f"propagation from {describe_slices([step.slice_key])} of label {record.label_id}: "
                    "the object is empty on that slice"
                )
            drop_beyond(masks, step.slice_key, step.axis, step.direction)
            drop_beyond(propagated, step.slice_key, step.axis, step.direction)
            size = geometry.slice_shape[step.axis]
            order = propagation_order(step.slice_key[step.axis], size, step.direction, step.max_slices)

            def read(index: int, start_key: SliceKey = step.slice_key, axis: int = step.axis) -> Any:
                return read_plane(image, geometry, stack_key(start_key, axis, index))

            for index, mask in propagate_slices(
                segmenter,
                read,
                start,
                order,
                channel_axis=slice_channel_axis,
                channel=channel,
                through=step.through,
                start_index=step.slice_key[step.axis],
                fading=step.fading,
            ):
                key = stack_key(step.slice_key, step.axis, index)
                masks[key] = propagated[key] = mask
        elif isinstance(step, FillStep):
            end_a, end_b = masks.get(step.slice_key), masks.get(step.other)
            if end_a is None or end_b is None or not end_a.any() or not end_b.any():
                raise ValueError(
                    f"fill between slices {describe_slice(step.slice_key)} and {describe_slice(step.other)} of label "
                    f"{record.label_id}: the object is empty on one of them"
                )

            def read_fill(index: int, start_key: SliceKey = step.slice_key, axis: int = step.axis) -> Any:
                return read_plane(image, geometry, stack_key(start_key, axis, index))

            for filled in fill_slices(
                segmenter,
                read_fill,
                step.slice_key[step.axis],
                end_a,
                step.other[step.axis],
                end_b,
                channel_axis=slice_channel_axis,
                channel=channel,
                fused=step.fused,
                should_stop=None if step.passes is None else PassLimit(step.passes),
                partial=step.passes is not None,
            ):
                if step.kept is not None and filled.index not in step.kept:
                    continue  # a cancelled fill: the slices it finished are the full fill's, the rest not there
                key = stack_key(step.slice_key, step.axis, filled.index)
                masks[key] = propagated[key] = filled.mask
    return masks


def paint_slices(
    labels: Any,
    masks: dict[SliceKey, np.ndarray],
    label_id: int,
    *,
    edited: bool,
    overwrite: bool,
    write: Callable[[SliceKey, tuple[slice, slice], np.ndarray], None] | None = None,
) -> dict[SliceKey, PaintResult]:
    """Paint an object's masks into ``labels`` slice by slice; returns each slice's result.

    ``write(key, region, values)`` stores a painted region (default: numpy assignment into
    ``labels``); slices whose commit is refused are left unchanged.
    """
    check_label_id(label_id, labels.dtype)
    results = {}
    for key, mask in masks.items():
        plane = labels[key] if key else labels
        region, result = paint_region(plane, mask, label_id, replace_label=edited, overwrite=overwrite)
        results[key] = result
        if result.refused is None:
            if write is not None:
                write(key, region, result.plane)
            else:
                plane[region] = result.plane
    return results


def replay_click_log(
    model: Any,
    image: Any,
    geometry: ImageGeometry,
    log: ClickLog,
    *,
    channel: Any = None,
    dtype: Any = None,
    labels: np.ndarray | None = None,
    segmenter: Any = None,
    model_for: Callable[[str], Any] | None = None,
    **settings: Any,
) -> np.ndarray:
    """Labels of ``log`` replayed on ``image`` (a new array of ``dtype``, or painted into ``labels``).

    ``segmenter`` replaces the engine session built from ``model`` and ``settings`` (stand-ins in tests).
    Each object runs with the channel it was made with (``record.made_with``), else ``channel``; an
    object made with another model than the log's runs with ``model_for(that name)`` when given (None
    from it: ``model``).
    """
    from napari_fcfi.engine import InteractiveSegmenter

    if labels is None:
        top = max((r.label_id for r in log.records), default=0)
        dtype = (
            np.dtype(dtype)
            if dtype is not None
            else (np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
        )
        labels = np.zeros(geometry.label_shape, dtype=dtype)
    if tuple(labels.shape) != geometry.label_shape:
        raise ValueError(
            f"labels of shape {labels.shape} do not fit the image's label grid {geometry.label_shape}"
        )
    for record in log.records:
        for key in record.slice_keys:
            if not geometry.contains(key, 0, 0):
                raise ValueError(
                    f"label {record.label_id}: {describe_slices([key])} is outside the image's stack {geometry.slice_shape}"
                )
    if segmenter is None:
        segmenter = InteractiveSegmenter(model, **settings)
    logged_model = log.metadata.get("model")
    segmenters: dict[str, Any] = {}
    for record in log.records:
        runs_on = segmenter
        name = record.made_with.get("model")
        if model_for is not None and name and name != logged_model:
            if name not in segmenters:
                other = model_for(name)
                segmenters[name] = segmenter if other is None else InteractiveSegmenter(other, **settings)
            runs_on = segmenters[name]
        own_channel = record.made_with.get("channel", channel)
        masks = object_masks(runs_on, image, geometry, record, own_channel)
        paint_slices(labels, masks, record.label_id, edited=record.edited, overwrite=record.overwrite)
    return labels


class PassLimit:
    """A ``should_stop`` for a run that must stop where a cancelled one did: after ``passes`` network
    passes (the calls that returned False); :attr:`passes` counts them for the run being recorded."""

    def __init__(self, limit: int | None = None, cancelled: Any = None) -> None:
        self.limit, self.cancelled, self.passes = limit, cancelled, 0

    def __call__(self) -> bool:
        if (self.limit is not None and self.passes >= self.limit) or (
            self.cancelled is not None and self.cancelled()
        ):
            return True
        self.passes += 1
        return False
