"""The one action history of an image's objects in progress (napari-free)."""

from __future__ import annotations

import numpy as np

from napari_fcfi.annotation.history import ActionHistory
from napari_fcfi.annotation.objects import ObjectsInProgress
from napari_fcfi.engine.clicks import Click


def clicked(objects, history, key, click):
    history.begin("click", [key])
    obj = objects.get(key)
    obj.clicks = (*obj.clicks, click)
    obj.mask = np.zeros((4, 4), bool)  # a prediction arrived
    obj.mask[click.row, click.col] = True


def test_undo_and_redo_walk_every_action_in_order_across_slices():
    objects = ObjectsInProgress()
    history = ActionHistory(objects)
    clicked(objects, history, (0,), Click(1, 1, True))
    clicked(objects, history, (2,), Click(2, 2, True))
    clicked(objects, history, (0,), Click(3, 3, False))
    assert history.undo().keys == [(0,)] and objects.get((0,)).clicks == (Click(1, 1, True),)
    assert objects.get((0,)).mask is None  # recomputed from the clicks by the caller
    assert history.undo().keys == [(2,)] and not objects.get((2,)).has_object
    assert history.redo().keys == [(2,)] and objects.get((2,)).clicks == (Click(2, 2, True),)
    clicked(objects, history, (1,), Click(0, 0, True))  # a new action clears what could be redone
    assert history.redo() is None
    assert [a.keys for a in history.done] == [[(0,)], [(2,)], [(1,)]]


def test_reset_of_a_stack_object_comes_back_with_its_stack_and_commit_forgets_it():
    objects = ObjectsInProgress()
    history = ActionHistory(objects)
    start = objects.get((1,))
    start.clicks, start.mask = (Click(1, 1, True),), np.ones((4, 4), bool)
    action = history.begin("propagation", objects.members((1,)))
    undo = objects.begin_propagation((1,), 0, "up", None)
    for z in (2, 3):
        history.touch(action, [(z,)])
        objects.add_propagated(undo, (z,), np.eye(4, dtype=bool))
    group = start.group
    steps = list(objects.groups[group].steps)
    reset = history.begin("reset", objects.members((2,)))
    objects.forget((2,))
    assert group not in objects.groups and reset.keys == [(1,), (2,), (3,)]
    history.undo()
    assert objects.members((2,)) == [(1,), (2,), (3,)] and objects.groups[group].steps == steps
    np.testing.assert_array_equal(objects.get((3,)).mask, np.eye(4, dtype=bool))
    history.undo()  # the propagation: slices 2 and 3 had no object before
    assert objects.get((1,)).group is None and group not in objects.groups
    assert not objects.get((2,)).has_object and not objects.get((3,)).has_object
    history.redo()
    history.redo()
    assert group not in objects.groups  # the reset again
    history.undo()
    history.forget([(1,), (2,), (3,)])  # committed
    assert history.done == [] and history.undone == []


def test_every_kind_of_change_tells_a_run_that_began_before_it():
    """A propagation or fill asks ``changed_since`` before placing a slice: actions, undo, redo, commits
    and a proposal taken up for correction (``mark_changed``, no action) all count; other slices not."""
    objects = ObjectsInProgress()
    history = ActionHistory(objects)
    began = history.clock
    clicked(objects, history, (1,), Click(1, 1, True))
    history.mark_changed([(3,)])
    assert history.changed_since((1,), began) and history.changed_since((3,), began)
    assert not history.changed_since((2,), began)
    later = history.clock
    history.undo()
    assert history.changed_since((1,), later) and not history.changed_since((3,), later)
    history.forget([(4,)])  # a commit on slice 4
    assert history.changed_since((4,), later)
