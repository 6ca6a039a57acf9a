"""Window geometry: boxes, sparse probability patches, focus windows and zoom-in regions.

Conventions used throughout the engine:

* A :class:`Box` holds *inclusive* pixel bounds ``(r0, r1, c0, c1)``: rows ``r0..r1`` and columns
  ``c0..c1``. Inclusive bounds are what the official FCFI/RITM zoom-in uses, so the paper-preset
  arithmetic (``extent + 1``, "the last row counts as outside") reads one-to-one.
* A :class:`Patch` is a float32 probability map that is zero outside its rectangle. The session keeps
  its maps as patches so a click on an 8192x8192 image never allocates full-size float copies.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Box(NamedTuple):
    """Inclusive pixel rectangle: rows ``r0..r1``, columns ``c0..c1``."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        return self.r1 - self.r0 + 1

    @property
    def width(self) -> int:
        return self.c1 - self.c0 + 1

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.r0, self.r1 + 1), slice(self.c0, self.c1 + 1)

    def contains(self, row: int, col: int) -> bool:
        return self.r0 <= row <= self.r1 and self.c0 <= col <= self.c1

    def union(self, other: Box) -> Box:
        return Box(
            min(self.r0, other.r0), max(self.r1, other.r1), min(self.c0, other.c0), max(self.c1, other.c1)
        )

    def touches_inner_border(self, mask: np.ndarray, image_height: int, image_width: int) -> bool:
        """True when ``mask`` (this box's size) is set on a side that is not an image border."""
        if self.r0 > 0 and mask[0].any():
            return True
        if self.r1 < image_height - 1 and mask[-1].any():
            return True
        if self.c0 > 0 and mask[:, 0].any():
            return True
        return self.c1 < image_width - 1 and bool(mask[:, -1].any())


def bbox_union(boxes: Iterable[Box | None]) -> Box | None:
    """The smallest box holding every given box (None ones are skipped; None when none is left)."""
    out = None
    for box in boxes:
        if box is not None:
            out = box if out is None else out.union(box)
    return out


def full_box(height: int, width: int) -> Box:
    return Box(0, height - 1, 0, width - 1)


def bbox_of_mask(mask: np.ndarray) -> Box | None:
    """Inclusive bounding box of the True pixels of a 2D mask, None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return Box(int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1]))


def bbox_with_points(box: Box | None, points: Iterable[tuple[int, int]]) -> Box | None:
    """Grow ``box`` so it contains every ``(row, col)`` point (same as setting those pixels in the mask)."""
    for row, col in points:
        point = Box(row, row, col, col)
        box = point if box is None else box.union(point)
    return box


def expand_box(box: Box, ratio: float, min_side: float | None) -> Box:
    """Scale a box around its centre by ``ratio`` (each side at least ``min_side``).

    Rounds with Python's ``round`` (halves to even), exactly like the official zoom-in; the result may
    extend past the image and must be clamped with :func:`clamp_box`.
    """
    r_centre = 0.5 * (box.r0 + box.r1)
    c_centre = 0.5 * (box.c0 + box.c1)
    height = ratio * box.height
    width = ratio * box.width
    if min_side is not None:
        height = max(height, min_side)
        width = max(width, min_side)
    return Box(
        round(r_centre - 0.5 * height),
        round(r_centre + 0.5 * height),
        round(c_centre - 0.5 * width),
        round(c_centre + 0.5 * width),
    )


def clamp_box(box: Box, height: int, width: int) -> Box:
    return Box(max(0, box.r0), min(height - 1, box.r1), max(0, box.c0), min(width - 1, box.c1))


def _segment_iou(a0: int, a1: int, b0: int, b1: int) -> float:
    intersection = max(0, min(a1, b1) - max(a0, b0) + 1)
    union = max(1e-6, max(a1, b1) - min(a0, b0) + 1)
    return intersection / union


def box_iou(a: Box, b: Box) -> float:
    """IoU as the official zoom-in computes it: product of the row and column segment IoUs."""
    return _segment_iou(a.r0, a.r1, b.r0, b.r1) * _segment_iou(a.c0, a.c1, b.c0, b.c1)


def clicks_inside_roi(roi: Box, points: Iterable[tuple[float, float]]) -> bool:
    """Official sticky-ROI test: a click on the ROI's last row or column counts as outside."""
    return all(roi.r0 <= row < roi.r1 and roi.c0 <= col < roi.c1 for row, col in points)


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Shape whose longest side is ``long_side`` with the aspect ratio kept (Python rounding)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def paper_click_to_crop(coord: float, start: int, extent: int, crop_size: int) -> float:
    """Official zoom-in click mapping ``crop_size * (coord - start) / (extent + 1)``.

    ``extent`` is ``end - start`` of the inclusive ROI. This differs slightly from the align-corners
    image resize; the paper preset keeps it for fidelity.
    """
    return crop_size * (coord - start) / (extent + 1)


