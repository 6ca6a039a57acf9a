"""An image's annotation session (napari-free): the user's changes are actions of its one history."""

from __future__ import annotations

import numpy as np

from napari_fcfi.annotation.session import AnnotationSession
from napari_fcfi.engine.clicks import Click


def propagated_stack(session: AnnotationSession) -> int:
    """Slice 1 clicked, propagated to slices 2 and 3 (one stack object); returns its group."""
    start = session.set_clicks((1,), [Click(1, 1, True)], by_user=True)
    start.mask = np.ones((4, 4), bool)
    action = session.history.begin("propagation", session.objects.members((1,)))
    undo = session.objects.begin_propagation((1,), 0, "up", None)
    for z in (2, 3):
        session.history.touch(action, [(z,)])
        session.objects.add_propagated(undo, (z,), np.eye(4, dtype=bool))
    assert start.group is not None
    return start.group


def test_clicks_by_the_user_are_undoable_restored_ones_are_not():
    session = AnnotationSession()
    session.set_clicks((0,), [Click(1, 1, True)], by_user=True)
    session.set_clicks((0,), [Click(1, 1, True), Click(2, 2, False)], by_user=True)
    session.set_clicks((0,), [Click(1, 1, True), Click(2, 2, False)], by_user=False)  # shown again
    assert len(session.history.done) == 2
    assert session.history.undo().keys == [(0,)]
    assert session.objects.get((0,)).clicks == (Click(1, 1, True),)


def test_editing_a_label_replaces_the_object_in_progress_and_undo_brings_it_back():
    session = AnnotationSession()
    session.set_clicks((0,), [Click(1, 1, True)], by_user=True)
    mask = np.zeros((4, 4), bool)
    mask[2:, 2:] = True
    action = session.edit_label((0,), mask, 7)
    obj = session.objects.get((0,))
    assert action.name == "edit" and obj.edit_label == 7 and obj.clicks == ()
    np.testing.assert_array_equal(obj.mask, mask)
    session.history.undo()
    obj = session.objects.get((0,))
    assert obj.edit_label is None and obj.clicks == (Click(1, 1, True),)


def test_reset_of_a_corrected_propagated_slice_keeps_its_propagated_mask():
    session = AnnotationSession()
    group = propagated_stack(session)
    session.set_clicks((2,), [Click(0, 3, False)], by_user=True)  # a correction on slice 2
    action, message = session.reset((2,))
    obj = session.objects.get((2,))
    assert action.keys == [(2,)] and "corrections" in message
    assert obj.clicks == () and obj.group == group and obj.from_propagation
    np.testing.assert_array_equal(obj.mask, np.eye(4, dtype=bool))


def test_reset_of_a_stack_object_takes_every_slice_and_commit_forgets_it():
    session = AnnotationSession()
    group = propagated_stack(session)
    action, message = session.reset((3,))
    assert action.keys == [(1,), (2,), (3,)] and "all 3 slices" in message
    assert group not in session.objects.groups and not session.has_object((2,))
    assert session.reset((2,)) is None  # nothing left to reset
    session.history.undo()
    assert session.has_object((2,)) and session.objects.members((2,)) == [(1,), (2,), (3,)]
    assert session.committed((2,)) == [(1,), (2,), (3,)]
    assert session.history.done == [] and session.history.undone == []
    assert not session.has_object((1,))
