"""Objects in progress on the slices of one image: clicks, starting masks, propagations.

Every 2D slice has a :class:`SliceObject` (its clicks, the mask it starts from, the latest
prediction). A propagation links slices into one :class:`StackObject`: the object then spans
those slices, a commit writes all of them with one label id, and the stack object's ``steps``
(clicks on slices, propagations, in the order they happened) become the click-log record that
replays it (:mod:`.replay`). :class:`ObjectsInProgress` holds them for one image and implements the
operations the widget offers; undo and redo of all of them are one list, :mod:`.history`.

Nothing here runs a network or touches napari; predictions are stored by the caller.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

import numpy as np

from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.windows import Box, bbox_of_mask

from .clicklog import ClicksStep, FillStep, ObjectRecord, PropagateStep, SliceKey, Step
from .geometry import describe_slices

_serials = itertools.count(1)


@dataclass
class SliceObject:
    """The object in progress on one slice."""

    key: SliceKey
    clicks: tuple[Click, ...] = ()
    initial_mask: np.ndarray | None = None  # the mask the session starts from
    from_propagation: bool = False  # ``initial_mask`` came from a propagation
    from_segment_all: bool = False  # ``initial_mask`` is a segment-all proposal
    proposal: Any = None  # the caller's token of the proposal being corrected (its undo gives it back)
    edit_label: int | None = None  # editing this existing label: commit replaces it
    serial: int = field(default_factory=lambda: next(_serials))  # a new serial restarts the engine session
    group: int | None = None  # the StackObject this slice belongs to
    # The latest prediction shown (set by the caller): full-plane bool mask and its bounding box.
    mask: np.ndarray | None = None
    mask_box: Box | None = None
    probability: Any = None  # the engine's sparse probability behind ``mask`` (re-thresholding)
    commit_pending: bool = False  # commit as soon as the prediction for the current clicks arrives

    @property
    def has_object(self) -> bool:
        """Something would be committed from this slice (clicks, an edit or a propagated mask)."""
        return bool(self.clicks) or self.initial_mask is not None or self.edit_label is not None

    def restart(
        self,
        initial_mask: np.ndarray | None = None,
        from_propagation: bool = False,
        edit_label: int | None = None,
        from_segment_all: bool = False,
    ) -> None:
        """Forget clicks and prediction; start from ``initial_mask`` (or nothing)."""
        self.clicks = ()
        self.initial_mask, self.from_propagation, self.edit_label = initial_mask, from_propagation, edit_label
        self.from_segment_all, self.proposal = from_segment_all, None
        self.mask = initial_mask
        self.mask_box = None if initial_mask is None else bbox_of_mask(initial_mask)
        self.probability = None
        self.commit_pending = False
        self.serial = next(_serials)

    def clicks_step(self) -> ClicksStep:
        initial = None if self.from_propagation else self.initial_mask
        return ClicksStep(
            self.key,
            self.clicks,
            initial,
            self.from_propagation,
            from_segment_all=self.from_segment_all and initial is not None,
        )


@dataclass
class PropagationUndo:
    """What a running propagation replaced (the slices whose clicks leave the clicks layer)."""

    group: int
    replaced: dict[SliceKey, SliceObject | None]  # previous slice objects (None: there was none)
    merged: StackObject | None = None  # a fill joined this other stack object into the group


@dataclass
class StackObject:
    """An object spanning several slices through propagation; ``steps`` replay it."""

    ident: int
    steps: list[Step] = field(default_factory=list)


class ObjectsInProgress:
    """The objects in progress on every slice of one image."""

    def __init__(self) -> None:
        self.slices: dict[SliceKey, SliceObject] = {}
        self.groups: dict[int, StackObject] = {}

    @overload
    def get(self, key: SliceKey, create: Literal[True] = True) -> SliceObject: ...

    @overload
    def get(self, key: SliceKey, create: bool) -> SliceObject | None: ...

    def get(self, key: SliceKey, create: bool = True) -> SliceObject | None:
        """Slice ``key``'s object (a new empty one with ``create``; else None when there is none)."""
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

    def begin_propagation(
        self,
        start: SliceKey,
        axis: int,
        direction: str,
        max_slices: int | None,
        through: int = 0,
        threshold: float | None = None,
    ) -> PropagationUndo:
        """Start a propagation from ``start``: it joins the start slice's object, and the slices of that
        object beyond ``start`` in ``direction`` are dropped from it (the propagation replaces them, as
        replay does). Results arrive through :meth:`add_propagated`."""
        origin = self.get(start)
        assert origin is not None
        if origin.group is None:
            origin.group = next(_serials)
            self.groups[origin.group] = StackObject(origin.group)
        group = self.groups[origin.group]
        undo = PropagationUndo(origin.group, {})
        # The start mask and the propagated ones are made at ``threshold`` (recorded for an exact replay).
        group.steps.append(replace(origin.clicks_step(), threshold=threshold))
        group.steps.append(
            PropagateStep(start, axis, direction, max_slices, through=through, threshold=threshold)
        )
        for key, member in list(self.slices.items()):
            if member.group == origin.group and key != start and _beyond(key, start, axis, direction):
                undo.replaced[key] = member
                self.slices[key] = SliceObject(key)  # not reached (yet): an empty slice again
        return undo

    def begin_fill(
        self, key_a: SliceKey, key_b: SliceKey, axis: int, threshold: float | None = None
    ) -> PropagationUndo:
        """Start filling the slices between ``key_a`` and ``key_b``: both join one object (``key_b``'s
        stack object, if it has another one, is merged in), the slices between are emptied (the fill
        replaces them). Results arrive through :meth:`add_propagated`. The caller records it as one
        action of the image's history (:mod:`.history`) before calling this, touching both ends' objects
        and the slices between."""
        origin, other = self.get(key_a), self.get(key_b)
        assert origin is not None and other is not None
        if origin.group is None:
            origin.group = next(_serials)
            self.groups[origin.group] = StackObject(origin.group)
        group = self.groups[origin.group]
        undo = PropagationUndo(origin.group, {})
        if other.group is not None and other.group != origin.group:
            undo.merged = self.groups.pop(other.group)
            group.steps.extend(undo.merged.steps)
            for key, member in list(self.slices.items()):
                if member.group == undo.merged.ident:
                    undo.replaced[key] = member
                    joined = copy.copy(member)
                    joined.group = origin.group
                    self.slices[key] = joined
        elif other.group is None:
            undo.replaced[key_b] = other
            joined = copy.copy(other)
            joined.group = origin.group
            self.slices[key_b] = joined
        # The two end masks and the filled ones are made at ``threshold`` (recorded for an exact replay).
        group.steps.append(replace(origin.clicks_step(), threshold=threshold))
        group.steps.append(replace(self.slices[key_b].clicks_step(), threshold=threshold))
        group.steps.append(FillStep(key_a, key_b, axis, threshold))
        low, high = sorted((key_a[axis], key_b[axis]))
        for key in list(self.slices):
            same_line = all(k == s for i, (k, s) in enumerate(zip(key, key_a)) if i != axis)
            if same_line and low < key[axis] < high:
                undo.replaced.setdefault(key, self.slices[key])
                self.slices[key] = SliceObject(key)
        return undo

    def start_from_masks(self, masks: dict[SliceKey, np.ndarray]) -> SliceObject:
        """One object in progress over the slices of ``masks`` (segment-all proposals linked across
        slices), each slice starting from its mask; Commit writes them all with one label id. The
        slices must have no object in progress. Returns the first slice's object."""
        keys = sorted(masks)
        busy = [key for key in keys if self.get(key).has_object]
        if not keys or busy:
            raise ValueError(f"{describe_slices(busy)}: an object in progress" if busy else "no masks given")
        group = None
        if len(keys) > 1:
            group = next(_serials)
            self.groups[group] = StackObject(group)
        for key in keys:
            obj = self.slices[key]
            obj.restart(masks[key], from_segment_all=True)
            obj.group = group
        return self.slices[keys[0]]

    def add_propagated(self, undo: PropagationUndo, key: SliceKey, mask: np.ndarray) -> SliceObject:
        """Make the propagated ``mask`` slice ``key``'s object in progress (its starting mask)."""
        if key not in undo.replaced:
            undo.replaced[key] = self.slices.get(key)
        fresh = SliceObject(key)
        fresh.restart(mask, from_propagation=True)
        fresh.group = undo.group
        self.slices[key] = fresh
        return fresh

    # ------------------------------------------------------------------ commit
    def record_for_commit(
        self, key: SliceKey, label_id: int, overwrite: bool
    ) -> tuple[ObjectRecord, dict[SliceKey, np.ndarray]]:
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


