"""Undo, redo and reset of the objects in progress: one history per image
(:mod:`napari_fcfi.annotation.history`), shown again in the clicks layer, predictions and preview."""

from __future__ import annotations

import time

from napari_fcfi.annotation.history import Action

from .host import AnnotationHost
from .image_state import ImageState
from .journaling import recorder_of
from .layers import click_log_of
from .proposal_history import CorrectedProposal

#: Esc this soon after a propagation or fill ended, with nothing done since, was meant to cancel it: it
#: does not reset the object.
ESC_AFTER_RUN_S = 1.5


def undo(controller: AnnotationHost) -> None:
    """Take back the latest change of this image's objects in progress (a click, a propagation, a
    reset, an edit), wherever it was: one history for all of them (:mod:`napari_fcfi.annotation.history`)."""
    state = controller.state
    if state is None:
        return
    run = state.session.running  # (a closed dock's run included)
    if run is not None and state.history.done and state.history.done[-1] is getattr(run, "action", None):
        run.cancel()
        run.discarded = True  # slices still on their way are dropped
    action = state.history.undo()
    if action is None:
        controller.show_status(nothing_to_undo_message(controller, state))
        return
    proposals = show_restored(controller, state, action)
    controller.show_status(
        f"FCFI: undid the {action.name}{action.where(controller.current_key())}{proposals}; Ctrl+Shift+Z "
        "redoes it"
    )


def nothing_to_undo_message(controller: AnnotationHost, state: ImageState) -> str:
    """What to say when the clicks have no history left: commits are undone by napari's Ctrl+Z on the
    labels layer (its journal follows it), so point there when that layer holds an FCFI commit."""
    labels = state.labels_layer
    recorder = recorder_of(labels) if labels is not None else None
    if labels is None or labels not in controller.viewer.layers or not click_log_of(labels).records:
        return "FCFI: nothing to undo"
    if recorder is None or not recorder.can_undo:  # restored or reopened: napari has no history of it
        return "FCFI: nothing to undo (the labels layer has no undo history of its commits)"
    records = click_log_of(labels).records
    # Not undone from here: napari's latest labels edit may be a brush stroke, not this commit.
    return (
        f"FCFI: nothing to undo in the clicks; to undo the commit of label {records[-1].label_id}, "
        f"select the labels layer {labels.name!r} and press Ctrl+Z there"
    )


def redo(controller: AnnotationHost) -> None:
    """Do the latest undone change again."""
    state = controller.state
    action = None if state is None else state.history.redo()
    if state is None or action is None:
        controller.show_status("FCFI: nothing to redo")
        return
    run = state.session.running
    if run is not None and run.discarded and run.action is action:
        # Undone and redone while it still runs: it stays cancelled, but what it still delivers (a
        # fill's unfinished slices, from one side) is placed again, so the object has no gap.
        run.discarded, run.redone = False, True
        run.since = state.history.clock  # the undo and redo marked its own slices changed: not the user's
    proposals = show_restored(controller, state, action)
    controller.show_status(
        f"FCFI: redid the {action.name}{action.where(controller.current_key())}{proposals}"
    )


def reset_object(controller: AnnotationHost) -> None:
    """Esc (undoable): on a corrected propagated slice only its corrections go; otherwise the whole
    object on every slice it spans (the status says how many)."""
    state = controller.state
    if state is None:
        return
    run = state.session.running
    if run is not None:
        run.cancel()  # Esc first stops a running propagation of this image (keeping what was done)
        return
    ended_at, clock = state.run_ended
    if clock == state.history.clock and time.monotonic() - ended_at < ESC_AFTER_RUN_S:
        # Meant to cancel a run that ended a moment before (nothing changed since): not a reset of the
        # object on every slice.
        state.run_ended = (0.0, -1)
        controller.show_status("FCFI: the propagation or fill had already ended; Esc again resets the object")
        return
    obj = controller.current_object(create=False)
    if obj is None:
        return
    outcome = state.session.reset(obj.key)
    if outcome is None:
        controller.show_status("FCFI: nothing to reset on this slice")
        return
    action, message = outcome
    proposals = show_restored(controller, state, action)
    controller.show_status(f"FCFI: {message}{proposals}; Ctrl+Z brings it back")


def show_restored(controller: AnnotationHost, state: ImageState, action: Action) -> str:
    """Bring the clicks layer, the predictions, the preview and the segment-all proposals in step with
    the slices ``action`` changed; returns what to add to the status about the proposals ("" or "; ...")."""
    in_layer = controller.points.clicks_by_slice(state)
    for key in action.keys:
        obj = state.objects.get(key)
        if tuple(in_layer.get(key, ())) != obj.clicks:
            controller.points.show_clicks(state, key, obj.clicks)  # the objects hold them already
    for key in action.keys:
        obj = state.objects.get(key)
        if not obj.clicks:
            controller.predictor.cancel(state.image_id, key)
        elif obj.probability is None or obj.mask is None:
            controller.request_prediction(state, obj)
    controller.refresh_view()
    controller.on_change()
    return _proposals_follow(state, action)


def _proposals_follow(state: ImageState, action: Action) -> str:
    """A corrected proposal is back in the proposals layer while its object in progress is gone (an
    undone correction, a reset) and leaves it again when the object comes back (redo)."""
    touched = [*action.before.values(), *action.after.values()]
    tokens = {id(o.proposal): o.proposal for o in touched if o is not None and o.proposal is not None}
    if not tokens:
        return ""
    existing = {
        id(o.proposal) for o in state.objects.slices.values() if o.proposal is not None and o.has_object
    }
    notes = [
        token.follow(ident in existing)
        for ident, token in tokens.items()
        if isinstance(token, CorrectedProposal)
    ]
    return "".join(f"; {note}" for note in notes if note)
