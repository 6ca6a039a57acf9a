"""Image intake: channel layout, intensity normalisation and lazy crop reading.

The network wants RGB in ``[0, 1]``. :class:`ImageSource` turns any 2D image (optionally with one
channel axis) into that, one crop at a time:

* **Layout.** ``(H, W)`` is grayscale; ``(H, W, 3|4)`` without ``channel_axis`` is RGB(A) (alpha is
  dropped); with ``channel_axis`` the channels are chosen by ``channel``: an int (one channel, shown as
  gray), a sequence of 1-3 ints (a composite: channels become R, G, B; two channels give ``(c0, c1, 0)``)
  or None (1 channel: gray; 2-3 channels: composite; 4 channels of uint8: RGBA; more: error).
  Gray is repeated to 3 channels.
* **Normalisation** (``mode``):

  - ``"percentile"`` (microscopy default): values are mapped linearly so the ``low``/``high``
    percentiles (0.5 / 99.5) become 0 / 1, then clipped. Percentiles are computed **once per image**
    from a strided subsample (at most ``max_sample_pixels`` pixels, finite values only), never per
    click. RGB images share one range across channels (colours are kept); composites get one range
    per channel. When the range is empty (constant image) the min/max range is used; if that is empty
    too the image maps to 0.
  - ``"uint8"`` (paper preset): uint8 data is divided by 255 exactly as the official ``ToTensor``
    does; other dtypes fall back to ``"percentile"``.
  - ``"none"``: values are used as they are (clipped to ``[0, 1]``).

  NaN maps to 0, +Inf to 1, -Inf to 0 in every mode.
* **Laziness.** Only the crop being processed is read (``array[rows, cols]``) and converted, so dask
  and zarr arrays are never loaded whole; the percentile subsample is a strided read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .windows import Box, subsample_step

NORMALISATION_MODES = ("percentile", "uint8", "none")


def _as_array_like(image: Any) -> Any:
    """Keep array-likes (numpy, dask, zarr...) as they are; turn lists and scalars into numpy."""
    if hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "__getitem__"):
        return image
    return np.asarray(image)


class ImageSource:
    """A 2D image (plus optional channel axis) that yields normalised RGB crops on demand.

    Raises ``ValueError`` when the image is empty, is not 2D once the channel axis is removed, has an
    unsupported dtype or when the channel choice does not fit.
    """

    def __init__(
        self,
        image: Any,
        channel_axis: int | None = None,
        channel: int | Sequence[int] | None = None,
        mode: str = "percentile",
        percentiles: tuple[float, float] = (0.5, 99.5),
        max_sample_pixels: int = 1_000_000,
    ) -> None:
        if mode not in NORMALISATION_MODES:
            raise ValueError(f"normalisation mode must be one of {NORMALISATION_MODES}, got {mode!r}")
        array = _as_array_like(image)
        shape = tuple(int(s) for s in array.shape)
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "biuf":
            raise ValueError(f"image dtype {dtype} is not supported (use bool, integer or float data)")
        ndim = len(shape)
        self.is_rgb = False
        if channel_axis is not None:
            if not -ndim <= channel_axis < ndim:
                raise ValueError(f"channel_axis={channel_axis} is out of range for an image of shape {shape}")
            channel_axis = channel_axis % ndim
            if ndim != 3:
                raise ValueError(
                    f"image of shape {shape} is not 2D after removing channel_axis={channel_axis} "
                    f"(it has {ndim - 1} non-channel axes; pass one 2D slice)"
                )
        elif ndim == 3 and shape[-1] in (3, 4):
            channel_axis = 2
            self.is_rgb = True
        elif ndim != 2:
            raise ValueError(
                f"image of shape {shape} is not 2D (give a 2D slice, or channel_axis= for a channel axis; "
                f"(H, W, 3|4) is read as RGB(A))"
            )
        spatial_axes = [a for a in range(ndim) if a != channel_axis]
        self.height, self.width = shape[spatial_axes[0]], shape[spatial_axes[1]]
        n_channels = 1 if channel_axis is None else shape[channel_axis]
        if self.height == 0 or self.width == 0 or n_channels == 0:
            raise ValueError(f"image of shape {shape} is empty")

        self.array = array
        self.shape = shape
        self.dtype = dtype
        self.channel_axis = channel_axis
        self.spatial_axes = tuple(spatial_axes)
        self.channels = self._choose_channels(
            channel, n_channels, channel_axis is not None and not self.is_rgb
        )
        if channel_axis is not None and n_channels == 4 and channel is None and dtype == np.uint8:
            self.is_rgb = True  # explicit channel axis with 4 uint8 channels: RGBA
        self.mode = "percentile" if (mode == "uint8" and dtype != np.uint8) else mode
        self.percentiles = percentiles
        self.ranges = self._compute_ranges(max_sample_pixels) if self.mode == "percentile" else None

    @property
    def has_contrast(self) -> bool:
        """False when the image (its chosen channels) holds one value only, or no finite value: the
        network then sees a blank image and its mask is a guess."""
        if self.ranges is None:  # "uint8" / "none" modes: no range computed, nothing to judge
            return True
        return any(hi > lo for lo, hi in self.ranges)

    def _choose_channels(self, channel: Any, n_channels: int, explicit_axis: bool) -> tuple[int, ...]:
        if channel is not None:
            chosen = (int(channel),) if np.ndim(channel) == 0 else tuple(int(c) for c in channel)
            if not 1 <= len(chosen) <= 3:
                raise ValueError(f"channel must be one index or 1-3 indices, got {channel!r}")
            for c in chosen:
                if not 0 <= c < n_channels:
                    raise ValueError(f"channel {c} does not exist: the image has {n_channels} channel(s)")
            return chosen
        if n_channels == 1:
            return (0,)
        if self.is_rgb or n_channels in (2, 3):
            return tuple(range(min(n_channels, 3)))
        if n_channels == 4 and self.dtype == np.uint8:
            return (0, 1, 2)
        raise ValueError(
            f"image has {n_channels} channels on axis {self.channel_axis}: choose one with channel=<index> "
            f"or a composite with channel=(a, b, c)"
        )

    # ---------------------------------------------------------------- reading
    def _read_raw(self, rows: slice, cols: slice) -> np.ndarray:
        """``(h, w, C)`` numpy crop (all channels of the selection), read lazily from the array-like."""
        index: list[Any] = [slice(None)] * len(self.shape)
        index[self.spatial_axes[0]] = rows
        index[self.spatial_axes[1]] = cols
        data = np.asarray(self.array[tuple(index)])
        if self.channel_axis is None:
            return data[..., None]
        data = np.moveaxis(data, self.channel_axis, -1)
        return data[..., list(self.channels)]

    def _compute_ranges(self, max_sample_pixels: int) -> list[tuple[float, float]]:
        step = subsample_step(self.height, self.width, max_sample_pixels)
        sample = self._read_raw(slice(None, None, step), slice(None, None, step))
        n = sample.shape[-1]
        columns = (
            [sample.reshape(-1, n)] if self.is_rgb else [sample[..., i].ravel()[:, None] for i in range(n)]
        )
        ranges = [percentile_range(values, self.percentiles) for values in columns]
        return ranges * n if self.is_rgb else ranges

    def read(self, box: Box, step: int = 1) -> np.ndarray:
        """Normalised float32 RGB crop ``(3, h, w)`` in ``[0, 1]`` of the inclusive ``box``.

        ``step > 1`` reads every ``step``-th row and column (a strided read: large windows that will be
        shrunk for the network are never loaded at full resolution).
        """
        raw = self._read_raw(
            slice(box.r0, box.r1 + 1, step if step > 1 else None),
            slice(box.c0, box.c1 + 1, step if step > 1 else None),
        )
        channels = [self._normalise(raw[..., i], i) for i in range(raw.shape[-1])]
        if len(channels) == 1:
            channels = channels * 3
        elif len(channels) == 2:
            channels.append(np.zeros_like(channels[0]))
        return np.stack(channels[:3], axis=0)

    def _normalise(self, data: np.ndarray, index: int) -> np.ndarray:
        if self.mode == "uint8":
            return data.astype(np.float32) / np.float32(255.0)
        if self.ranges is not None:  # the percentile mode
            return rescale_to_unit(data, *self.ranges[index])
        values = np.nan_to_num(data.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0, out=values)

    def raw_gray(self, box: Box | None = None, step: int = 1) -> np.ndarray:
        """Raw (un-normalised) float32 ``(h, w)`` intensities of ``box`` (the whole image by default),
        every ``step``-th pixel, averaged over the selected channels; NaN stays NaN."""
        box = box or Box(0, self.height - 1, 0, self.width - 1)
        raw = self._read_raw(
            slice(box.r0, box.r1 + 1, step if step > 1 else None),
            slice(box.c0, box.c1 + 1, step if step > 1 else None),
        )
        return raw.astype(np.float32).mean(axis=-1)

    def read_region(self, box: Box) -> np.ndarray:
        """Raw (un-normalised) crop ``(h, w, C)`` of the selected channels, for callers that need it."""
        return self._read_raw(*box.slices)


def percentile_range(
    values: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
) -> tuple[float, float]:
    """``(low, high)`` percentiles of the finite ``values``; min/max when they coincide; (0, 0) if none."""
    values = np.asarray(values).ravel().astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(values, percentiles)
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
    return float(lo), float(hi)


def rescale_to_unit(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Float32 ``(data - lo) / (hi - lo)`` clipped to [0, 1] (all 0 for an empty range); NaN -> 0, +Inf -> 1."""
    values = data.astype(np.float32)
    values = (values - np.float32(lo)) * np.float32(1.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(values, 0.0, 1.0, out=values)


def normalize_intensity(
    image: np.ndarray, channel_axis: int | None = None, percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Whole-image convenience: the engine's percentile normalisation as an ``(H, W, 3)`` float32 array.

    Meant for small images (training, evaluation, figures) that should see exactly what the engine's
    microscopy preset feeds the network.
    """
    source = ImageSource(image, channel_axis=channel_axis, mode="percentile", percentiles=percentiles)
    return np.moveaxis(source.read(Box(0, source.height - 1, 0, source.width - 1)), 0, -1)