def cut_propagation_step(steps: list[Step], reached: dict[str, int | None]) -> None:
    """A propagation (the last of a stack object's ``steps``) was cancelled: its step is replaced by one
    step per direction that ran, limited to the slices it reached (``{"up"|"down": slices, or None when
    that direction ended by itself}``), so that replaying the click log gives exactly what the user kept."""
    step = steps[-1]
    if not isinstance(step, PropagateStep):
        raise ValueError(f"the object's last step is a {type(step).__name__}, not the propagation to cut")
    steps[-1:] = [
        replace(step, direction=direction, max_slices=step.max_slices if count is None else count)
        for direction, count in reached.items()
        if count != 0
    ]


def cut_fill_step(steps: list[Step], placed: list[int], passes: int | None = None) -> None:
    """A fill (the last of a stack object's ``steps``) was cancelled, or left slices the user changed
    meanwhile: its step keeps only the slice indices it ``placed``; ``passes``: the network passes it
    had begun when cancelled (it then placed its unfinished slices from one chain, which replay repeats
    by stopping there)."""
    step = steps[-1]
    if not isinstance(step, FillStep):
        raise ValueError(f"the object's last step is a {type(step).__name__}, not the fill to cut")
    steps[-1] = replace(step, kept=tuple(sorted(placed)), passes=passes)


def _beyond(key: SliceKey, start: SliceKey, axis: int, direction: str) -> bool:
    same_line = all(k == s for i, (k, s) in enumerate(zip(key, start)) if i != axis)
    if not same_line:
        return False
    return (direction in ("up", "both") and key[axis] > start[axis]) or (
        direction in ("down", "both") and key[axis] < start[axis]
    )
