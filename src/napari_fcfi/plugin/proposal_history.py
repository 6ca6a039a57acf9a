"""What the user did with segment-all proposals, so that undo brings them back.

Accepting a proposal commits it into the user's labels and drops it from the proposals layer;
deleting drops it. A user who undoes wants the proposals again, to decide differently, not an empty
proposals layer. :class:`ProposalHistory` remembers each accepted or deleted proposal's pixels
(cropped to its box, per slice) and

* hears of the labels layer's undo and redo (the controller forwards them): napari's undo (Ctrl+Z
  on the labels layer) of an acceptance, or of the commit of a corrected proposal, paints the
  proposals back where the proposals layer is empty (with their old ids when those are
  free); its redo drops them again, and any proposal lying mostly on a re-committed object (a later
  Segment all may have proposed it again);
* gives the proposals layer its own Ctrl+Z / Ctrl+Shift+Z (:meth:`undo`, :meth:`redo`): the last
  Delete comes back (or goes again), the last Accept or Accept all is handed to the labels layer's
  undo when that is what it would take back (otherwise the status says where to undo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_fcfi.annotation.clicklog import ClicksStep, ObjectRecord
from napari_fcfi.annotation.geometry import SliceKey
from napari_fcfi.engine.windows import bbox_of_mask

from .journaling import HistoryStep, LabelsRecorder, recorder_of
from .layers import click_log_of, image_data

Region = tuple[slice, slice]
HISTORY_LIMIT = 100  # proposal actions kept for Ctrl+Z on the proposals layer


@dataclass(eq=False)
class _Taken:
    """One proposal taken out of the proposals layer (accepted: ``record`` is its commit)."""

    record: ObjectRecord | None
    layer: Any  # the proposals layer it came from
    label: int  # its id there (a new one when the old id was taken meanwhile)
    parts: dict[SliceKey, tuple[Region, np.ndarray]]  # per slice: its box and its mask in the box
    shown: bool = False  # (a corrected one) put back in its layer while its object in progress is gone
    token: Any = None  # (a corrected one) its CorrectedProposal


class CorrectedProposal:
    """The token a corrected proposal's object in progress carries on its slices
    (:meth:`~napari_fcfi.annotation.session.AnnotationSession.correct_proposal`): an undo, redo or reset
    that takes that object away or brings it back tells it, through :meth:`follow`."""

    def __init__(self, history: ProposalHistory, taken: _Taken) -> None:
        self.history, self.taken = history, taken

    def follow(self, object_exists: bool) -> str | None:
        """The proposal is back in its layer while its object in progress is gone, and leaves it again
        when the object comes back; returns what to add to the status (None: nothing changed)."""
        return self.history.follow_correction(self.taken, object_exists)


@dataclass
class _Action:
    kind: str  # "accept" or "delete"
    taken: list[_Taken]


class ProposalHistory:
    """Accepted and deleted proposals that undo brings back (see the module docstring)."""

    def __init__(self, viewer: Callable[[], Any], on_status: Callable[[str], None]) -> None:
        self.viewer = viewer  # the viewer of the proposals layers (asked each time: a widget's may change)
        self.on_status = on_status
        self._accepted: dict[int, _Taken] = {}  # id(record) -> the proposal it was made from
        self._undo: list[_Action] = []
        self._redo: list[_Action] = []
        self._corrected: list[_Taken] = []  # corrected proposals whose commit has not been undone yet
        # Proposals that left because the user committed the same object with clicks: id(record) -> them.
        self._covered: dict[int, list[_Taken]] = {}
        self._seen: set[int] = set()  # the click-log records :meth:`follow_commits` has looked at

    # ------------------------------------------------------------------ recording
    def accepted(self, labels: Any, accepted: list[tuple[ObjectRecord, Any, int, dict]]) -> None:
        """Proposals were committed into ``labels`` as one action: ``(record, proposals layer,
        proposal id, masks (slice -> full-plane bool))`` each."""
        taken = [_Taken(record, layer, int(label), _crop(masks)) for record, layer, label, masks in accepted]
        if not taken:
            return
        for one in taken:
            self._accepted[id(one.record)] = one
        self._push(_Action("accept", taken))

    def corrected(self, layer: Any, label: int, masks: dict) -> CorrectedProposal:
        """Proposal ``label`` became the object in progress (Correct): when its commit is undone, it
        comes back like an accepted one (recognised by its starting masks in the commit's record); the
        returned token, on the object's slices, brings it back when an undo or reset takes the object."""
        taken = _Taken(None, layer, int(label), _crop(masks))
        taken.token = CorrectedProposal(self, taken)
        self._corrected = [*self._corrected[-(HISTORY_LIMIT - 1) :], taken]
        return taken.token

    def given_back(self, layer: Any, label: int) -> CorrectedProposal | None:
        """The token of proposal ``label`` of ``layer`` when it is a corrected one given back (undone or
        reset), else None."""
        found = [one for one in self._corrected if one.shown and one.layer is layer and one.label == label]
        return found[-1].token if found else None

    def accepted_as_it_is(self, token: CorrectedProposal | None) -> None:
        """A given-back corrected proposal was accepted: its correction is over."""
        self._corrected = [one for one in self._corrected if one.token is not token]

    def follow_correction(self, taken: _Taken, object_exists: bool) -> str | None:
        """See :meth:`CorrectedProposal.follow`."""
        if not any(one is taken for one in self._corrected) or not self._live(taken):
            return None  # committed meanwhile (its commit's undo brings it back), or its layer is gone
        name = taken.layer.name
        if object_exists and taken.shown:
            taken.shown = False
            if self._drop(taken):
                taken.layer.refresh()
                return f"proposal {taken.label} left {name!r} again"
            return None
        if not object_exists and not taken.shown:
            taken.shown = bool(self._put_back_all([taken]))
            if taken.shown:
                return f"proposal {taken.label} is back in {name!r} (C corrects it again, D deletes it)"
            return f"proposal {taken.label} did not come back: a newer proposal lies there"
        return None

    def deleted(self, layer: Any, label: int, masks: dict) -> None:
        self._push(_Action("delete", [_Taken(None, layer, int(label), _crop(masks))]))

    def _push(self, action: _Action) -> None:
        self._undo = [*self._undo[-(HISTORY_LIMIT - 1) :], action]
        self._redo.clear()

    def follow_commits(self, labels: Any, layer: Any, since_now: bool = False) -> int:
        """Proposals of ``layer`` lying mostly on an object committed into ``labels`` since the last call
        by clicks (not from a proposal) leave the layer: the user made that object themselves. The
        commit's undo brings them back, its redo drops them again. ``since_now``: only note the records
        there are (a new Segment all run). Returns how many left."""
        records = click_log_of(labels).records
        new = [record for record in records if id(record) not in self._seen]
        self._seen = {id(record) for record in records}
        if since_now:
            return 0
        gone = 0
        for record in new:
            if any(isinstance(step, ClicksStep) and step.from_segment_all for step in record.steps):
                continue  # an accepted or corrected proposal: followed as such
            taken = self._lying_on(labels, layer, record)
            for one in taken:
                gone += self._drop(one)
            if taken:
                self._covered[id(record)] = taken
                layer.refresh()
        return gone

    def _lying_on(self, labels: Any, layer: Any, record: ObjectRecord) -> list[_Taken]:
        """The proposals lying half or more on ``record``'s object, each whole (all its slices)."""
        full = image_data(labels)
        found: set[int] = set()
        for key in record.slice_keys:
            on = np.asarray(full[key] if key else full) == record.label_id
            plane = np.asarray(self._plane(layer, key))
            if on.shape != plane.shape:
                return []
            ids, shares = np.unique(plane[on], return_counts=True)
            found |= {
                p for p, n in zip(ids.tolist(), shares.tolist()) if p and 2 * n >= int((plane == p).sum())
            }
        return [
            _Taken(record, layer, proposal, _crop({key: self._plane(layer, key) == proposal for key in keys}))
            for proposal in sorted(found)
            if (keys := slices_holding(layer.data, proposal))
        ]

    # ------------------------------------------------------------------ Ctrl+Z on the proposals layer
    def undo(self, labels: Any) -> None:
        """Take back the last Delete, or hand the last Accept to the labels layer's undo."""
        self._step("undo", labels)

    def redo(self, labels: Any) -> None:
        """Delete the proposal again, or hand the Accept to the labels layer's redo."""
        self._step("redo", labels)

    def _step(self, kind: str, labels: Any) -> None:
        source, target = (self._undo, self._redo) if kind == "undo" else (self._redo, self._undo)
        if not source:
            self.on_status(_nothing(kind, labels))
            return
        action = source[-1]
        if action.kind == "delete":
            source.pop()
            done, message = self._undelete(action) if kind == "undo" else self._delete_again(action)
            if done:  # (one that cannot come back, or is not there to delete again, leaves the history)
                target.append(action)
            self.on_status(message)
            return
        recorder = _recorder(labels)
        if recorder is None or not _same(recorder.next_records(kind), action.taken):
            self.on_status(_elsewhere(kind, labels))
            return
        # its listeners (this one too, through the controller) move the proposals and say so
        getattr(recorder, kind)()

    def _undelete(self, action: _Action) -> tuple[bool, str]:
        if not self._put_back_all(action.taken):  # its place holds a proposal made since
            return False, "FCFI: undo: the deleted proposal's place holds a newer proposal; left as it is"
        label = action.taken[0].label
        return True, f"FCFI: undo: deleted proposal {label} is back; Ctrl+Shift+Z deletes it again"

    def _delete_again(self, action: _Action) -> tuple[bool, str]:
        dropped = [self._drop(one) for one in action.taken]
        action.taken[0].layer.refresh()
        label = action.taken[0].label
        if not any(dropped):
            return False, f"FCFI: redo: proposal {label} is not there any more; nothing deleted"
        return True, f"FCFI: redo: proposal {label} deleted again; Ctrl+Z brings it back"

    # ------------------------------------------------------------------ napari's undo of the labels
    def on_labels_history(self, step: HistoryStep) -> None:
        """napari undid or redid a change of the labels (the controller forwards every step)."""
        self._recognise_corrected(step.withdrawn)
        covered_back = [one for record in step.withdrawn for one in self._covered.get(id(record), [])]
        covered_again = [one for record in step.added for one in self._covered.get(id(record), [])]
        coming_back = [a for a in [*self._find(step.withdrawn), *covered_back] if self._live(a)]
        leaving = [a for a in [*self._find(step.added), *covered_again] if self._live(a)]
        self._follow(step)
        back = self._put_back_all(coming_back)
        gone = 0
        for taken in leaving:
            gone += self._drop(taken, mostly_on=True)
        for layer in {id(a.layer): a.layer for a in leaving}.values():
            layer.refresh()
        if back:
            self.on_status(f"{step.message}; {back} proposal(s) back in {coming_back[0].layer.name!r}")
        elif gone:
            self.on_status(f"{step.message}; {gone} proposal(s) on them left {leaving[0].layer.name!r}")

    def _follow(self, step: HistoryStep) -> None:
        """Keep the proposals' own undo and redo in step with the labels layer's."""
        source, target, records = (
            (self._undo, self._redo, step.withdrawn)
            if step.kind == "undo"
            else (self._redo, self._undo, step.added)
        )
        if records and source and source[-1].kind == "accept" and _same(records, source[-1].taken):
            target.append(source.pop())

    def _recognise_corrected(self, records: tuple[ObjectRecord, ...]) -> None:
        """Withdrawn commits of corrected proposals: their record's segment-all starting masks are
        the proposal's pixels."""
        for record in records:
            if id(record) in self._accepted:
                continue
            starts = {
                step.slice_key: step.initial_mask
                for step in record.steps
                if isinstance(step, ClicksStep) and step.from_segment_all and step.initial_mask is not None
            }
            for one in self._corrected:
                if (
                    starts
                    and set(starts) == set(one.parts)
                    and all(
                        np.array_equal(np.asarray(starts[key])[region], mask)
                        for key, (region, mask) in one.parts.items()
                    )
                ):
                    one.record = record
                    self._accepted[id(record)] = one
                    self._corrected.remove(one)
                    break

    def _find(self, records: tuple[ObjectRecord, ...]) -> list[_Taken]:
        found = (self._accepted.get(id(record)) for record in records)
        return [a for a, record in zip(found, records) if a is not None and a.record is record]

    def _live(self, taken: _Taken) -> bool:
        return any(layer is taken.layer for layer in self.viewer().layers)

    # ------------------------------------------------------------------ pixels
    @staticmethod
    def _plane(layer: Any, key: SliceKey) -> np.ndarray:
        return layer.data[key] if key else layer.data

    def _put_back_all(self, taken: list[_Taken]) -> int:
        """Paint proposals back where the proposals layer is empty (never over a proposal made since,
        e.g. by another Segment all); returns how many came back."""
        live = [one for one in taken if self._live(one)]
        layers = {id(one.layer): one.layer for one in live}
        back = 0
        for one in live:
            data = np.asarray(one.layer.data)
            if (data == one.label).any():  # its old id went to a proposal made since (no np.unique: a
                one.label = int(data.max()) + 1  # large stack's sort would freeze Esc and Ctrl+Z)
            painted = False
            for key, (region, mask) in one.parts.items():
                window = self._plane(one.layer, key)[region]
                free = mask & (window == 0)
                window[free] = one.label
                painted = painted or bool(free.any())
            if painted:
                back += 1
        for layer in layers.values():
            layer.refresh()
        return back

    def _drop(self, taken: _Taken, mostly_on: bool = False) -> bool:
        """Drop the proposal again (``mostly_on``: and every proposal lying mostly on its pixels);
        True when any went."""
        if not self._live(taken):
            return False
        dropped = False
        for key, (region, mask) in taken.parts.items():
            plane = self._plane(taken.layer, key)
            window = plane[region]
            for proposal in np.unique(window[mask]).tolist():
                if proposal == 0:
                    continue
                if proposal != taken.label:
                    inside = int(((window == proposal) & mask).sum())
                    if not mostly_on or 2 * inside < int((plane == proposal).sum()):
                        continue
                plane[plane == proposal] = 0
                dropped = True
        return dropped


def slices_holding(data: Any, proposal: int) -> list[SliceKey]:
    """The slices of a proposals layer's ``data`` that proposal ``proposal`` lies on (one scan)."""
    data = np.asarray(data)
    if data.ndim == 2:
        return [()] if (data == proposal).any() else []
    present = (data == proposal).any(axis=(-2, -1))
    return [tuple(int(i) for i in index) for index in np.argwhere(present)]


def _crop(masks: dict) -> dict[SliceKey, tuple[Region, np.ndarray]]:
    parts = {}
    for key, mask in masks.items():
        box = bbox_of_mask(mask)
        if box is not None:
            parts[key] = (box.slices, np.array(mask[box.slices]))
    return parts


def _recorder(labels: Any) -> LabelsRecorder | None:
    return None if labels is None else recorder_of(labels)


def _same(records: tuple[ObjectRecord, ...], taken: list[_Taken]) -> bool:
    return {id(r) for r in records} == {id(t.record) for t in taken}


def _nothing(kind: str, labels: Any) -> str:
    where = f"; Ctrl+Z with {labels.name!r} selected takes commits back" if labels is not None else ""
    return f"FCFI: nothing to {kind} in the proposals{where}"


def _elsewhere(kind: str, labels: Any) -> str:
    if labels is None:
        return f"FCFI: nothing to {kind}: the labels layer of these proposals is gone"
    keys = "Ctrl+Z" if kind == "undo" else "Ctrl+Shift+Z"
    return (
        f"FCFI: {labels.name!r} changed since (e.g. a brush stroke); select it and press {keys} there: "
        f"each press {kind}s its last change"
    )


__all__ = ["CorrectedProposal", "ProposalHistory", "slices_holding"]
