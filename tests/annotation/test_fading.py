"""Fading: propagation ends an object whose raw contrast sinks below half its peak, even where the
network carries on (here a stand-in that copies its feedback mask, sure of it, as a network tends to
past an object's end)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.standins import BrightRegionSegmenter
from napari_fcfi.annotation.fading import FadeWatch, object_contrast, slice_source
from napari_fcfi.annotation.propagation import (
    PropagatedSlice,
    PropagationStop,
    propagation_order,
    propagation_steps,
)

#: Contrast of the disk on each slice, as a share of its full contrast: the object is on slices 3-8,
#: its out-of-focus light on 1-2 and 9-10 (as a widefield stack shows a nucleus past its ends).
PROFILE = [0.0, 0.1, 0.3, 0.7, 0.9, 1.0, 1.0, 0.9, 0.7, 0.3, 0.1, 0.0]


class SureCopier(BrightRegionSegmenter):
    """The feedback mask, probability 0.95 everywhere in it."""

    def _prob(self, clicks):
        return np.zeros(self.shape, np.float32) if self.initial is None else self.initial * np.float32(0.95)


def blurred_disk_stack(
    background: float = 10.0, full: float = 190.0, size: int = 64, profile: list[float] = PROFILE
) -> np.ndarray:
    rows, cols = np.ogrid[:size, :size]
    disk = (rows - 32) ** 2 + (cols - 30) ** 2 <= 8**2
    stack = np.full((len(profile), size, size), background, np.float32)
    for z, share in enumerate(profile):
        stack[z][disk] = background + share * full
    return stack


def _run(stack, start=5, direction="both", segmenter=None, **kwargs):
    """(kept slice indices, sorted; the stops) of propagating the disk from slice ``start``."""
    steps = list(
        propagation_steps(
            segmenter or SureCopier(None),
            lambda i: stack[i],
            stack[start] != stack[start][0, 0],
            propagation_order(start, len(stack), direction, None),
            **kwargs,
        )
    )
    kept = sorted(s.index for s in steps if isinstance(s, PropagatedSlice))
    stops = [s for s in steps if isinstance(s, PropagationStop)]
    return kept, stops


def test_an_object_that_fades_out_ends_where_its_contrast_halves():
    stack = blurred_disk_stack()
    kept, stops = _run(stack, start_index=5)
    assert kept == [3, 4, 6, 7, 8]  # the blurred light on 2 and 9 is past the object's ends
    assert sorted(s.index for s in stops) == [2, 9]
    assert all("faded" in s.reason and "(30 %" in s.reason for s in stops)
    # continuing past the stop keeps the forced slice and watches again from there
    kept, stops = _run(stack, 8, "up", through=1, start_index=8)
    assert kept == [9] and [s.index for s in stops] == [10]


class DimUnsureCopier(SureCopier):
    """Unsure (0.6) of the feedback where the image's brightest pixel is below 160."""

    def _prob(self, clicks):
        return super()._prob(clicks) * np.float32(0.6 / 0.95 if self.image.max() < 160 else 1.0)


def test_a_doubtful_slice_before_the_fade_is_kept():
    """Slices 3 and 8 (70 % contrast) are doubtful to the network; the fade on 2 and 9 ends the object
    there, not at the doubtful slice before it, which still had its contrast."""
    stack = blurred_disk_stack()
    kept, stops = _run(stack, segmenter=DimUnsureCopier(None), start_index=5)
    assert kept == [3, 4, 6, 7, 8]
    assert sorted((s.index, s.span) for s in stops) == [(2, 1), (9, 1)]


def test_dark_objects_fade_too():
    stack = blurred_disk_stack(background=200.0, full=-180.0)  # brightfield: a dark disk on bright
    kept, stops = _run(stack, start_index=5)
    assert kept == [3, 4, 6, 7, 8] and sorted(s.index for s in stops) == [2, 9]


def test_objects_that_do_not_stand_out_are_not_watched():
    """A membrane-bounded cell is as bright as the slice's median: its contrast is noise."""
    stack = blurred_disk_stack()
    watch = FadeWatch(slice_source(stack[5]), stack[5] > 100)
    assert watch.watching and max(watch.recent) == 190.0
    assert watch.faded(slice_source(stack[9]), stack[5] > 100) == pytest.approx(0.3)
    assert watch.faded(slice_source(stack[6]), stack[5] > 100) is None
    tissue = np.full((64, 64), 100.0, np.float32)  # bright cytoplasm, dark membranes every 16 px
    tissue[::16] = tissue[:, ::16] = 20.0
    cell = np.zeros((64, 64), bool)
    cell[18:31, 34:47] = True
    assert not FadeWatch(slice_source(tissue), cell).watching
    # without a start slice the first propagated slice is the reference; the rule then stops at 9 too
    kept, stops = _run(stack)
    assert kept == [3, 4, 6, 7, 8] and sorted(s.index for s in stops) == [2, 9]


def test_contrast_handles_channels_nan_and_empty_masks():
    image = np.full((32, 32, 3), 10.0, np.float32)
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:16] = True
    image[mask] = [100.0, 40.0, 10.0]
    mean, core, spread = object_contrast(slice_source(image), mask)
    assert mean == core == 40.0 and spread > 0  # RGB averaged
    image[0, 0] = np.nan
    assert object_contrast(slice_source(image), mask)[0] == 40.0
    assert np.isnan(object_contrast(slice_source(image), np.zeros((32, 32), bool))[0])
    assert np.isnan(object_contrast(slice_source(np.full((8, 8), np.nan)), mask[:8, :8])[0])
    stack = np.stack([image[..., 0], image[..., 1]])
    assert object_contrast(slice_source(stack, channel_axis=0, channel=1), mask)[0] == 30.0


def _up(stack, start, **kwargs):
    kept, stops = _run(stack, start, "up", **kwargs)
    return kept, [s.index for s in stops]


def test_the_start_slice_is_the_reference_and_slow_dimming_is_no_end():
    stack = blurred_disk_stack(profile=[1.0, 0.55, 0.45, 0.45, 0.45])
    assert _up(stack, 0, start_index=0) == ([1], [2])  # 0.45 of the start slice's contrast
    assert _up(stack, 0) == (
        [1, 2, 3, 4],
        [],
    )  # without it the first propagated slice (0.55) is the reference
    assert _up(stack, 0, start_index=0, fading=False) == ([1, 2, 3, 4], [])
    # 8 % dimmer every slice (depth, bleaching): never half of the last three slices
    dimming = blurred_disk_stack(profile=[0.92**z for z in range(14)])
    assert _up(dimming, 0, start_index=0) == (list(range(1, 14)), [])


def test_continuing_past_a_fade_makes_the_kept_slice_the_reference():
    """The user saw the dimmer object go on: after C, its dimmer slices are not cut again one by one."""
    stack = blurred_disk_stack(profile=[1.0, 1.0, 0.4, 0.4, 0.4, 0.1])
    assert _up(stack, 0, start_index=0) == ([1], [2])
    assert _up(stack, 1, start_index=1, through=1) == ([2, 3, 4], [5])
