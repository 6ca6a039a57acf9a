"""Slice keys read as numbers in messages ("slice 2", "slices 6, 7"), never as raw tuples."""

from __future__ import annotations

import numpy as np

from napari_fcfi.annotation.geometry import describe_slice, describe_slices
from napari_fcfi.annotation.history import ActionHistory
from napari_fcfi.annotation.objects import ObjectsInProgress


def test_one_and_two_stack_axes_and_long_lists():
    assert describe_slice((2,)) == "2"
    assert describe_slice((1, 2)) == "(1, 2)"
    assert describe_slices([(2,)]) == "slice 2"
    assert describe_slices([(6,), (7,)]) == "slices 6, 7"
    assert describe_slices([(1, 2), (1, 3)]) == "slices (1, 2), (1, 3)"
    assert describe_slices([(k,) for k in range(12)], limit=3) == "slices 0, 1, 2, …"
    assert describe_slices([()]) == "the image" and describe_slice(()) == "the image"  # a 2D image


def test_an_undone_action_on_another_slice_names_it_plainly():
    objects = ObjectsInProgress()
    history = ActionHistory(objects)
    action = history.begin("click", [(3,)])
    assert action.where((5,)) == " on slice 3"
    assert action.where((3,)) == ""


def test_starting_over_busy_slices_names_them_plainly():
    objects = ObjectsInProgress()
    mask = np.ones((4, 4), bool)
    objects.start_from_masks({(1,): mask})
    try:
        objects.start_from_masks({(1,): mask, (2,): mask})
    except ValueError as error:
        assert str(error) == "slice 1: an object in progress"
    else:
        raise AssertionError("busy slices were not refused")
