"""One image's interaction, napari-free: its objects in progress and the one history of their changes.

The plugin keeps an :class:`AnnotationSession` per annotated image. The changes a user makes to the
objects in progress (clicks, editing a label, a reset, a commit) go through its methods: each is one
action of the image's :class:`~.history.ActionHistory`, so undo and redo walk all of them, and each
returns what the caller must show again. Propagations and fills arrive slice by slice and use
``objects.begin_propagation`` / ``begin_fill`` with ``history.begin`` / ``touch`` directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from napari_fcfi.engine.clicks import Click

from .geometry import SliceKey, describe_slices
from .history import Action, ActionHistory
from .objects import ObjectsInProgress, SliceObject


class AnnotationSession:
    """The objects in progress of one image and their one action history (see the module docstring)."""

    def __init__(self) -> None:
        self.objects = ObjectsInProgress()
        self.history = ActionHistory(self.objects)
        # A propagation or fill still placing slices here (the plugin's run; it outlives a closed dock,
        # whose objects in progress the next dock takes up): commit, edit, undo and new runs ask it.
        self.running: Any = None
        # The stops and the slices to review of its last propagation or fill (the plugin's records).
        self.stops: list[Any] = []
        self.review: Any = None

    def has_object(self, key: SliceKey) -> bool:
        """The object on ``key`` (any of its slices, for a stack object) holds something to commit."""
        slices = self.objects.slices
        return any(slices[k].has_object for k in self.objects.members(key) if k in slices)

    def set_clicks(self, key: SliceKey, clicks: Iterable[Click], by_user: bool) -> SliceObject:
        """Slice ``key`` now has ``clicks``; a user's change is an action of the history (undo takes it
        back), a change the program makes (restoring clicks) is not."""
        if by_user:
            self.history.begin("click", [key])
        obj = self.objects.get(key)
        obj.clicks = tuple(clicks)
        return obj

    def edit_label(self, key: SliceKey, mask: np.ndarray, label_id: int) -> Action:
        """Make label ``label_id`` (its ``mask`` on slice ``key``) the object in progress there, replacing
        the one in progress (undoable): clicks refine it, the commit replaces the label."""
        action = self.history.begin("edit", self.objects.members(key))
        self.objects.forget(key)
        self.objects.get(key).restart(mask, edit_label=int(label_id))
        return action

    def correct_proposal(self, masks: dict[SliceKey, np.ndarray], proposal: Any) -> Action:
        """A segment-all proposal (``masks`` per slice, linked across slices) becomes the object in
        progress, undoably: each of its slices carries the caller's ``proposal`` token, by which the
        caller gives the proposal back when an undo or a reset takes the object away. Its slices must
        have no object in progress (ValueError)."""
        busy = sorted(key for key in masks if self.objects.get(key).has_object)
        if busy or not masks:
            raise ValueError(f"{describe_slices(busy)}: an object in progress" if busy else "no masks given")
        action = self.history.begin("proposal correction", sorted(masks))
        action.proposal = proposal
        self.objects.start_from_masks(masks)
        for key in masks:
            self.objects.slices[key].proposal = proposal
        return action

    def proposal_committed(self, proposal: Any, keys: Iterable[SliceKey]) -> None:
        """Proposal ``proposal`` (a :meth:`correct_proposal` token, or None) was committed as it is
        (Accept) on ``keys``: no undo or redo may bring its correction back over the committed label,
        and a run going on leaves those slices."""
        if proposal is not None:

            def takes_it_up(action: Action) -> bool:
                states = [*action.before.values(), *action.after.values()]
                return action.proposal is proposal or any(
                    o is not None and o.proposal is proposal for o in states
                )

            self.history.forget_where(takes_it_up)
        self.history.mark_changed(keys)

    def reset(self, key: SliceKey) -> tuple[Action, str] | None:
        """Esc on slice ``key`` (undoable): on a corrected propagated slice only its corrections go;
        otherwise the whole object on every slice it spans. Returns the action and what it did (None:
        nothing to reset)."""
        obj = self.objects.get(key, create=False)
        if obj is None or not self.has_object(key):
            return None
        if obj.group is not None and obj.from_propagation and obj.clicks:
            action = self.history.begin("reset", [key])
            obj.restart(obj.initial_mask, from_propagation=True)  # stays a slice of its stack object
            return action, "this slice's corrections were reset (its propagated mask stays)"
        members = self.objects.members(key)
        action = self.history.begin("reset", members)
        self.objects.forget(key)
        spans = f" on all {len(members)} slices it spans" if len(members) > 1 else ""
        return action, f"the object was reset{spans}"

    def committed(self, key: SliceKey) -> list[SliceKey]:
        """The object on ``key`` is in the labels now: it leaves the objects in progress and the history
        (the labels layer's own undo takes a commit back). Returns the slices it covered."""
        members = self.objects.forget(key)
        self.history.forget(members, keep=getattr(self.running, "action", None))
        return members


__all__ = ["AnnotationSession"]