def aligned_click_to_crop(coord: float, start: int, native_size: int, crop_size: int) -> float:
    """Click mapping consistent with an align-corners resize (used by the microscopy preset)."""
    if native_size <= 1:
        return 0.0
    return (coord - start) * (crop_size - 1) / (native_size - 1)


def focus_window(row: int, col: int, side: int, height: int, width: int) -> Box:
    """A ``side`` x ``side`` window centred on a click, shifted (not cropped) to fit in the image.

    When the image is smaller than ``side`` along an axis the window covers that whole axis.
    """

    def axis(centre: int, length: int) -> tuple[int, int]:
        size = min(side, length)
        start = centre - size // 2
        start = min(max(start, 0), length - size)
        return start, start + size - 1

    r0, r1 = axis(row, height)
    c0, c1 = axis(col, width)
    return Box(r0, r1, c0, c1)


@dataclass(frozen=True, eq=False)
class Patch:
    """A float32 map that is ``values`` inside ``box`` and zero elsewhere. Immutable (read-only array)."""

    box: Box
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.shape != (self.box.height, self.box.width):
            raise ValueError(f"patch values {self.values.shape} do not match box {self.box}")
        if self.values.flags.writeable:
            self.values.setflags(write=False)

    @classmethod
    def from_array(cls, box: Box, values: np.ndarray) -> Patch:
        return cls(box, np.ascontiguousarray(values, dtype=np.float32))

    def read(self, box: Box, step: int = 1) -> np.ndarray:
        """A new float32 array with this patch's values on ``box`` (zeros outside the patch).

        ``step > 1`` samples every ``step``-th row/column starting at ``box.r0``/``box.c0`` (the
        result has ``ceil(height / step)`` rows), without building the full-resolution crop.
        """
        n_rows, n_cols = ceil_div(box.height, step), ceil_div(box.width, step)
        out = np.zeros((n_rows, n_cols), dtype=np.float32)
        i0 = max(0, ceil_div(self.box.r0 - box.r0, step))
        i1 = min(n_rows - 1, (self.box.r1 - box.r0) // step)
        j0 = max(0, ceil_div(self.box.c0 - box.c0, step))
        j1 = min(n_cols - 1, (self.box.c1 - box.c0) // step)
        if i0 <= i1 and j0 <= j1:
            r_start, c_start = box.r0 + i0 * step - self.box.r0, box.c0 + j0 * step - self.box.c0
            out[i0 : i1 + 1, j0 : j1 + 1] = self.values[
                r_start : r_start + (i1 - i0) * step + 1 : step,
                c_start : c_start + (j1 - j0) * step + 1 : step,
            ]
        return out

    def bbox_above(self, threshold: float) -> Box | None:
        """Image-coordinate bounding box of the pixels strictly above ``threshold``."""
        local = bbox_of_mask(self.values > threshold)
        if local is None:
            return None
        return Box(
            local.r0 + self.box.r0, local.r1 + self.box.r0, local.c0 + self.box.c0, local.c1 + self.box.c0
        )

    def value_at(self, row: int, col: int) -> float:
        if not self.box.contains(row, col):
            return 0.0
        return float(self.values[row - self.box.r0, col - self.box.c0])

    def to_full(self, height: int, width: int, dtype: type = np.float32) -> np.ndarray:
        full: np.ndarray = np.zeros((height, width), dtype=dtype)
        full[self.box.slices] = self.values
        return full

    def with_region(self, box: Box, values: np.ndarray, keep_outside: bool) -> Patch:
        """A new patch where ``box`` holds ``values``.

        ``keep_outside=True`` keeps this patch's values outside ``box`` (the new patch covers the union);
        ``False`` drops them (the official zoom-in pastes into a zero map).
        """
        if not keep_outside:
            return Patch.from_array(box, values)
        union, merged = self.merged_array(box, values)
        return Patch(union, merged)

    def merged_array(self, box: Box, values: np.ndarray) -> tuple[Box, np.ndarray]:
        """(union box, new writable array): this patch with ``box`` overwritten by ``values``."""
        union = self.box.union(box)
        merged = self.read(union)
        merged[box.r0 - union.r0 : box.r1 - union.r0 + 1, box.c0 - union.c0 : box.c1 - union.c0 + 1] = values
        return union, merged


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def subsample_step(height: int, width: int, max_pixels: int) -> int:
    """Stride so that a strided view of a ``height`` x ``width`` image has at most ``max_pixels`` pixels."""
    return max(1, math.ceil(math.sqrt(height * width / max_pixels)))
