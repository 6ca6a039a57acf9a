"""Writing an object into a labels plane: the rules every commit and every replay follow.

* Without ``overwrite`` only background (0) and the object's own label are painted: other labels are
  never touched. A commit whose object lies mostly on other labels (less than
  :data:`MIN_PAINTED_FRACTION` of it would be painted) is refused instead of leaving a sliver.
* With ``overwrite`` the object replaces whatever is under it. The labels it paints over lose their
  pixels inside the object's outline (holes of the mask included), and small or thin remnants of
  them that touch the object (what a boundary a pixel off leaves behind) join the object, so no
  fragments of the overwritten label are left.
* Editing (``replace_label``): pixels of the edited label outside the new mask go back to
  background, so only that label changes.
* Label ids must fit the labels dtype (:func:`check_label_id`); :func:`next_free_label` finds the
  next id, or a gap, or says that the dtype is full.

Everything here works on numpy planes; the plugin and ``fcfi segment`` call the same functions, so
a replayed click log paints exactly what the widget painted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine.distance import border_distance
from napari_fcfi.engine.windows import Box, bbox_of_mask, bbox_union, clamp_box

#: Commits that would paint less than this fraction of the object (the rest lies on other labels)
#: are refused without ``overwrite``.
MIN_PAINTED_FRACTION = 0.5
#: With ``overwrite``, a remnant of a painted-over label that touches the object joins it when it has at
#: most this fraction of the label's former area (or at most :data:`REMNANT_MIN_PIXELS`), or when it is
#: thin: no pixel of it lies deeper than :data:`REMNANT_BAND` pixels inside it (the ring a boundary a
#: pixel or two off leaves). Thick remaining parts stay with their label (the user split it).
REMNANT_FRACTION = 0.05
REMNANT_MIN_PIXELS = 16
REMNANT_BAND = 2
_EIGHT = np.ones((3, 3), bool)


class LabelIdError(ValueError):
    """A label id that the labels array cannot hold (dtype range), or no free id left."""


def label_id_range(dtype: Any) -> tuple[int, int]:
    """Smallest and largest object id an integer labels dtype can hold (0 is background)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise LabelIdError(f"labels must have an integer dtype, got {dtype}")
    return 1, int(np.iinfo(dtype).max)


def check_label_id(label_id: int, dtype: Any) -> int:
    """``label_id`` as an int, or :class:`LabelIdError` saying what fits."""
    low, high = label_id_range(dtype)
    if not low <= int(label_id) <= high:
        raise LabelIdError(
            f"label id {int(label_id)} does not fit the labels layer's {np.dtype(dtype)} (ids {low}..{high}); "
            f"choose an id up to {high} or use a labels layer with a larger integer type"
        )
    return int(label_id)


def check_label_free(data: Any, label_id: int, chunk: int = 1 << 24) -> int:
    """``label_id`` when no pixel of ``data`` has it yet, else :class:`LabelIdError`: a new object under an
    existing id would silently merge two objects (editing that label is the way to change it)."""
    array = np.asarray(data)
    flat = array.reshape(-1)  # a view for contiguous arrays; read in chunks to bound the temporary
    for start in range(0, flat.size, chunk):
        if (flat[start : start + chunk] == label_id).any():
            raise LabelIdError(
                f"label {int(label_id)} already exists in the labels layer; a new object with it would merge two "
                f"objects. Choose a free id (next free: {next_free_label(array)}) or edit label {int(label_id)} "
                "(Shift+click it)"
            )
    return int(label_id)


def next_free_label(data: Any) -> int:
    """One more than the largest label; the smallest unused id once that would overflow the dtype."""
    array = np.asarray(data)
    low, high = label_id_range(array.dtype)
    top = int(array.max()) if array.size else 0
    if top < high:
        return max(top + 1, low)
    used = np.unique(array)
    free = np.setdiff1d(np.arange(low, min(high, low + used.size + 1) + 1), used, assume_unique=False)
    if free.size == 0:
        raise LabelIdError(f"every label id of the layer's {array.dtype} is used (1..{high}); no id is free")
    return int(free[0])


@dataclass
class PaintResult:
    """Outcome of :func:`paint_object`: the new plane, or why nothing may be written."""

    plane: np.ndarray  # the painted copy (the input plane when refused)
    painted: int  # object pixels that now carry the label
    blocked: int  # object pixels left to other labels (no overwrite)
    refused: str | None = None

    @property
    def changed(self) -> bool:
        return self.refused is None


