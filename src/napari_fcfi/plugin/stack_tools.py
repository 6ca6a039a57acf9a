"""Stack tools beside propagation: fill between two annotated slices, continue past a stop, review.

* **Fill between** (F): the object on screen and the nearest other slice (same stack line) where the
  user annotated or corrected it; every slice between them is predicted from both
  (:func:`napari_fcfi.annotation.filling.fill_slices`) in a worker thread, with progress, Cancel
  (Esc), Undo and Redo: the fill is one action of the image's history
  (:mod:`napari_fcfi.annotation.history`), as a propagation is, and a step of the object's
  :class:`~napari_fcfi.annotation.objects.StackObject`. The commit records it in the click log
  (``FillStep``), which ``fcfi segment`` replays.
* **Continue past a stop** (C): propagates again from the last slice before the stop nearest the
  slice on screen, keeping the slices the stopping rule had doubted.
* **Next slice to review** (N): goes to the next slice of the image's ``ImageState.review`` (worst first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_fcfi.annotation.filling import FilledSlice, fill_slices
from napari_fcfi.annotation.geometry import SliceKey, describe_slice, describe_slices, read_plane
from napari_fcfi.annotation.objects import SliceObject, cut_fill_step
from napari_fcfi.annotation.replay import PassLimit, stack_key
from napari_fcfi.annotation.review import PredictedSlice, review_slices

from . import layers as helpers
from .host import AnnotationHost
from .image_state import ImageState
from .propagating import (
    begin_run,
    drop_replaced_points,
    launch,
    limit_recorded_step,
    place_mask,
    run_axis,
    run_segmenter_factory,
    stack_run_problem,
    start_propagation,
)
from .stack_runs import PropagationRun, ReviewList, finished_message, review_message

STACK_SHORTCUTS = {  # action -> (napari key, text shown in tooltips)
    "fill": ("F", "F"),
    "continue": ("C", "C"),
    "review": ("N", "N"),
}


def annotated_by_user(obj: SliceObject) -> bool:
    """The user clicked on this slice's object or started it from an edited label (not only propagated)."""
    has_input = bool(obj.clicks) or (obj.initial_mask is not None and not obj.from_propagation)
    return has_input and obj.mask is not None and bool(obj.mask.any())


#: Two annotated slices are one object to fill between when their masks share at least this share of the
#: smaller one (or a propagation or fill already joined them): a fill must never join two objects.
SAME_OBJECT_OVERLAP = 0.1


def same_object(a: SliceObject, b: SliceObject) -> bool:
    """Whether the annotated objects of two slices of one stack line are one object."""
    if a.group is not None and a.group == b.group:
        return True
    if a.mask is None or b.mask is None:
        return False
    smaller = min(int(a.mask.sum()), int(b.mask.sum()))
    return smaller > 0 and int(np.count_nonzero(a.mask & b.mask)) >= SAME_OBJECT_OVERLAP * smaller


def fill_candidates(state: ImageState, key: SliceKey, axis: int) -> list[SliceKey]:
    """The other slices on ``key``'s stack line (along ``axis``, at least two slices away) that the user
    annotated, nearest first."""
    found = [
        k
        for k, obj in state.objects.slices.items()
        if k != key
        and abs(k[axis] - key[axis]) >= 2
        and annotated_by_user(obj)
        and all(a == b for i, (a, b) in enumerate(zip(k, key)) if i != axis)
    ]
    return sorted(found, key=lambda k: (abs(k[axis] - key[axis]), k[axis]))


def fill_partner(state: ImageState, key: SliceKey, axis: int) -> SliceKey | None:
    """The nearest slice of :func:`fill_candidates` whose object is this one (:func:`same_object`), or None."""
    here = state.objects.slices[key]
    return next(
        (k for k in fill_candidates(state, key, axis) if same_object(here, state.objects.slices[k])), None
    )


def kept_between(
    state: ImageState, key_a: SliceKey, key_b: SliceKey, between: list[SliceKey]
) -> tuple[SliceKey, bool] | None:
    """The first slice of ``between`` that a fill must not empty (it replaces the slices between its
    ends), and whether it is this object: the user's own work there (clicks, an edit) or another
    object's. None when every slice between is empty or only propagated or filled for this object."""
    slices = state.objects.slices
    ends = [slices[key_a], slices[key_b]]
    groups = {end.group for end in ends} - {None}
    for key in sorted(between):
        obj = slices[key]
        ours = obj.group is not None and obj.group in groups
        if not obj.has_object or (ours and not annotated_by_user(obj)):
            continue
        return key, ours or (annotated_by_user(obj) and any(same_object(obj, end) for end in ends))
    return None


