"""Geometry between an image layer, its 2D slices and the aligned clicks/preview/labels layers.

An image layer may be 2D, 3D (z or t) or 4D (t, z, y, x), grayscale or with a channel axis (an
RGB(A) layer, or a multichannel array with one axis holding the channels). Annotation works on
one 2D slice: the last two non-channel axes are the spatial axes (rows, cols); every other
non-channel axis indexes the slice. The labels, clicks and preview layers live on the *label
grid*: the image axes without the channel axis, with the image's scale and translate, so that a
point's data coordinates are directly (slice indices..., row, col) of the image.

Nothing here touches Qt; the functions take napari layers or plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SliceKey = tuple[int, ...]

POSITIVE_COLOR = np.array([0.2, 1.0, 0.2, 1.0], dtype=np.float32)
NEGATIVE_COLOR = np.array([1.0, 0.15, 0.35, 1.0], dtype=np.float32)
PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)


@dataclass(frozen=True)
class ImageGeometry:
    """How an image array maps onto the label grid and its 2D slices.

    ``data_shape`` is the image array shape, ``channel_axis`` the data axis holding channels
    (``None`` for grayscale), ``scale``/``translate`` the per-axis world transform of the label
    grid (channel axis removed).
    """

    data_shape: tuple[int, ...]
    channel_axis: int | None
    scale: tuple[float, ...]
    translate: tuple[float, ...]

    @property
    def label_axes(self) -> tuple[int, ...]:
        """Image data axes that make up the label grid (every axis except the channel axis)."""
        return tuple(ax for ax in range(len(self.data_shape)) if ax != self.channel_axis)

    @property
    def label_shape(self) -> tuple[int, ...]:
        return tuple(self.data_shape[ax] for ax in self.label_axes)

    @property
    def slice_shape(self) -> tuple[int, ...]:
        """Sizes of the axes that index a 2D slice (empty for a 2D image)."""
        return self.label_shape[:-2]

    @property
    def plane_shape(self) -> tuple[int, int]:
        rows, cols = self.label_shape[-2:]
        return int(rows), int(cols)

    def image_index(self, key: SliceKey) -> tuple[Any, ...]:
        """Index into the image array that yields the 2D slice ``key`` (channel axis kept)."""
        if len(key) != len(self.slice_shape):
            raise ValueError(
                f"slice key {key} has {len(key)} indices, image has {len(self.slice_shape)} slice axes"
            )
        index: list[Any] = [slice(None)] * len(self.data_shape)
        for ax, value in zip(self.label_axes[: len(key)], key):
            index[ax] = int(value)
        return tuple(index)

    def slice_channel_axis(self) -> int | None:
        """Channel axis of the 2D slice returned by :meth:`image_index` (``None`` for grayscale)."""
        if self.channel_axis is None:
            return None
        # Slice axes before the channel axis disappear when indexed with integers.
        removed_before = sum(1 for ax in self.label_axes[: len(self.slice_shape)] if ax < self.channel_axis)
        return self.channel_axis - removed_before

    def contains(self, key: SliceKey, row: int, col: int) -> bool:
        rows, cols = self.plane_shape
        inside_slice = all(0 <= k < n for k, n in zip(key, self.slice_shape))
        return inside_slice and 0 <= row < rows and 0 <= col < cols


def image_geometry(layer: Any, channel_axis: int | None = None) -> ImageGeometry:
    """Geometry of a napari image layer.

    RGB(A) layers use their last axis as channel axis. For other layers ``channel_axis`` names the
    data axis holding channels (napari itself usually splits channels into layers, in which case
    it stays ``None``). The label grid must align with the image under napari's right-aligned
    broadcasting, so a non-RGB channel axis has to be the first data axis.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(n) for n in data.shape)
    layer_scale = tuple(float(s) for s in layer.scale)
    layer_translate = tuple(float(t) for t in layer.translate)
    if getattr(layer, "rgb", False):
        # napari's scale/translate of an RGB layer already exclude the colour axis.
        return ImageGeometry(shape, len(shape) - 1, layer_scale, layer_translate)
    if channel_axis is not None:
        if channel_axis < 0:
            channel_axis += len(shape)
        if not 0 <= channel_axis < len(shape):
            raise ValueError(f"channel axis {channel_axis} is outside the image's {len(shape)} axes {shape}")
        if channel_axis != 0:
            raise ValueError(
                f"channel axis {channel_axis} of image {shape}: only a leading channel axis keeps the labels "
                "aligned; split the channels into layers (Layers > Split stack) or move the axis first"
            )
        keep = [ax for ax in range(len(shape)) if ax != channel_axis]
        layer_scale = tuple(layer_scale[ax] for ax in keep)
        layer_translate = tuple(layer_translate[ax] for ax in keep)
    geometry = ImageGeometry(shape, channel_axis, layer_scale, layer_translate)
    if len(geometry.label_shape) < 2:
        raise ValueError(f"image of shape {shape} has fewer than two spatial axes")
    return geometry