def paint_object(
    plane: np.ndarray,
    mask: np.ndarray,
    label_id: int,
    *,
    replace_label: bool,
    overwrite: bool,
) -> PaintResult:
    """Write ``mask`` as ``label_id`` into a copy of ``plane`` by the rules of the module docstring."""
    if mask.shape != plane.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the labels slice shape {plane.shape}")
    label_id = check_label_id(label_id, plane.dtype)
    mask = np.asarray(mask, bool)
    area = int(mask.sum())
    if area == 0 and not replace_label:
        return PaintResult(plane, 0, 0, "the object is empty; add a positive click or lower the threshold")
    out = plane.copy()
    if replace_label:
        out[(plane == label_id) & ~mask] = 0
    if overwrite:
        _paint_over(out, plane, mask, label_id)
        return PaintResult(out, int((out == label_id).sum()), 0)
    writable = mask & ((plane == 0) | (plane == label_id))
    painted = int(writable.sum())
    blocked = area - painted
    if area and painted < MIN_PAINTED_FRACTION * area:
        share = 100.0 * blocked / area
        return PaintResult(
            plane,
            0,
            blocked,
            f"{share:.0f} % of the object lies on existing labels, so only a sliver would be painted; "
            "tick 'paint over existing labels' to replace them, or edit the existing label instead",
        )
    out[writable] = label_id
    return PaintResult(out, painted, blocked)


def _paint_over(out: np.ndarray, before: np.ndarray, mask: np.ndarray, label_id: int) -> None:
    """Paint ``mask`` over everything, then clear what is left of the labels it covered."""
    covered = np.unique(before[mask])
    victims = [int(v) for v in covered if v != 0 and v != label_id]
    out[mask] = label_id
    if not victims:
        return
    outline = ndi.binary_fill_holes(mask)
    touching = ndi.binary_dilation(mask, structure=_EIGHT)
    for victim in victims:
        former = int((before == victim).sum())
        remains = out == victim
        inside = remains & outline
        out[inside] = label_id
        remains &= ~inside
        if not remains.any():
            continue
        parts, count = ndi.label(remains, structure=_EIGHT)
        limit = max(REMNANT_MIN_PIXELS, REMNANT_FRACTION * former)
        sizes = np.bincount(parts.ravel(), minlength=count + 1)
        depth = border_distance(remains)
        for part in range(1, count + 1):
            piece = parts == part
            if not (piece & touching).any():
                continue  # a separate piece of the other label: left alone
            if sizes[part] <= limit or depth[piece].max() <= REMNANT_BAND:
                out[piece] = label_id


def paint_region(
    plane: Any,
    mask: np.ndarray,
    label_id: int,
    *,
    replace_label: bool,
    overwrite: bool,
    mask_box: Box | None = None,
) -> tuple[tuple[slice, slice], PaintResult]:
    """:func:`paint_object` on the smallest part of a (large) plane that gives the same result.

    The region holds the object, the label being edited and, when painting over, every label the
    object covers, plus a margin for the remnant rule; the caller writes ``result.plane`` back into
    ``plane[region]`` (the plugin does it through the layer so napari's undo sees it). ``mask_box``
    (the object's bounding box, if known) saves a scan of the full mask.
    """
    shape = tuple(mask.shape)
    if tuple(plane.shape) != shape:
        raise ValueError(f"mask shape {shape} does not match the labels slice shape {tuple(plane.shape)}")
    object_box = mask_box if mask_box is not None else bbox_of_mask(mask)
    boxes = [object_box]
    needs_scan = replace_label or overwrite
    if needs_scan:
        full = np.asarray(plane)
        if replace_label:
            boxes.append(bbox_of_mask(full == label_id))
        if overwrite and object_box is not None:
            inside = object_box.slices
            for victim in np.unique(full[inside][mask[inside]]):
                if victim != 0 and victim != label_id:
                    boxes.append(bbox_of_mask(full == victim))
    box = bbox_union(boxes)
    if box is None:  # nothing to paint and nothing to clear
        empty = (slice(0, 0), slice(0, 0))
        return empty, PaintResult(
            np.zeros((0, 0), np.asarray(plane[0:0, 0:0]).dtype),
            0,
            0,
            "the object is empty; add a positive click or lower the threshold",
        )
    margin = REMNANT_BAND + 1 if overwrite else 0  # room for the remnant rule around the object
    grown = Box(box.r0 - margin, box.r1 + margin, box.c0 - margin, box.c1 + margin)
    region = clamp_box(grown, shape[0], shape[1]).slices
    window = np.array(plane[region])
    return region, paint_object(
        window, mask[region], label_id, replace_label=replace_label, overwrite=overwrite
    )
