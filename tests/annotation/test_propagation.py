"""Propagation through a stack: stopping rules, directions, the headless API's checks, replay of steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers.standins import BrightRegionSegmenter, UnsureCopier, disk
from napari_fcfi.annotation.clicklog import ClickLog, ClicksStep, ObjectRecord, PropagateStep
from napari_fcfi.annotation.geometry import make_geometry
from napari_fcfi.annotation.history import ActionHistory
from napari_fcfi.annotation.objects import ObjectsInProgress
from napari_fcfi.annotation.propagation import (
    interior_point,
    propagate,
    propagate_slices,
    propagate_step,
    propagation_order,
    propagation_steps,
)
from napari_fcfi.annotation.replay import object_masks, replay_click_log
from napari_fcfi.engine.clicks import Click


def moving_disk_stack(depth=12, size=64, first=2, last=8):
    """A bright disk drifting right on slices first..last, absent elsewhere."""
    stack = np.full((depth, size, size), 10, np.uint16)
    for z in range(first, last + 1):
        stack[z][disk((size, size), 30, 20 + 2 * z, 8)] = 200
    return stack


def test_order_and_interior_point():
    assert propagation_order(3, 6, "up", None) == [[4, 5]]
    assert propagation_order(3, 6, "down", 2) == [[2, 1]]
    assert propagation_order(0, 3, "both", None) == [[1, 2], []]
    with pytest.raises(ValueError, match="direction"):
        propagation_order(0, 3, "left", None)
    mask = np.zeros((9, 9), bool)
    mask[2:7, 1:8] = True
    assert interior_point(mask) == (4, 3)  # the first of the deepest pixels in row-major order


def test_propagation_follows_the_object_and_stops_where_it_ends():
    stack = moving_disk_stack()
    start = stack[5] > 100
    segmenter = BrightRegionSegmenter(None)
    reached = dict(
        propagate_slices(segmenter, lambda i: stack[i], start, propagation_order(5, 12, "both", None))
    )
    assert sorted(reached) == [2, 3, 4, 6, 7, 8]  # slices 0-1 and 9-11 have no object: it ends
    for z, mask in reached.items():
        np.testing.assert_array_equal(mask, stack[z] > 100)
    limited = dict(propagate_slices(segmenter, lambda i: stack[i], start, propagation_order(5, 12, "up", 2)))
    assert sorted(limited) == [6, 7]
    stopped = dict(
        propagate_slices(
            segmenter,
            lambda i: stack[i],
            start,
            propagation_order(5, 12, "up", None),
            should_stop=lambda: True,
        )
    )
    assert stopped == {}


def test_a_direction_that_ended_costs_no_more_network_time():
    stack = moving_disk_stack()
    read: list[int] = []

    def read_slice(index):
        read.append(index)
        return stack[index]

    items = list(
        propagation_steps(
            BrightRegionSegmenter(None),
            read_slice,
            stack[5] > 100,
            propagation_order(5, 12, "both", None),
            fading=False,
            direction_ended=lambda index: index >= 7,  # the user changed slice 7 meanwhile
        )
    )
    # up: slice 6 only, no stop said; down: on to the object's end as before (a stop at slice 1); the
    # directions take turns
    assert [(type(i).__name__, i.index) for i in items] == [
        ("PropagatedSlice", 6),
        ("PropagatedSlice", 4),
        ("PropagatedSlice", 3),
        ("PropagatedSlice", 2),
        ("PropagationStop", 1),
    ]
    assert read == [6, 4, 3, 2, 1]  # nothing read (nor run through the network) past slice 6 upwards


def test_headless_api_checks_its_input(tiny_fcfi_net):
    stack = moving_disk_stack(depth=4, first=0, last=3).astype(np.float32)
    mask = stack[1] > 100
    with pytest.raises(ValueError, match="empty"):
        propagate(tiny_fcfi_net, stack, 1, np.zeros_like(mask))
    with pytest.raises(ValueError, match="shape"):
        propagate(tiny_fcfi_net, stack, 1, mask[:10])
    with pytest.raises(ValueError, match="outside"):
        propagate(tiny_fcfi_net, stack, 7, mask)
    with pytest.raises(ValueError, match="direction"):
        propagate(tiny_fcfi_net, stack, 1, mask, direction="sideways")
    result = propagate(tiny_fcfi_net, stack, 1, mask, input_size=64, direction="up")
    assert set(result) <= {2, 3} and all(m.shape == mask.shape and m.dtype == bool for m in result.values())
    # slices along another axis, RGB slices
    rgb = np.repeat(np.moveaxis(stack, 0, 2)[..., None], 3, axis=-1)  # (Y, X, Z, 3) with axis=2
    out = propagate(tiny_fcfi_net, rgb, 1, mask, axis=2, input_size=64, max_slices=1)
    assert set(out) <= {0, 2}


def test_replay_uses_the_propagated_mask_as_the_start_of_corrections():
    stack = moving_disk_stack()
    geometry = make_geometry(stack.shape)
    objects = ObjectsInProgress()
    segmenter = BrightRegionSegmenter(None)
    # annotate slice 5, propagate both ways, correct slice 7 with a negative click, propagate up again
    first = objects.get((5,))
    first.clicks = (Click(30, 30, True),)
    segmenter.set_image(stack[5])
    segmenter.add_click(30, 30, True)
    first.mask = segmenter.mask.copy()
    undo = objects.begin_propagation((5,), 0, "both", None)
    for z, mask in propagate_slices(
        segmenter, lambda i: stack[i], first.mask, propagation_order(5, 12, "both", None)
    ):
        objects.add_propagated(undo, (z,), mask)
    seventh = objects.get((7,))
    seventh.clicks = (Click(30, 40, False),)
    segmenter.set_image(stack[7], initial_mask=seventh.initial_mask)
    segmenter.add_click(30, 40, False)
    seventh.mask = segmenter.mask.copy()
    history = ActionHistory(objects)
    action = history.begin("propagation", objects.members((7,)))
    undo = objects.begin_propagation((7,), 0, "up", None)
    for z, mask in propagate_slices(
        segmenter, lambda i: stack[i], seventh.mask, propagation_order(7, 12, "up", None)
    ):
        history.touch(action, [(z,)])
        objects.add_propagated(undo, (z,), mask)
    record, masks = objects.record_for_commit((5,), 1, overwrite=False)
    replayed = object_masks(BrightRegionSegmenter(None), stack, geometry, record)
    assert sorted(replayed) == sorted(masks)
    for key in masks:
        np.testing.assert_array_equal(replayed[key], masks[key])
    assert not masks[(7,)][30, 40] and masks[(6,)].any()
    # the whole log replays to labels on every slice of the object
    labels = replay_click_log(
        None, stack, geometry, ClickLog([record]), segmenter=BrightRegionSegmenter(None)
    )
    assert sorted({int(z) for z in np.nonzero(labels.any(axis=(1, 2)))[0]}) == sorted(k[0] for k in masks)
    # undo takes a propagation back in one step, redo brings it back
    assert history.undo() is action
    assert objects.get((8,)).initial_mask is not None and objects.get((7,)).clicks == (Click(30, 40, False),)
    undone, _ = objects.record_for_commit((5,), 1, overwrite=False)
    assert [type(s).__name__ for s in undone.steps].count("PropagateStep") == 1
    assert history.redo() is action and history.undo() is action and history.redo() is action
    again, again_masks = objects.record_for_commit((5,), 1, overwrite=False)
    assert again.steps == record.steps
    # slices with clicks come back without their prediction (the caller recomputes it from the clicks)
    assert objects.get((5,)).mask is None and objects.get((7,)).clicks == (Click(30, 40, False),)
    assert sorted(again_masks) == sorted(k for k in masks if k not in ((5,), (7,)))
    for key in again_masks:
        np.testing.assert_array_equal(again_masks[key], masks[key])


def test_the_refining_pass_keeps_the_click_and_the_first_pass_confidence(tiny_fcfi_net):
    from napari_fcfi.engine import InteractiveSegmenter

    stack = moving_disk_stack(size=96)
    previous = stack[4] > 100
    session = InteractiveSegmenter(tiny_fcfi_net, input_size=64, focus_size=64)
    plain, plain_confidence = propagate_step(session, stack[5], previous, refine=False)
    refined, confidence = propagate_step(session, stack[5], previous)
    assert confidence == pytest.approx(plain_confidence)  # the stop rule's input is unchanged
    row, col = interior_point(previous)
    assert refined[row, col] or np.array_equal(refined, plain)  # a refined mask holds the click
    assert refined.shape == plain.shape and refined.dtype == bool
    # stand-ins without the engine's refine_predictions propagate as before
    segmenter = BrightRegionSegmenter(None)
    mask, _ = propagate_step(segmenter, stack[5], previous)
    np.testing.assert_array_equal(mask, stack[5] > 100)


def test_propagation_step_needs_an_object_on_its_slice():
    stack = moving_disk_stack()
    record = ObjectRecord(1, [ClicksStep((0,), (Click(30, 20, True),)), PropagateStep((0,), 0, "up", None)])
    with pytest.raises(ValueError, match="empty on that slice"):
        object_masks(BrightRegionSegmenter(None), stack, make_geometry(stack.shape), record)


def test_an_unsure_network_ends_the_object_after_two_doubtful_slices(monkeypatch):
    """Past the end the network copies its feedback: its low confidence on two slices in a row ends the
    object at the first of them; one doubtful slice inside the object does not; ``through`` continues."""
    from napari_fcfi.annotation import fading
    from napari_fcfi.annotation.propagation import MIN_CONFIDENCE, PropagationStop, propagation_steps

    monkeypatch.setattr(fading, "MIN_STANDOUT", math.inf)  # the confidence rule alone (fading: its own test)

    stack = moving_disk_stack(depth=14, first=2, last=9)
    stack[6] = 10  # one slice without contrast inside the object (a bad slice, not its end)
    start = stack[5] > 100
    steps = list(
        propagation_steps(
            UnsureCopier(None), lambda i: stack[i], start, propagation_order(5, 14, "both", None)
        )
    )
    reached = {s.index for s in steps if not isinstance(s, PropagationStop)}
    stops = [s for s in steps if isinstance(s, PropagationStop)]
    assert reached == {2, 3, 4, 6, 7, 8, 9}  # slice 6 is doubtful but slice 7 confirms the object
    stops.sort(key=lambda s: -s.index)  # the directions take turns
    assert [(s.index, s.span) for s in stops] == [(10, 2), (1, 2)]
    assert "unsure" in stops[0].reason and f"{MIN_CONFIDENCE:.2f}" in stops[0].reason
    assert "stopped at slice 10" in stops[0].describe()
    confidences = {s.index: s.confidence for s in steps if not isinstance(s, PropagationStop)}
    assert confidences[6] < MIN_CONFIDENCE <= confidences[7]
    # continuing past the stop from slice 9 keeps the two doubted slices, then stops again
    on = list(
        propagation_steps(
            UnsureCopier(None),
            lambda i: stack[i],
            stack[9] > 100,
            propagation_order(9, 14, "up", None),
            through=2,
        )
    )
    assert [s.index for s in on if not isinstance(s, PropagationStop)] == [10, 11]
    assert isinstance(on[-1], PropagationStop) and on[-1].index == 12
    # a doubtful slice at the end of the range is kept (nothing beyond it to judge by)
    assert 10 in dict(propagate_slices(UnsureCopier(None), lambda i: stack[i], stack[9] > 100, [[10]]))


def test_the_stop_threshold_is_the_models_own_calibration(monkeypatch):
    """Confidence is a property of the model: a threshold in its metadata replaces the default one."""
    from types import SimpleNamespace

    from napari_fcfi.annotation import fading

    monkeypatch.setattr(fading, "MIN_STANDOUT", math.inf)  # the confidence rule alone
    from napari_fcfi.annotation.propagation import (
        MIN_CONFIDENCE,
        PropagationStop,
        propagation_steps,
        stop_confidence,
    )

    calibrated = SimpleNamespace(fcfi_metadata={"propagation": {"stop_confidence": 0.5}})
    assert stop_confidence(calibrated) == 0.5
    assert stop_confidence(SimpleNamespace(model=calibrated)) == 0.5  # an engine session's model
    for metadata in (
        None,
        {},
        {"propagation": {"stop_confidence": "high"}},
        {"propagation": {"stop_confidence": 1.5}},
    ):
        assert stop_confidence(SimpleNamespace(fcfi_metadata=metadata)) == MIN_CONFIDENCE
    stack = moving_disk_stack(depth=14, first=2, last=9)
    start = stack[5] > 100
    order = propagation_order(5, 14, "up", None)
    default = list(propagation_steps(UnsureCopier(None), lambda i: stack[i], start, order))
    assert isinstance(default[-1], PropagationStop) and default[-1].index == 10
    # the copier's 0.6 past the end is above this model's threshold: nothing stops it but the range end
    segmenter = UnsureCopier(None)
    segmenter.model = calibrated
    trusted = list(propagation_steps(segmenter, lambda i: stack[i], start, order))
    assert not any(isinstance(s, PropagationStop) for s in trusted)
    assert [s.index for s in trusted] == list(range(6, 14))
    # an explicit threshold wins over the model's
    explicit = list(propagation_steps(segmenter, lambda i: stack[i], start, order, min_confidence=0.7))
    assert isinstance(explicit[-1], PropagationStop) and explicit[-1].index == 10


class SureCopier(UnsureCopier):
    """Copies its feedback, sure of it, where the slice has no bright region (a blank or NaN slice)."""

    def _prob(self, clicks):
        region = UnsureCopier._prob(self, clicks)
        if self.initial is not None and not (np.nan_to_num(self.image) > 100).any():
            return self.initial.astype(np.float32) * 0.95
        return region


def test_a_slice_without_data_under_the_mask_ends_the_object():
    stack = moving_disk_stack(depth=12, first=0, last=11).astype(np.float32)
    stack[8] = np.nan  # a dropped slice inside the object
    stack[3, :, :24] = np.nan  # part of a slice missing: the mask on the part with data is kept
    items = list(
        propagation_steps(
            SureCopier(None),
            lambda i: stack[i],
            stack[5] > 100,
            propagation_order(5, 12, "both", None),
            fading=False,
        )
    )
    up = [(type(i).__name__, i.index) for i in items if i.index > 5]
    assert up == [("PropagatedSlice", 6), ("PropagatedSlice", 7), ("PropagationStop", 8)]
    assert "no data under the mask (100 % NaN or Inf)" in next(i for i in items if i.index == 8).reason
    assert ("PropagatedSlice", 3) in [(type(i).__name__, i.index) for i in items]
    # continuing past the stop (the user's C) keeps the slice: they said it is the object
    forced = list(
        propagation_steps(
            SureCopier(None), lambda i: stack[i], stack[7] > 100, [[8, 9]], fading=False, through=1
        )
    )
    assert [(type(i).__name__, i.index) for i in forced] == [("PropagatedSlice", 8), ("PropagatedSlice", 9)]


def test_both_directions_take_turns_so_a_cancelled_run_grew_on_both_sides():
    stack = moving_disk_stack(depth=12, first=0, last=11)
    done: list[int] = []
    items = propagation_steps(
        BrightRegionSegmenter(None),
        lambda i: stack[i],
        stack[5] > 100,
        propagation_order(5, 12, "both", None),
        fading=False,
        should_stop=lambda: len(done) >= 4,  # Cancel after four slices
    )
    done.extend(i.index for i in items)
    assert done == [6, 4, 7, 3]


def test_one_channel_without_data_is_not_a_slice_without_data():
    from napari_fcfi.annotation.propagation import missing_data_reason

    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    channels = np.zeros((2, 8, 8), np.float32)
    channels[1] = np.nan  # the network still sees channel 0
    assert missing_data_reason(channels, mask, channel_axis=0) is None
    rgb = np.zeros((8, 8, 3), np.float32)
    rgb[..., 2] = np.nan
    assert missing_data_reason(rgb, mask) is None
    channels[0] = np.nan
    assert "100 % NaN" in missing_data_reason(channels, mask, channel_axis=0)