def start_fill(
    controller: AnnotationHost, axis: int | None = None, threaded: bool = True
) -> PropagationRun | None:
    """Fill between the object on screen and its nearest annotated slice; the run, or None (status says why)."""
    state, obj = controller.state, controller.current_object()
    if state is None or obj is None:
        return None
    geometry = state.geometry
    axis = run_axis(controller, state, axis)
    problem = stack_run_problem(controller, state, obj, axis, "fill between", "fill")
    if problem is not None:
        controller.show_status(f"FCFI: {problem}")
        return None
    partner = fill_partner(state, obj.key, axis)
    if partner is None:
        others = [k[axis] for k in fill_candidates(state, obj.key, axis)]
        elsewhere = (
            f"; the object on {describe_slices([(i,) for i in others], limit=3)} does not overlap this one "
            "(another object?)"
            if others
            else ""
        )
        controller.show_status(
            "FCFI: fill between needs this object annotated on another slice of this stack too "
            f"(at least two slices away){elsewhere}"
        )
        return None
    if controller.predictor.pending(state.image_id, partner):
        controller.show_status(f"FCFI: wait for the prediction on slice {describe_slice(partner)}, then fill")
        return None
    key_a, key_b = obj.key, partner
    mask_a, mask_b = np.array(obj.mask), np.array(state.objects.slices[partner].mask)
    low, high = sorted((key_a[axis], key_b[axis]))
    between = [
        k
        for k in state.objects.slices
        if low < k[axis] < high and all(a == b for i, (a, b) in enumerate(zip(k, key_a)) if i != axis)
    ]
    kept = kept_between(state, key_a, key_b, between)
    if kept is not None:
        ends = " and ".join(describe_slice(k) for k in sorted((key_a, key_b), key=lambda k: k[axis]))
        where = f"slice {describe_slice(kept[0])} between slices {ends}"
        controller.show_status(
            f"FCFI: {where} has your corrections of this object; press F there to fill from it (a fill "
            "replaces the slices between its ends)"
            if kept[1]
            else f"FCFI: {where} holds another object in progress; commit or reset it (Esc there) first, "
            "fill would replace it"
        )
        return None
    # One action of the image's history: both ends' objects (a merged one whole) and the slices between.
    action = state.history.begin(
        "fill", [*state.objects.members(key_a), *state.objects.members(key_b), *between]
    )
    undo = state.objects.begin_fill(key_a, key_b, axis, controller.settings.threshold)
    drop_replaced_points(controller, state, {k: v for k, v in undo.replaced.items() if low < k[axis] < high})
    run = begin_run(controller, state, action, abs(key_b[axis] - key_a[axis]) - 1, undo.group)
    make_segmenter = run_segmenter_factory(controller)
    image = helpers.image_data(state.layer)
    limit = PassLimit(cancelled=lambda: run.cancelled)  # counts the passes: a cancel is replayed exactly

    def work():
        segmenter = make_segmenter()

        def read(index: int) -> np.ndarray:
            return read_plane(image, geometry, stack_key(key_a, axis, index))

        yield from fill_slices(
            segmenter,
            read,
            key_a[axis],
            mask_a,
            key_b[axis],
            mask_b,
            channel_axis=geometry.slice_channel_axis(),
            channel=state.channel,
            should_stop=limit,
            partial=True,  # a cancel keeps the slices a chain reached: no gap between the ends
        )

    no_data: list[int] = []  # filled slices whose mask lies on no data (NaN): reviewed first

    def on_slice(item: FilledSlice) -> None:
        if run.discarded or (state.image_id not in controller.images and not run.dock_closed):
            return
        if place_mask(controller, state, undo, run, stack_key(key_a, axis, item.index), item.mask):
            run.predicted.append(PredictedSlice(item.index, item.mask, item.confidence, item.agreement))
            if item.no_data:
                no_data.append(item.index)

    def on_done(*_: Any) -> None:
        try:
            controller.propagation = None
            state.stops = []
            if run.cancelled or run.left_to_user or run.failed:
                stopped_early = run.cancelled or run.failed
                placed, passes = [p.index for p in run.predicted], limit.passes if stopped_early else None
                limit_recorded_step(state, run, lambda steps: cut_fill_step(steps, placed, passes))
            ends = {key_a[axis]: mask_a, key_b[axis]: mask_b}
            state.review = ReviewList(
                state.image_id,
                [
                    stack_key(key_a, axis, i)
                    for i in sorted(no_data)
                    + [i for i in review_slices(run.predicted, ends) if i not in no_data]
                ],
                run.group,
            )
            disagree = sum(p.agreement is not None and p.agreement < 0.8 for p in run.predicted)
            cancelled = run.cancelled and not run.orphaned and not run.discarded and not run.redone
            stopped = " (cancelled: unfinished slices come from one side only)" if cancelled else ""
            reached = {p.index for p in run.predicted} | {k[axis] for k in run.left_to_user}
            empty = [i for i in range(low + 1, high) if i not in reached]
            if run.redone and empty:  # undone while it ran: the slices it delivered meanwhile were dropped
                stopped = f"; {describe_slices([(i,) for i in empty], limit=5)} not filled (F fills them)"
            if no_data:
                where = describe_slices([stack_key(key_a, axis, i) for i in sorted(no_data)], limit=5)
                stopped += f"; {where}: no data under the mask (NaN), only a guess"
            controller.show_status(
                finished_message(
                    run,
                    f"filled {run.done} slice(s) between slices {describe_slice(key_a)} and "
                    f"{describe_slice(key_b)}{stopped}{run.user_changes_message()}; the two sides disagree on "
                    f"{disagree}; {review_message(state.review)}",
                    elsewhere=None if controller.state is state else state.layer.name,
                )
            )
        finally:  # the panel's Cancel and progress end whatever happened
            run.on_finished(run.done)
            controller.on_change()

    # At once: the fill may take minutes, and its end replaces this with what it did.
    span = f"slice {low + 1}" if high - low == 2 else f"slices {low + 1}-{high - 1}"
    controller.show_status(
        f"FCFI: filling {span} between slices {describe_slice(key_a)} and {describe_slice(key_b)} …"
    )
    return launch(controller, state, run, work, on_slice, on_done, threaded)


