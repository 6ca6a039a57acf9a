"""Carrying an object through a stack (z or t) with FCFI's feedback input.

FCFI takes the previous mask as an input ("feedback"). Propagation hands it the object's mask on
the neighbouring slice instead, plus one automatic positive click at that mask's most interior
point, and keeps going slice by slice until the object ends: its mask vanishes, shrinks below
:data:`MIN_AREA_RATIO` of the previous slice's, or no longer overlaps it (or the range ends).

:func:`propagate` is the headless API; the napari widget and ``fcfi segment`` (replaying a click
log's propagation steps) both run :func:`propagate_slices`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from scipy import ndimage as ndi


#: A propagated mask smaller than this fraction of the previous slice's mask ends the object.
MIN_AREA_RATIO = 0.2
DIRECTIONS = ("up", "down", "both")


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border (first in row-major order among equals)."""
    inside = np.asarray(mask, bool)
    if not inside.any():
        raise ValueError("the mask is empty")
    distance = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
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


def ends_object(mask: np.ndarray, previous: np.ndarray) -> bool:
    """The object has ended: nothing left, shrunk below :data:`MIN_AREA_RATIO`, or no overlap."""
    area = int(mask.sum())
    return area == 0 or area < MIN_AREA_RATIO * int(previous.sum()) or not (mask & previous).any()


def propagate_slices(
    segmenter: Any,
    read_slice: Callable[[int], Any],
    start_mask: np.ndarray,
    order: list[list[int]],
    *,
    channel_axis: int | None = None,
    channel: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(slice index, mask)`` along each direction of ``order`` until the object ends.

    ``segmenter`` is an engine session (``set_image``/``add_click``/``mask``), re-used for every
    slice; ``read_slice(i)`` gives slice ``i`` as the engine accepts it. ``should_stop()`` is asked
    before each slice (Cancel in the widget); the slices done so far are kept.
    """
    for indices in order:
        previous = np.asarray(start_mask, bool)
        for index in indices:
            if should_stop is not None and should_stop():
                return
            row, col = interior_point(previous)
            segmenter.set_image(read_slice(index), channel_axis=channel_axis, channel=channel, initial_mask=previous)
            segmenter.add_click(row, col, True)
            mask = np.array(segmenter.mask, dtype=bool)
            if ends_object(mask, previous):
                break
            yield index, mask
            previous = mask


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

    shape = tuple(int(s) for s in volume.shape)
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for a volume of shape {shape}")
    axis %= len(shape)
    size = shape[axis]
    if not 0 <= int(index) < size:
        raise ValueError(f"index {index} is outside the {size} slices of axis {axis}")
    mask = np.asarray(mask)
    slice_shape = shape[:axis] + shape[axis + 1:]
    plane_shape = slice_shape if channel_axis is None and not (len(slice_shape) == 3 and slice_shape[-1] in (3, 4)) \
        else tuple(n for i, n in enumerate(slice_shape) if i != ((channel_axis if channel_axis is not None else -1)
                                                                 % len(slice_shape)))
    if mask.shape != plane_shape:
        raise ValueError(f"mask has shape {mask.shape}, the slices of axis {axis} are {plane_shape}")
    if not mask.astype(bool).any():
        raise ValueError("the start mask is empty: there is no object to propagate")
    order = propagation_order(int(index), size, direction, max_slices)

    def read(i: int) -> Any:
        selection: list[Any] = [slice(None)] * len(shape)
        selection[axis] = i
        return np.asarray(volume[tuple(selection)])

    segmenter = InteractiveSegmenter(model, **settings)
    return dict(propagate_slices(segmenter, read, mask.astype(bool), order, channel_axis=channel_axis,
                                 channel=channel))


__all__ = ["DIRECTIONS", "MIN_AREA_RATIO", "ends_object", "interior_point", "propagate", "propagate_slices",
           "propagation_order"]
