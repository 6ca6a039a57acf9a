"""Objects in progress on the slices of one image: clicks, starting masks, propagations, undo.

Every 2D slice has a :class:`SliceObject` (its clicks, redo stack, the mask it starts from, the
latest prediction). A propagation links slices into one :class:`StackObject`: the object then spans
those slices, a commit writes all of them with one label id, and the stack object's ``steps``
(clicks on slices, propagations, in the order they happened) become the click-log record that
replays it (:mod:`.replay`). :class:`ObjectsInProgress` holds them for one image and implements the
operations the widget offers, including taking back a whole propagation in one step.

Nothing here runs a network or touches napari; predictions are stored by the caller.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_fcfi.engine.clicks import Click

from .clicklog import ClicksStep, ObjectRecord, PropagateStep, SliceKey, Step
from .geometry import bounding_slices

_serials = itertools.count(1)


@dataclass
class SliceObject:
    """The object in progress on one slice."""

    key: SliceKey
    clicks: tuple[Click, ...] = ()
    redo: list[Click] = field(default_factory=list)
    initial_mask: np.ndarray | None = None  # the mask the session starts from
    from_propagation: bool = False  # ``initial_mask`` came from a propagation
    from_segment_all: bool = False  # ``initial_mask`` is a segment-all proposal
    edit_label: int | None = None  # editing this existing label: commit replaces it
    serial: int = field(default_factory=lambda: next(_serials))  # a new serial restarts the engine session
    group: int | None = None  # the StackObject this slice belongs to
    # The latest prediction shown (set by the caller): full-plane bool mask and its bounding box.
    mask: np.ndarray | None = None
    mask_box: tuple[slice, slice] | None = None
    probability: Any = None  # the engine's sparse probability behind ``mask`` (re-thresholding)
    commit_pending: bool = False  # commit as soon as the prediction for the current clicks arrives

    @property
    def has_object(self) -> bool:
        """Something would be committed from this slice (clicks, an edit or a propagated mask)."""
        return bool(self.clicks) or self.initial_mask is not None or self.edit_label is not None

    def restart(self, initial_mask: np.ndarray | None = None, from_propagation: bool = False,
                edit_label: int | None = None, from_segment_all: bool = False) -> None:
        """Forget clicks and prediction; start from ``initial_mask`` (or nothing)."""
        self.clicks, self.redo = (), []
        self.initial_mask, self.from_propagation, self.edit_label = initial_mask, from_propagation, edit_label
        self.from_segment_all = from_segment_all
        self.mask = initial_mask
        self.mask_box = bounding_slices(initial_mask)
        self.probability = None
        self.commit_pending = False
        self.serial = next(_serials)

    def clicks_step(self) -> ClicksStep:
        initial = None if self.from_propagation else self.initial_mask
        return ClicksStep(self.key, self.clicks, initial, self.from_propagation,
                          self.from_segment_all and initial is not None)


@dataclass
class PropagationUndo:
    """What a propagation replaced, to take it back in one step."""

    group: int
    steps_before: int
    replaced: dict[SliceKey, SliceObject | None]  # previous slice objects (None: there was none)


@dataclass
class StackObject:
    """An object spanning several slices through propagation; ``steps`` replay it."""

    ident: int
    steps: list[Step] = field(default_factory=list)
    undo: list[PropagationUndo] = field(default_factory=list)


class ObjectsInProgress:
    """The objects in progress on every slice of one image."""

    def __init__(self) -> None:
        self.slices: dict[SliceKey, SliceObject] = {}
        self.groups: dict[int, StackObject] = {}

    def get(self, key: SliceKey, create: bool = True) -> SliceObject | None:
        if key not in self.slices and create:
            self.slices[key] = SliceObject(key)
        return self.slices.get(key)

    # ------------------------------------------------------------------ stack objects
    def members(self, key: SliceKey) -> list[SliceKey]:
        """The slices of the object that ``key`` belongs to (``[key]`` for a single-slice object)."""
        group = self.slices[key].group if key in self.slices else None
        if group is None:
            return [key]
        return sorted(k for k, s in self.slices.items() if s.group == group)

    def begin_propagation(self, start: SliceKey, axis: int, direction: str, max_slices: int | None) -> PropagationUndo:
        """Start a propagation from ``start``: it joins the start slice's object, and the slices of that
        object beyond ``start`` in ``direction`` are dropped from it (the propagation replaces them, as
        replay does). Results arrive through :meth:`add_propagated`; all of it undoes in one step."""
        origin = self.get(start)
        assert origin is not None
        if origin.group is None:
            origin.group = next(_serials)
            self.groups[origin.group] = StackObject(origin.group)
        group = self.groups[origin.group]
        undo = PropagationUndo(origin.group, len(group.steps), {})
        group.steps.append(origin.clicks_step())
        group.steps.append(PropagateStep(start, axis, direction, max_slices))
        for key, member in list(self.slices.items()):
            if member.group == origin.group and key != start and _beyond(key, start, axis, direction):
                undo.replaced[key] = member
                self.slices[key] = SliceObject(key)  # not reached (yet): an empty slice again
        group.undo.append(undo)
        return undo

    def add_propagated(self, undo: PropagationUndo, key: SliceKey, mask: np.ndarray) -> SliceObject:
        """Make the propagated ``mask`` slice ``key``'s object in progress (its starting mask)."""
        if key not in undo.replaced:
            undo.replaced[key] = self.slices.get(key)
        fresh = SliceObject(key)
        fresh.restart(mask, from_propagation=True)
        fresh.group = undo.group
        self.slices[key] = fresh
        return fresh

    def undo_propagation(self, key: SliceKey) -> bool:
        """Take back the last propagation of the object on ``key``; False when there is none."""
        origin = self.slices.get(key)
        if origin is None or origin.group is None or not self.groups[origin.group].undo:
            return False
        group = self.groups[origin.group]
        undo = group.undo.pop()
        del group.steps[undo.steps_before:]
        for slice_key, previous in undo.replaced.items():
            if previous is None:
                self.slices.pop(slice_key, None)
            else:
                self.slices[slice_key] = previous
        if not group.undo and not group.steps:
            for member in self.slices.values():
                if member.group == group.ident:
                    member.group = None
            del self.groups[group.ident]
        return True

    # ------------------------------------------------------------------ commit
    def record_for_commit(self, key: SliceKey, label_id: int, overwrite: bool) -> tuple[ObjectRecord, dict[SliceKey, np.ndarray]]:
        """The click-log record and the masks to paint for the object on ``key``."""
        members = self.members(key)
        origin = self.slices[key]
        group = self.groups.get(origin.group) if origin.group is not None else None
        steps: list[Step] = list(group.steps) if group is not None else []
        masks: dict[SliceKey, np.ndarray] = {}
        for member in members:
            state = self.slices[member]
            if state.clicks or (state.initial_mask is not None and not state.from_propagation):
                steps.append(state.clicks_step())
            if state.mask is not None:
                masks[member] = state.mask
        edit = origin.edit_label is not None
        return ObjectRecord(label_id, steps, edited=edit, overwrite=overwrite), masks

    def forget(self, key: SliceKey) -> list[SliceKey]:
        """Drop the object on ``key`` (after a commit or a reset); returns the slices it covered."""
        members = self.members(key)
        group = self.slices[key].group if key in self.slices else None
        for member in members:
            self.slices[member] = SliceObject(member)
        if group is not None:
            self.groups.pop(group, None)
        return members


def _beyond(key: SliceKey, start: SliceKey, axis: int, direction: str) -> bool:
    same_line = all(k == s for i, (k, s) in enumerate(zip(key, start)) if i != axis)
    if not same_line:
        return False
    return (direction in ("up", "both") and key[axis] > start[axis]) or (
        direction in ("down", "both") and key[axis] < start[axis]
    )
