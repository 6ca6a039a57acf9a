"""Propagate: carry the object on screen through the stack in a background thread.

The object on the slice on screen (its latest mask) is carried up, down or both ways along a stack
axis by :func:`napari_fcfi.annotation.propagation.propagate_slices`, in a napari worker thread
(``napari.qt.threading``: results and progress arrive on the GUI thread). Each propagated slice
becomes that slice's object in progress and shows in the preview when it is on screen; the user can
correct any slice with clicks (starting from the propagated mask) and propagate again from there.
Cancel (or Esc) stops after the current slice and keeps what was done. A propagation is one action
of the image's history (:mod:`napari_fcfi.annotation.history`): Undo takes all of it back, Redo
brings it back without running the network again. Where the object ends by the stopping rule the
status line says why (:class:`~napari_fcfi.annotation.propagation.PropagationStop`); the stops are
kept in the image's ``ImageState.stops`` so that one key continues past them (:mod:`.stack_tools`). The
propagated slices most likely wrong are listed for review (``ImageState.review``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_fcfi.annotation.clicklog import Step
from napari_fcfi.annotation.geometry import SliceKey, describe_slice, read_plane
from napari_fcfi.annotation.history import Action
from napari_fcfi.annotation.objects import PropagationUndo, SliceObject, cut_propagation_step
from napari_fcfi.annotation.propagation import (
    PropagatedSlice,
    PropagationStop,
    propagation_order,
    propagation_steps,
)
from napari_fcfi.annotation.replay import stack_key
from napari_fcfi.annotation.review import PredictedSlice, review_slices

from . import layers as helpers
from .background import run_generator
from .host import AnnotationHost
from .image_state import ImageState
from .stack_runs import PropagationRun, ReviewList, Stop, finished_message, review_message


def start_propagation(
    controller: AnnotationHost,
    direction: str = "both",
    max_slices: int | None = None,
    axis: int | None = None,
    threaded: bool = True,
    *,
    start_key: SliceKey | None = None,
    through: int = 0,
    announce: str | None = None,
    keep_stops: tuple[Stop, ...] = (),
) -> PropagationRun | None:
    """Propagate the object on screen (on ``start_key`` when given); ``through`` as for
    :func:`~napari_fcfi.annotation.propagation.propagation_steps` (continuing past a stop).
    ``announce``: the status shown while it runs (default: what propagates from where);
    ``keep_stops``: earlier stops still to continue past afterwards.
    Returns the run (None, with a status message, when it cannot)."""
    state = controller.state
    obj = controller.current_object() if start_key is None or state is None else state.objects.get(start_key)
    if state is None or obj is None:
        return None
    geometry = state.geometry
    axis = run_axis(controller, state, axis)
    problem = stack_run_problem(controller, state, obj, axis, "propagation", "propagate")
    if problem is not None:
        controller.show_status(f"FCFI: {problem}")
        return None
    order = propagation_order(obj.key[axis], geometry.slice_shape[axis], direction, max_slices)
    start_key, start_mask = obj.key, np.array(obj.mask)
    action = state.history.begin("propagation", state.objects.members(start_key))
    undo = state.objects.begin_propagation(
        start_key, axis, direction, max_slices, through, controller.settings.threshold
    )
    drop_replaced_points(controller, state, undo.replaced)
    run = begin_run(controller, state, action, sum(len(o) for o in order), undo.group)
    run.start_index = start_key[axis]
    make_segmenter = run_segmenter_factory(controller)
    image = helpers.image_data(state.layer)

    def work():
        segmenter = make_segmenter()

        def read(index: int) -> np.ndarray:
            return read_plane(image, geometry, stack_key(start_key, axis, index))

        yield from propagation_steps(
            segmenter,
            read,
            start_mask,
            order,
            channel_axis=geometry.slice_channel_axis(),
            channel=state.channel,
            should_stop=lambda: run.cancelled,
            through=through,
            start_index=start_key[axis],
            direction_ended=lambda index: ("up" if index > start_key[axis] else "down") in run.blocked,
        )

    def on_slice(item: PropagatedSlice | PropagationStop) -> None:
        if run.discarded:  # undone: should a redo bring the run back, nothing is placed past this gap
            run.blocked.add("up" if item.index > start_key[axis] else "down")
            return
        if state.image_id not in controller.images and not run.dock_closed:
            return
        if isinstance(item, PropagationStop):
            step = 1 if item.index > start_key[axis] else -1
            if ("up" if step > 0 else "down") in run.blocked:
                return  # that direction already ended at a slice the user changed: no stop to continue past
            run.stops.append(
                Stop(
                    state.image_id,
                    stack_key(start_key, axis, item.index),
                    stack_key(start_key, axis, item.index - step),
                    axis,
                    "up" if step > 0 else "down",
                    item.span,
                    item.reason,
                )
            )
            return
        direction = "up" if item.index > start_key[axis] else "down"
        if direction in run.blocked:
            return  # carried on from a slice the user changed meanwhile: not theirs to replace
        if not place_mask(controller, state, undo, run, stack_key(start_key, axis, item.index), item.mask):
            run.blocked.add(direction)
            return
        run.predicted.append(PredictedSlice(item.index, item.mask, item.confidence))

    def on_done(*_: Any) -> None:
        try:
            controller.propagation = None
            state.stops = [*keep_stops, *run.stops]
            if run.cancelled or run.blocked or run.failed:
                reached = reached_per_direction(start_key[axis], order, run)
                limit_recorded_step(state, run, lambda steps: cut_propagation_step(steps, reached))
            listed = review_slices(run.predicted, {start_key[axis]: start_mask})
            state.review = ReviewList(
                state.image_id,
                [stack_key(start_key, axis, i) for i in listed + last_slices(run, listed)],
                run.group,
            )
            controller.show_status(
                finished_message(
                    run,
                    propagation_summary(run, order, keep_stops, start_key, axis, state),
                    elsewhere=None if controller.state is state else state.layer.name,
                )
            )
        finally:  # the panel's Cancel and progress end whatever happened
            run.on_finished(run.done)
            controller.on_change()

    ways = "both ways" if direction == "both" else direction
    # At once: the run may take minutes, and its end replaces this with what it did.
    controller.show_status(announce or f"FCFI: propagating {ways} from slice {describe_slice(start_key)} …")
    return launch(controller, state, run, work, on_slice, on_done, threaded)


def default_stack_axis(slice_shape: list[int] | tuple[int, ...]) -> int | None:
    """The stack axis a run goes along unless one is chosen: the longest, the last of equals (z of t, z;
    a 2-entry axis beside a 20-slice one is more likely channels than depth). None without a stack axis."""
    if not slice_shape:
        return None
    return max(range(len(slice_shape)), key=lambda i: (slice_shape[i], i))


def run_axis(controller: AnnotationHost, state: ImageState, axis: int | None) -> int:
    """``axis``, else the one chosen in the widget, else :func:`default_stack_axis`."""
    if axis is not None:
        return int(axis)  # told: a wrong one is said so (stack_run_problem)
    shape = state.geometry.slice_shape
    chosen = controller.stack_axis()
    if chosen is None or not 0 <= int(chosen) < len(shape):
        chosen = default_stack_axis(shape)
    return 0 if chosen is None else int(chosen)


def reached_per_direction(start: int, order: list[list[int]], run: PropagationRun) -> dict[str, int | None]:
    """For each direction of ``order``: the slices a cancelled ``run`` placed there, or None where it
    ended by itself (a stop, or the range's end)."""
    reached: dict[str, int | None] = {}
    for indices in order:
        if not indices:
            continue
        name = "up" if indices[0] > start else "down"
        placed = sum(1 for p in run.predicted if (p.index > start) == (name == "up"))
        stopped = any(s.direction == name for s in run.stops) and name not in run.blocked
        reached[name] = None if stopped or placed == len(indices) else placed
    return reached


def last_slices(run: PropagationRun, listed: list[int]) -> list[int]:
    """The last slice the run placed in each direction, when not ``listed`` already: where an object
    ends, propagated masks are least reliable (the network keeps the object's size while the real one
    shrinks to its tip), so they are reviewed too, after the suspect slices."""
    start = run.start_index
    ends = [
        pick([p.index for p in run.predicted if (p.index > start) == up], default=None)
        for up, pick in ((True, max), (False, min))
    ]
    return [i for i in ends if i is not None and i not in listed]


def propagation_summary(
    run: PropagationRun,
    order: list[list[int]],
    keep_stops: tuple[Stop, ...],
    start_key: SliceKey,
    axis: int,
    state: ImageState,
) -> str:
    """What a finished propagation did, for the status line (``finished_message`` adds how to undo it)."""
    undone = run.discarded or run.redone
    stopped = " (cancelled)" if run.cancelled and not run.orphaned and not undone else ""
    why = "".join(f"; {s.describe()}" for s in run.stops)
    placed = {p.index for p in run.predicted}
    last = state.geometry.slice_shape[axis] - 1
    why += "".join(  # no stop said where the object ends: the end slices may hold none of it
        f"; it reached slice {describe_slice(stack_key(start_key, axis, indices[-1]))}, the stack's end "
        "(does the object end before?)"
        for indices in order
        if indices and indices[-1] in (0, last) and indices[-1] in placed
    )
    stops = [*run.stops, *keep_stops]
    more = ""
    if len(stops) == 1:
        more = f"; C continues {stops[0].direction} past slice {describe_slice(stops[0].key)}"
    elif stops:
        where = ", ".join(f"{s.direction} past slice {describe_slice(s.key)}" for s in stops)
        more = f"; C continues past the stop nearest the slice on screen ({where})"
    review = "" if state.review is None else f"; {review_message(state.review)}"
    return f"propagated to {run.done} slice(s){stopped}{why}{run.user_changes_message()}{more}{review}"


def limit_recorded_step(state: ImageState, run: PropagationRun, cut: Callable[[list[Step]], None]) -> None:
    """Replace the run's step (``run.step``) by what the user keeps (``cut`` of ``[step]``) wherever it is
    held: the live object and every copy the image's history keeps of it (what undo or redo of this or a
    later action, e.g. a correction made while the run went on, puts back), so that the click log replays
    exactly what is shown. Nothing when the object was committed meanwhile (its steps went with it)."""
    step = run.step
    if step is None:
        return
    kept: list[Step] = [step]
    cut(kept)
    holders = [*state.objects.groups.values()]
    for action in [*state.history.done, *state.history.undone]:
        holders += [*action.groups_before.values(), *action.groups_after.values()]
    for holder in holders:
        if any(s is step for s in holder.steps):
            holder.steps[:] = [new for s in holder.steps for new in (kept if s is step else [s])]


def stack_run_problem(
    controller: AnnotationHost, state: ImageState, obj: SliceObject, axis: int, name: str, verb: str
) -> str | None:
    """Why ``obj`` cannot start a propagation or fill (``name``, ``verb``) along ``axis`` now; None when it can."""
    shape = state.geometry.slice_shape
    if not shape:
        return f"{name} needs a stack (a 3D or 4D image)"
    if not 0 <= axis < len(shape):
        return f"the image has no stack axis {axis}"
    if obj.clicks and controller.predictor.pending(state.image_id, obj.key):
        return f"wait for the prediction on this slice, then {verb}"
    if obj.mask is None or not obj.mask.any():
        return "annotate the object on this slice first (its mask is empty)"
    if controller.propagation is not None or state.session.running is not None:
        return "a propagation or fill is already running"
    return None


def begin_run(
    controller: AnnotationHost, state: ImageState, action: Action, total: int, group: int
) -> PropagationRun:
    """The run of a propagation or fill of stack object ``group`` on ``state``'s image (``action``: its
    entry in the image's history), now the running one."""
    run = PropagationRun(total, state.image_id)
    run.action, run.group = action, group
    run.step = state.objects.groups[group].steps[-1]  # the PropagateStep or FillStep it records
    state.session.running = run
    run.since = state.history.clock
    controller.propagation = run
    return run


def run_segmenter_factory(controller: AnnotationHost) -> Callable[[], Any]:
    """Builds, in the worker thread, the engine session a propagation or fill runs on (the widget's
    model, device, threads and threshold)."""
    settings = controller.settings
    factory, cache = controller.predictor.factory, controller.model_cache

    def make() -> Any:
        if settings.cpu_threads and settings.device.startswith("cpu"):
            import torch

            torch.set_num_threads(settings.cpu_threads)
        segmenter = factory(cache.get(settings.model_source, settings.device))
        segmenter.threshold = settings.threshold
        return segmenter

    return make


#: A slice the user changed while a run went on stays the run's to fill when nothing is in progress there
#: now and the labels cover less than this share of the run's mask there: the user committed another
#: object on it (annotating the next nucleus ahead of the run), not this one.
OTHER_OBJECT_COVER = 0.5


def changed_elsewhere(state: ImageState, key: SliceKey, mask: np.ndarray) -> bool:
    """Whether the user's change of slice ``key`` during a run left this object's place there free (see
    :data:`OTHER_OBJECT_COVER`)."""
    obj = state.objects.slices.get(key)
    if obj is not None and obj.has_object:
        return False
    area = int(np.count_nonzero(mask))
    labels = state.labels_layer
    if labels is None or area == 0:
        return area > 0
    plane = np.asarray(helpers.image_data(labels)[key] if key else helpers.image_data(labels))
    return int(np.count_nonzero(plane[mask])) < OTHER_OBJECT_COVER * area


def place_mask(
    controller: AnnotationHost,
    state: ImageState,
    undo: PropagationUndo,
    run: PropagationRun,
    key: SliceKey,
    mask: np.ndarray,
) -> bool:
    """Make ``mask`` the object in progress on slice ``key`` (part of ``undo`` and of ``run.action``, the
    run's entry in the image's history), count it, show it; nothing once the run was undone, or its object
    was committed, edited or reset (the run then stops). A slice the user changed (clicked, reset,
    committed) since the run began is kept as it is (False), unless only another object was committed
    there (:func:`changed_elsewhere`)."""
    if run.discarded:
        return False
    if undo.group not in state.objects.groups:
        run.orphaned = True  # committed, edited or reset while it ran: later slices are no one's
        run.cancel()
        return False
    if state.history.changed_since(key, run.since) and not changed_elsewhere(state, key, mask):
        run.left_to_user.append(key)
        if joins_the_run(state, run.action, undo.group, key, mask):
            run.joined.append(key)
        return False
    if run.action is not None:
        state.history.touch(run.action, [key])  # before it changes: undo puts this back
    replaced = state.objects.slices.get(key)
    state.objects.add_propagated(undo, key, mask)  # first, so removing its points leaves it intact
    if replaced is not None and replaced.clicks and replaced.group != undo.group:
        drop_replaced_points(controller, state, {key: replaced})
    run.done += 1
    run.on_progress(run.done, run.total)
    if state is controller.state and key == controller.current_key():
        controller.update_preview()
    controller.on_change("object")
    return True


def joins_the_run(
    state: ImageState, run_action: Action | None, group: int, key: SliceKey, mask: np.ndarray
) -> bool:
    """Make the object the user started on slice ``key`` while the run went on part of the run's stack
    object ``group`` when one of its positive clicks lies in the ``mask`` the run made there: the user
    clicked the same object ahead of the run (was: two labels for one nucleus at Commit).

    The slice keeps the user's clicks and prediction; it only joins the object, in place (a prediction
    on its way still finds it), and so do the history's copies of it made since the run began (undoing
    one of the user's clicks there must not take the slice out of the object again).
    """
    obj = state.objects.get(key, create=False)
    if (
        obj is None
        or obj.group is not None
        or obj.edit_label is not None
        or group not in state.objects.groups
    ):
        return False
    height, width = mask.shape
    inside = any(
        c.positive and 0 <= c.row < height and 0 <= c.col < width and mask[c.row, c.col] for c in obj.clicks
    )
    if not inside:
        return False
    obj.group = group
    done = state.history.done
    begun = next((i for i, action in enumerate(done) if action is run_action), -1)
    for action in [*done[begun + 1 :], *state.history.undone]:
        for copy in (action.before.get(key), action.after.get(key)):
            if copy is not None and copy.clicks and copy.group is None and copy.edit_label is None:
                copy.group = group
    return True


def launch(
    controller: AnnotationHost,
    state: ImageState,
    run: PropagationRun,
    work: Callable[[], Any],
    on_item: Callable[[Any], None],
    on_done: Callable[[], None],
    threaded: bool = True,
) -> PropagationRun:
    """Run ``work()`` (a generator) in a napari worker thread, ``on_item`` on the GUI thread for each
    item it yields, ``on_done`` at the end (after an error too, with ``run.failed``); ``run`` stops being
    ``state``'s running one then. Without ``threaded``, all of it here (tests, scripts)."""

    def finished(*_: Any) -> None:
        try:
            on_done()
        finally:
            controller.propagation = None
            state.run_ended = (time.monotonic(), state.history.clock)
            if state.session.running is run:
                state.session.running = None

    def on_error(error: Exception) -> None:
        run.failed = True  # what it placed stays (one undo takes it back), its record says so
        try:
            finished()
        finally:
            controller.show_status(
                f"FCFI: the run failed: {error}; the {run.done} slice(s) it made are kept (Ctrl+Z takes them back)"
            )

    run.worker = run_generator(work, on_item, finished, on_error, threaded)
    return run


def drop_replaced_points(
    controller: AnnotationHost, state: ImageState, replaced: dict[SliceKey, SliceObject | None]
) -> None:
    for key, previous in replaced.items():
        if previous is not None and previous.clicks:
            controller.points.remove(state, key)
            controller.predictor.cancel(state.image_id, key)
