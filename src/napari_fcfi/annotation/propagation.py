"""Carrying an object through a stack (z or t) with FCFI's feedback input.

FCFI takes the previous mask as an input ("feedback"). Propagation hands it the object's mask on
the neighbouring slice instead, plus one automatic positive click at that mask's most interior
point, and keeps going slice by slice until the object ends: its mask vanishes, shrinks below
:data:`MIN_AREA_RATIO` of the previous slice's, no longer overlaps it, or no longer stands out from
its surroundings in the image (the network tends to copy the feedback mask onto slices past the
object's end, so the image has the last word: see :func:`object_contrast`), or the range ends.

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
#: A propagated mask whose contrast to its surrounding ring falls below this fraction of the start
#: slice's (or changes sign) ends the object.
MIN_CONTRAST_RATIO = 0.35
RING_WIDTH = 3
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


def object_contrast(image: Any, mask: np.ndarray, channel_axis: int | None = None) -> float | None:
    """(mean inside ``mask`` - mean of a :data:`RING_WIDTH`-pixel ring around it) / std of both, or None.

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
    pad = RING_WIDTH + 1
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, mask.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, mask.shape[1])
    inside = mask[r0:r1, c0:c1]
    ring = ndi.binary_dilation(inside, iterations=RING_WIDTH) & ~inside
    if not ring.any():
        return None
    window = data[r0:r1, c0:c1]
    values = window[inside | ring]
    spread = float(values.std())
    if not np.isfinite(spread) or spread <= 0:
        return 0.0
    return float((window[inside].mean() - window[ring].mean()) / spread)


def faded(contrast: float | None, reference: float | None) -> bool:
    """The object no longer stands out like on the start slice (see :data:`MIN_CONTRAST_RATIO`)."""
    if contrast is None or reference is None or abs(reference) < 1e-6:
        return False  # no basis to judge: keep going (the area and overlap rules still apply)
    return contrast / reference < MIN_CONTRAST_RATIO


def propagate_slices(
    segmenter: Any,
    read_slice: Callable[[int], Any],
    start_mask: np.ndarray,
    order: list[list[int]],
    *,
    channel_axis: int | None = None,
    channel: Any = None,
    should_stop: Callable[[], bool] | None = None,
    start_image: Any = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(slice index, mask)`` along each direction of ``order`` until the object ends.

    ``segmenter`` is an engine session (``set_image``/``add_click``/``mask``), re-used for every
    slice; ``read_slice(i)`` gives slice ``i`` as the engine accepts it. ``start_image`` (the start
    slice) gives the object's contrast there, against which the image rule judges the other slices
    (without it only the mask rules apply). ``should_stop()`` is asked before each slice (Cancel in
    the widget); the slices done so far are kept.
    """
    reference = None if start_image is None else object_contrast(start_image, start_mask, channel_axis)
    for indices in order:
        previous = np.asarray(start_mask, bool)
        for index in indices:
            if should_stop is not None and should_stop():
                return
            row, col = interior_point(previous)
            image = read_slice(index)
            segmenter.set_image(image, channel_axis=channel_axis, channel=channel, initial_mask=previous)
            segmenter.add_click(row, col, True)
            mask = np.array(segmenter.mask, dtype=bool)
            if ends_object(mask, previous) or faded(object_contrast(image, mask, channel_axis), reference):
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
                                 channel=channel, start_image=read(int(index))))


__all__ = ["DIRECTIONS", "MIN_AREA_RATIO", "MIN_CONTRAST_RATIO", "ends_object", "faded", "interior_point",
           "object_contrast", "propagate", "propagate_slices", "propagation_order"]
