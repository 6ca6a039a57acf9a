"""Geometry between an image, its 2D slices and the aligned label grid.

An image may be 2D, 3D (z or t) or 4D (t, z, y, x), grayscale or with a channel axis (RGB(A) as the
last axis, or a leading axis of channels). Annotation works on one 2D slice: the last two
non-channel axes are the spatial axes (rows, cols); every other non-channel axis indexes the slice.
The labels (and the plugin's clicks and preview layers) live on the *label grid*: the image axes
without the channel axis, with the image's scale and translate, so that a point's data coordinates
are directly (slice indices..., row, col) of the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SliceKey = tuple[int, ...]


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
    rgb: bool = False  # the channel axis holds colours (last axis), read as RGB with one intensity range

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
        """The ``channel_axis`` to give the engine for a slice of :meth:`image_index`.

        ``None`` for grayscale and for RGB(A), which the engine reads as colour with one intensity
        range (as ``fcfi segment`` does); the slice's channel axis for a multichannel image.
        """
        if self.channel_axis is None or self.rgb:
            return None
        # Slice axes before the channel axis disappear when indexed with integers.
        removed_before = sum(1 for ax in self.label_axes[: len(self.slice_shape)] if ax < self.channel_axis)
        return self.channel_axis - removed_before

    def contains(self, key: SliceKey, row: int, col: int) -> bool:
        rows, cols = self.plane_shape
        inside_slice = all(0 <= k < n for k, n in zip(key, self.slice_shape))
        return inside_slice and 0 <= row < rows and 0 <= col < cols


def make_geometry(
    shape: Sequence[int],
    channel_axis: int | None = None,
    *,
    rgb: bool = False,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    leading_channels_only: bool = True,
) -> ImageGeometry:
    """Geometry of an image array of ``shape``.

    ``rgb``: the last axis holds colours (napari's RGB layers; their scale/translate already exclude
    it). Otherwise ``channel_axis`` names the axis holding channels. In napari it has to be the first
    axis (``leading_channels_only``): under napari's right-aligned broadcasting only then do the labels
    stay aligned with the image; files on disk (``fcfi segment``) may have it anywhere.
    ``scale``/``translate`` are given per image axis (including a non-RGB channel axis) and default
    to 1 / 0.
    """
    shape = tuple(int(n) for n in shape)
    ndim_world = len(shape) - 1 if rgb else len(shape)
    scale = tuple(float(s) for s in (scale if scale is not None else (1.0,) * ndim_world))
    translate = tuple(float(t) for t in (translate if translate is not None else (0.0,) * ndim_world))
    if rgb:
        return _checked(ImageGeometry(shape, len(shape) - 1, scale, translate, rgb=True))
    if channel_axis is not None:
        if channel_axis < 0:
            channel_axis += len(shape)
        if not 0 <= channel_axis < len(shape):
            raise ValueError(f"channel axis {channel_axis} is outside the image's {len(shape)} axes {shape}")
        if channel_axis != 0 and leading_channels_only:
            raise ValueError(
                f"channel axis {channel_axis} of image {shape}: only a leading channel axis keeps the labels "
                "aligned; split the channels into layers (Layers > Split stack) or move the axis first"
            )
        keep = [ax for ax in range(len(shape)) if ax != channel_axis]
        scale = tuple(scale[ax] for ax in keep)
        translate = tuple(translate[ax] for ax in keep)
    return _checked(ImageGeometry(shape, channel_axis, scale, translate))


def _checked(geometry: ImageGeometry) -> ImageGeometry:
    if len(geometry.label_shape) < 2:
        raise ValueError(f"image of shape {geometry.data_shape} has fewer than two spatial axes")
    return geometry


def read_plane(data: Any, geometry: ImageGeometry, key: SliceKey) -> np.ndarray:
    """The 2D slice ``key`` of an image array (channel axis kept), read as a numpy array.

    Only the slice is read from lazy arrays (dask, zarr), never the whole stack.
    """
    return np.asarray(data[geometry.image_index(key)])


def world_to_grid(geometry: ImageGeometry, world_point: Sequence[float]) -> np.ndarray:
    """World coordinates -> fractional label-grid data coordinates (right-aligned, like napari)."""
    ndim = len(geometry.label_shape)
    point = np.asarray(world_point, dtype=float)[-ndim:]
    if point.shape[0] < ndim:
        raise ValueError(f"world point {tuple(world_point)} has fewer than {ndim} coordinates")
    return (point - np.asarray(geometry.translate)) / np.asarray(geometry.scale)


def split_grid_point(
    geometry: ImageGeometry, coords: Sequence[float] | np.ndarray
) -> tuple[SliceKey, int, int]:
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


def describe_slice(key: SliceKey) -> str:
    """A slice key as a user reads it in a message: ``6`` for one stack axis, ``(1, 2)`` for two."""
    if not key:
        return "the image"  # a 2D image has one plane and no slice number
    return str(key[0]) if len(key) == 1 else "(" + ", ".join(str(k) for k in key) + ")"


def describe_slices(keys: Sequence[SliceKey], limit: int = 8) -> str:
    """``slice 6`` or ``slices 6, 7, 9`` (the first ``limit`` of them, then ``…``)."""
    if len(keys) == 1:
        return f"slice {describe_slice(keys[0])}" if keys[0] else "the image"
    listed = ", ".join(describe_slice(key) for key in keys[:limit])
    return f"slices {listed}{', …' if len(keys) > limit else ''}"