def read_slice(layer: Any, geometry: ImageGeometry, key: SliceKey) -> np.ndarray:
    """The 2D slice ``key`` of the layer's (highest resolution) data, read as a numpy array.

    Only the slice is read from lazy arrays (dask, zarr), never the whole stack.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data[geometry.image_index(key)])


def world_to_grid(geometry: ImageGeometry, world_point: Sequence[float]) -> np.ndarray:
    """World coordinates -> fractional label-grid data coordinates (right-aligned, like napari)."""
    ndim = len(geometry.label_shape)
    point = np.asarray(world_point, dtype=float)[-ndim:]
    if point.shape[0] < ndim:
        raise ValueError(f"world point {tuple(world_point)} has fewer than {ndim} coordinates")
    return (point - np.asarray(geometry.translate)) / np.asarray(geometry.scale)


def split_grid_point(geometry: ImageGeometry, coords: Sequence[float]) -> tuple[SliceKey, int, int]:
    """Label-grid data coordinates -> (slice key, row, col), rounded to the nearest pixel."""
    rounded = np.round(np.asarray(coords, dtype=float)).astype(int)
    key = tuple(int(v) for v in rounded[:-2])
    return key, int(rounded[-2]), int(rounded[-1])


def current_slice_key(geometry: ImageGeometry, world_point: Sequence[float]) -> SliceKey | None:
    """The slice on screen for the viewer's current world point, or ``None`` if it lies outside the stack."""
    if len(world_point) < len(geometry.label_shape):
        return None  # the viewer has fewer dims than the image (e.g. while layers are being removed)
    coords = world_to_grid(geometry, world_point)
    key = tuple(int(v) for v in np.round(coords[:-2]))
    if all(0 <= k < n for k, n in zip(key, geometry.slice_shape)):
        return key
    return None


def next_free_label(data: Any) -> int:
    """One more than the largest label in ``data`` (1 for an empty labels array)."""
    array = np.asarray(data)
    return int(array.max()) + 1 if array.size else 1


def paint_object(
    plane: np.ndarray,
    mask: np.ndarray,
    label_id: int,
    *,
    replace_label: bool,
    overwrite: bool,
) -> np.ndarray:
    """Return ``plane`` with the object ``mask`` written as ``label_id``.

    * ``overwrite=False`` (default in the widget) paints only background (0) and the object's own
      pixels; other labels are never touched.
    * ``replace_label=True`` (editing an existing label): pixels of ``label_id`` outside the new
      mask go back to background, so only that label changes.
    """
    if mask.shape != plane.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the labels slice shape {plane.shape}")
    out = plane.copy()
    if replace_label:
        out[(plane == label_id) & ~mask] = 0
    writable = mask if overwrite else mask & ((plane == 0) | (plane == label_id))
    out[writable] = label_id
    return out
