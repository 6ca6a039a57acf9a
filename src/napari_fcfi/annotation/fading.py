"""Fading: a propagated object whose brightness sinks to its slice's background has ended.

Past a fluorescent nucleus's end in z the next slices still show its out-of-focus light, a dimmer
blurred blob. The network sees every slice normalised on its own, so it segments that blob as
surely as the nucleus, and its confidence does not stop propagation there (docs/evaluation.md,
*Stopping rule*). The raw intensities do: an object's **contrast** on a slice is its raw intensity
minus the slice's median (the background where objects are sparse), read on the mask's bright core,
and once it falls below :data:`FADE_RATIO` of the highest contrast the object had on its last
:data:`PEAK_WINDOW` slices (the start slice included), the object has faded out.

The rule watches only objects that stand out on the start slice, by at least :data:`MIN_STANDOUT` of
the slice's 1-99 % intensity range: a membrane-bounded cell is as bright as the slice's median, so
its contrast is noise. Dark objects (brightfield) work the same way with the sign turned.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from napari_fcfi.engine.intensity import ImageSource
from napari_fcfi.engine.windows import bbox_of_mask, subsample_step

#: A slice whose contrast is below this share of the object's peak contrast so far ends the object
#: (scripts/measure_fading.py, ground-truth masks, 15 objects per stack set: continuing slices keep
#: >= 0.62 of the peak at the 5th percentile, the first slice past an end has 0.08-0.41 at the median).
FADE_RATIO = 0.5
#: The rule watches an object only if its contrast on the start slice is at least this share of the
#: slice's 1-99 % range (fluorescent nuclei: 0.21-1.0, median 0.5-0.7; membrane-bounded cells -0.17-0.28).
MIN_STANDOUT = 0.3
#: The fading is read from the mask's bright core, this percentile of its intensities: a real end's
#: last slices keep a bright core, out-of-focus light has none, and a propagated mask that spills
#: onto background lowers its mean but not its core (chained propagation, 45 objects: with the mean
#: the rule ended 6 of 10 sample and 6 of 20 procedural directions one slice early, with the core none).
CORE_PERCENTILE = 90
#: The reference is the brightest of the object's last this many slices (the start slice included): a
#: real end drops within a slice, while depth attenuation or bleaching dims an object slowly (8 % per
#: slice halves it in 9 slices; never half of the last 3). Chained masks of the measured stacks: the
#: same stops as against the highest value so far but one (sample overrun 0 -> 0.1 slice per end).
PEAK_WINDOW = 3
#: The slice statistics come from a strided sample of at most this many pixels.
SAMPLE_PIXELS = 250_000


def slice_source(image: Any, channel_axis: int | None = None, channel: Any = None) -> ImageSource:
    """``image`` (a slice as the engine takes it) read without normalisation."""
    return ImageSource(image, channel_axis=channel_axis, channel=channel, mode="none")


def object_contrast(
    source: ImageSource, mask: np.ndarray, sign: float | None = None
) -> tuple[float, float, float]:
    """``(mean, core, spread)``: the mean raw intensity inside ``mask`` minus the slice's median; the
    same for the mask's core, its :data:`CORE_PERCENTILE` th percentile for a bright object (the 100 -
    that for a dark one: ``sign`` -1; None: the sign of the mean); the slice's 1-99 % range. NaN where
    undefined (empty mask, no finite pixel)."""
    step = subsample_step(source.height, source.width, SAMPLE_PIXELS)
    whole = source.raw_gray(step=step)
    finite = whole[np.isfinite(whole)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    low, median, high = np.percentile(finite, [1, 50, 99])
    spread = float(high - low)
    box = bbox_of_mask(np.asarray(mask, bool))
    inside = (
        np.empty(0, np.float32) if box is None else source.raw_gray(box)[np.asarray(mask, bool)[box.slices]]
    )
    inside = inside[np.isfinite(inside)]
    if inside.size == 0:
        return math.nan, math.nan, spread
    mean = float(inside.mean() - median)
    bright = (mean >= 0) if sign is None else sign > 0
    core = np.percentile(inside, CORE_PERCENTILE if bright else 100 - CORE_PERCENTILE)
    return mean, float(core - median), spread


class FadeWatch:
    """Follows one object's core contrast along one direction of propagation, from its start slice."""

    def __init__(self, source: ImageSource, start_mask: np.ndarray) -> None:
        mean, _, spread = object_contrast(source, start_mask)
        self.sign = 1.0 if mean >= 0 else -1.0
        self.recent: deque[float] = deque(maxlen=PEAK_WINDOW)
        self.watching = bool(math.isfinite(mean) and spread > 0 and abs(mean) >= MIN_STANDOUT * spread)
        if self.watching:
            self.rebase(source, start_mask)

    def rebase(self, source: ImageSource, mask: np.ndarray) -> None:
        """Make ``mask`` on this slice the reference (the start, or a slice the user kept past a stop)."""
        core = self.sign * object_contrast(source, mask, self.sign)[1]
        self.recent.clear()
        if math.isfinite(core) and core > 0:
            self.recent.append(core)

    def faded(self, source: ImageSource, mask: np.ndarray) -> float | None:
        """The slice's core contrast as a share of the brightest of the last :data:`PEAK_WINDOW` slices
        when it is below :data:`FADE_RATIO` (the object has faded; clamped at 0), else None."""
        if not self.watching or not self.recent:
            return None
        core = self.sign * object_contrast(source, mask, self.sign)[1]
        if not math.isfinite(core):
            return None
        ratio = core / max(self.recent)
        if ratio < FADE_RATIO:
            return max(ratio, 0.0)
        self.recent.append(core)
        return None


__all__ = [
    "CORE_PERCENTILE",
    "FADE_RATIO",
    "MIN_STANDOUT",
    "PEAK_WINDOW",
    "FadeWatch",
    "object_contrast",
    "slice_source",
]
