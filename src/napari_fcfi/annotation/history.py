"""One action history per image: every change of the objects in progress, undone and redone in order.

An action (the clicks of a slice changed, a propagation, a reset, an edit started; fills and
segment-all steps can join the same way) records the slice objects and stack objects it touches as
they were before it. Undo puts those back and keeps what they were just before the undo, so redo
puts that back again: one list of states, as RITM keeps one, instead of a redo stack per slice and
an undo stack per propagation. A long action (a propagation reaching slices one by one) adds the
slices it reaches with :meth:`ActionHistory.touch` before changing them.

Nothing here touches napari: the caller brings the clicks layer and the preview in step with the
slices an undo or redo changed (:attr:`Action.keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .geometry import SliceKey, describe_slices
from .objects import ObjectsInProgress, SliceObject, StackObject


@dataclass
class Action:
    """One change of the objects in progress: what it touched, as it was before (and after, once undone)."""

    name: str  # "click", "propagation", "reset", "edit", ...
    before: dict[SliceKey, SliceObject | None] = field(default_factory=dict)
    groups_before: dict[int, StackObject] = field(default_factory=dict)
    after: dict[SliceKey, SliceObject | None] = field(default_factory=dict)
    groups_after: dict[int, StackObject] = field(default_factory=dict)
    proposal: Any = None  # a "proposal correction": the caller's token of the proposal it took up

    @property
    def keys(self) -> list[SliceKey]:
        """The slices the action changed, in order."""
        return sorted(set(self.before) | set(self.after))

    def where(self, on_screen: SliceKey | None) -> str:
        """ " on slice k" when the action changed no slice on screen (a stack's other slice), else ""."""
        keys = self.keys
        if not keys or on_screen in keys or not keys[0]:
            return ""
        return f" on {describe_slices(keys)}" if len(keys) == 1 else f" on {len(keys)} slices"


class ActionHistory:
    """The undo and redo lists of one image's :class:`ObjectsInProgress`."""

    def __init__(self, objects: ObjectsInProgress) -> None:
        self.objects = objects
        self.done: list[Action] = []
        self.undone: list[Action] = []
        # A clock of changes per slice: a background run asks whether a slice changed since it began
        # (the user corrected or committed a slice ahead of a propagation: the run must not replace it).
        self.clock = 0
        self.changed_at: dict[SliceKey, int] = {}

    def begin(self, name: str, keys: Iterable[SliceKey]) -> Action:
        """Record a new action about to change ``keys`` (call before changing them); clears redo."""
        action = Action(name)
        self.touch(action, keys)
        self.done.append(action)
        self.undone.clear()
        return action

    def changed_since(self, key: SliceKey, clock: int) -> bool:
        """Whether an action, an undo or redo, or a commit changed slice ``key`` after ``clock``
        (a value of :attr:`clock`)."""
        return self.changed_at.get(key, 0) > clock

    def mark_changed(self, keys: Iterable[SliceKey]) -> None:
        """The user changed ``keys`` outside an action (a segment-all proposal taken up for correction):
        a run going on leaves them as they are."""
        self._mark(keys)

    def _mark(self, keys: Iterable[SliceKey]) -> None:
        self.clock += 1
        for key in keys:
            self.changed_at[key] = self.clock

    def touch(self, action: Action, keys: Iterable[SliceKey]) -> None:
        """``action`` is about to change ``keys`` too (their state now is what undo puts back)."""
        keys = list(keys)
        self._mark(keys)
        for key in keys:
            if key not in action.before:
                action.before[key] = _copy(self.objects.slices.get(key))
                self._keep_groups(action.groups_before, [key])

    def undo(self) -> Action | None:
        """Take back the latest action; returns it (None when there is nothing to undo)."""
        if not self.done:
            return None
        action = self.done.pop()
        keys = action.keys
        self._mark(keys)
        action.after = {key: _copy(self.objects.slices.get(key)) for key in keys}
        action.groups_after = {}
        self._keep_groups(action.groups_after, keys)
        self._restore(action.before, action.groups_before, action.groups_after)
        self.undone.append(action)
        return action

    def redo(self) -> Action | None:
        """Do the latest undone action again; returns it (None when there is nothing to redo)."""
        if not self.undone:
            return None
        action = self.undone.pop()
        self._mark(action.keys)
        self._restore(action.after, action.groups_after, action.groups_before)
        self.done.append(action)
        return action

    def forget(self, keys: Iterable[SliceKey], keep: Action | None = None) -> None:
        """Drop the actions that touched ``keys`` (their objects were committed: the labels layer's own
        undo takes a commit back), except ``keep``: a propagation or fill still running, which touched a
        slice ahead of it where the user committed another object (its undo puts back what it replaced)."""
        gone = set(keys)
        self._mark(gone)
        self.done = [a for a in self.done if a is keep or gone.isdisjoint(a.keys)]
        self.undone = [a for a in self.undone if a is keep or gone.isdisjoint(a.keys)]

    def forget_where(self, gone: Callable[[Action], bool]) -> None:
        """Drop the actions ``gone`` says yes to (from both lists)."""
        self.done = [a for a in self.done if not gone(a)]
        self.undone = [a for a in self.undone if not gone(a)]

    # ------------------------------------------------------------------ internals
    def _keep_groups(self, into: dict[int, StackObject], keys: Iterable[SliceKey]) -> None:
        for key in keys:
            member = self.objects.slices.get(key)
            group = None if member is None else member.group
            if group is not None and group not in into and group in self.objects.groups:
                stack = self.objects.groups[group]
                into[group] = StackObject(stack.ident, list(stack.steps))

    def _restore(
        self,
        slices: dict[SliceKey, SliceObject | None],
        groups: dict[int, StackObject],
        other_groups: dict[int, StackObject],
    ) -> None:
        for key, saved in slices.items():
            if saved is None:
                self.objects.slices.pop(key, None)
            else:
                self.objects.slices[key] = _copy_of(saved)
        for ident in set(groups) | set(other_groups):
            if ident in groups:
                self.objects.groups[ident] = StackObject(ident, list(groups[ident].steps))
            else:
                self.objects.groups.pop(ident, None)  # made by the action being taken back


def _copy(obj: SliceObject | None) -> SliceObject | None:
    """A copy that later changes of the live object cannot reach (arrays are replaced, never edited).

    The prediction of an object with clicks is left out: it is recomputed from the clicks when the copy
    comes back (the engine session undoes clicks cheaply), while keeping one full-plane mask per action
    would cost 400 MB per click on a 20000² image. Objects without clicks keep their mask, which is
    their starting mask (a propagated slice comes back without a network run).
    """
    if obj is None:
        return None
    return _copy_of(obj)


def _copy_of(obj: SliceObject) -> SliceObject:
    """:func:`_copy` of an object that exists."""
    if obj.clicks:
        return replace(obj, commit_pending=False, mask=None, mask_box=None, probability=None)
    return replace(obj, commit_pending=False)