def continue_past_stop(controller: AnnotationHost, threaded: bool = True) -> PropagationRun | None:
    """Propagate on past the stop of the last propagation nearest the slice on screen."""
    state, key = controller.state, controller.current_key()
    stops = [] if state is None else state.stops
    if state is None or not stops or key is None:
        controller.show_status("FCFI: no stop to continue past (propagate first)")
        return None
    stop = min(stops, key=lambda s: abs(s.key[s.axis] - key[s.axis]))
    last = state.objects.slices.get(stop.last_key)
    if last is None or last.mask is None or not last.mask.any():
        controller.show_status(f"FCFI: slice {describe_slice(stop.last_key)} has no object to continue from")
        return None
    others = tuple(s for s in stops if s is not stop)  # still there to continue past afterwards
    left = "".join(f"; C again: {s.direction} past slice {describe_slice(s.key)}" for s in others)
    announce = (
        f"FCFI: continuing propagation {stop.direction} from slice {describe_slice(stop.last_key)} past the "
        f"stop at slice {describe_slice(stop.key)} (nearest this slice) …{left}"
    )
    return start_propagation(
        controller,
        stop.direction,
        None,
        stop.axis,
        threaded,
        start_key=stop.last_key,
        through=stop.span,
        announce=announce,
        keep_stops=others,
    )


def next_review(controller: AnnotationHost) -> SliceKey | None:
    """Show the next slice to review (worst first, then round again); returns its key or None."""
    state = controller.state
    review = None if state is None else state.review
    if state is None or review is None or not review.keys:
        controller.show_status("FCFI: no slice to review")
        return None

    # only slices that still hold the run's object in progress: once its slices are committed or taken
    # back (an undo; a redo brings them back), or hold another object, there is nothing of it to fix
    def holds_object(key: SliceKey) -> bool:
        obj = state.objects.get(key, create=False)
        return obj is not None and obj.has_object and review.group in (None, obj.group)

    key = review.next_key(holds_object)
    if key is None:
        controller.show_status(
            "FCFI: no slice to review: the last propagation's or fill's slices were committed or taken back"
        )
        return None
    geometry = state.geometry
    dims = controller.viewer.dims
    offset = dims.ndim - len(geometry.label_shape)
    for axis, index in enumerate(key):
        dims.set_point(offset + axis, geometry.translate[axis] + geometry.scale[axis] * index)
    live = [k for k in review.keys if holds_object(k)]
    controller.show_status(f"FCFI: review slice {live.index(key) + 1} of {len(live)} (N: next)")
    return key


def stack_key_actions(controller: AnnotationHost) -> dict[str, Callable[[], Any]]:
    """The actions of :data:`STACK_SHORTCUTS` for ``controller``."""
    return {
        "fill": lambda: controller.on_stack_run(start_fill(controller)),
        "continue": lambda: controller.on_stack_run(continue_past_stop(controller)),
        "review": lambda: next_review(controller),
    }
