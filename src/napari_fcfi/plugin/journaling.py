"""Every change to a labels layer the plugin writes into goes to that layer's journal, at once.

A :class:`LabelsRecorder` belongs to one napari labels layer (one per layer, found by the layer's
``unique_id``, so it outlives the dock widget and survives napari's public-only proxies). It writes

* every entry of napari's undo history as it is made: FCFI commits (``Labels.data_setitem``, with
  their label id and clicks) and napari's own brush, eraser, fill and polygon tools: napari emits
  the ``paint`` event with each history item;
* napari's undo and redo of the layer (Ctrl+Z / Ctrl+Shift+Z, bound on the layer; napari emits no
  event for them): the region of the item taken back or redone, as it is afterwards. An FCFI commit
  taken back leaves the layer's click log too (and comes back with its redo), so the saved click
  log replays what is on screen; the recorder's listeners (the dock widget, segment all) hear of
  each undo and redo (:class:`HistoryStep`), since napari tells nobody;
* the layer's click log: each FCFI object with its clicks and steps when it is committed (and the
  objects already in the log when a journal starts), withdrawn and added back with undo and redo, so
  a restore gives back the click log with the labels;
* the whole labels when the layer was not empty when the journal started, or its data were replaced;
* the FCFI commits into a multiscale labels layer (very large planes), which napari does not paint
  and so emits no event for: the committer hands each write to :meth:`LabelsRecorder.record_write`.

So replaying the journal gives the layer bit for bit. A journal belongs to one layer and one run:
a new recorder starts a new journal (:meth:`LabelsJournal.create`), except for a restored layer,
which continues the journal it came from. The layer's metadata names the journal folder (``TAG`` /
``"journal"``): the FCFI writer deletes it after saving, and the recovery offer leaves out journals
of layers on screen. When the journal folder is gone (saved), the next change starts a new one.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.annotation.clicklog import ObjectRecord, record_to_entry
from napari_fcfi.annotation.journal import LabelsJournal, base_record, change_record
from napari_fcfi.annotation.journal_records import object_record

from .layers import TAG, click_log_of, image_data, own_tag, split_copied_tag

UNDO_KEYS = ("Control-Z", "Control-Shift-Z")
Bounds = tuple[tuple[int, int], ...]  # (start, stop) per axis of the labels
MIRROR_LIMIT = 1000  # napari keeps fewer undo steps; a longer mirror only costs a no-op check
_RECORDERS: dict[str, LabelsRecorder] = {}  # labels layer unique_id -> its recorder


@dataclass(frozen=True)
class HistoryStep:
    """napari's undo or redo of a journaled labels layer, as the recorder's listeners hear of it."""

    kind: str  # "undo" or "redo"
    layer_name: str
    withdrawn: tuple[ObjectRecord, ...]  # FCFI objects it took out of the click log
    added: tuple[ObjectRecord, ...]  # ... and put back
    changed: bool = True  # False: napari had nothing (left) to undo or redo

    @property
    def message(self) -> str:
        """The status line: what changed, and how to change it back."""
        if not self.changed:
            return f"FCFI: nothing to {self.kind} in {self.layer_name!r}"
        objects = self.withdrawn or self.added
        back = "Ctrl+Shift+Z redoes it" if self.kind == "undo" else "Ctrl+Z takes it back again"
        if not objects:
            done = "took back" if self.kind == "undo" else "redid"
            return f"FCFI: {self.kind} {done} an edit of {self.layer_name!r}; {back}"
        ids = sorted(record.label_id for record in objects)
        shown = ", ".join(str(i) for i in ids[:6]) + (", ..." if len(ids) > 6 else "")
        label_word = "label" if len(ids) == 1 else "labels"
        if self.withdrawn:
            done = f"withdrew {len(ids)} object(s) ({label_word} {shown}) from"
        else:
            done = f"restored {len(ids)} object(s) ({label_word} {shown}) to"
        return f"FCFI: {self.kind} {done} {self.layer_name!r}; {back}"


HistoryListener = Callable[[HistoryStep], None]


def recorder_of(layer: Any) -> LabelsRecorder | None:
    return _RECORDERS.get(str(layer.unique_id))


def journal_folder_of(layer: Any) -> str | None:
    """The journal folder a layer's metadata names (None when it names none)."""
    metadata = getattr(layer, "metadata", None)
    tag = metadata.get(TAG) if isinstance(metadata, dict) else None
    folder = tag.get("journal") if isinstance(tag, dict) else None
    return str(folder) if folder else None


def recorder_of_journal(folder: str | Path) -> LabelsRecorder | None:
    """The recorder (of a layer of this session) writing the journal in ``folder``, if any."""
    for recorder in _RECORDERS.values():
        if recorder.journal is not None and Path(recorder.journal.folder) == Path(folder):
            return recorder
    return None


def record_layer(
    viewer: Any,
    layer: Any,
    fingerprint: str,
    info: dict[str, Any],
    root: Any = None,
    continue_journal: LabelsJournal | None = None,
) -> LabelsRecorder:
    """The layer's recorder (created and attached on first use; see the module docstring)."""
    recorder = recorder_of(layer)
    if recorder is None:
        recorder = LabelsRecorder(viewer, layer, fingerprint, info, root, continue_journal)
        _RECORDERS[str(layer.unique_id)] = recorder
    return recorder


class LabelsRecorder:
    """Journals one labels layer's changes (see the module docstring)."""

    def __init__(
        self,
        viewer: Any,
        layer: Any,
        fingerprint: str,
        info: dict[str, Any],
        root: Any = None,
        continue_journal: LabelsJournal | None = None,
    ) -> None:
        self.viewer, self.layer = viewer, layer
        self.fingerprint, self.info, self.root = fingerprint, dict(info), root
        self.error: str | None = None
        # Mirror of napari's undo and redo stacks: each item's box and the commit's click-log record.
        self._undo: list[tuple[Bounds, Any]] = []
        self._redo: list[tuple[Bounds, Any]] = []
        self._applied: dict[int, int] = {}  # id(record) -> how many of its commit's items are applied
        self._commit: dict[str, Any] | None = None
        self._record: Any = None  # the click-log record of the commit being written
        self._group: list[Any] | None = None  # records of the commits of one grouped history item
        self._group_written = False  # the group's labels change (and so its objects) is journaled
        self._deferred = False
        # Click-log objects this journal has described: id(record) -> (record, its reference number).
        self._refs: dict[int, tuple[ObjectRecord, int]] = {}
        # Told of each undo/redo (weakly held bound methods: a closed dock widget must not be kept alive).
        self._listeners: list[weakref.WeakMethod] = []
        self.journal: LabelsJournal | None = None
        self._grid = self._current_grid()
        if continue_journal is not None:
            self.journal = continue_journal
            self._set_folder()
            self._guard(lambda: continue_journal.open_log(self._header()))
        else:
            self._start()
        layer.events.paint.connect(self._on_paint)
        layer.events.data.connect(self._on_data)
        layer.events.editable.connect(self._on_editable)
        layer.bind_key(UNDO_KEYS[0], self._undo_key, overwrite=True)
        layer.bind_key(UNDO_KEYS[1], self._redo_key, overwrite=True)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.events.inserted.connect(self._on_inserted)

    # ------------------------------------------------------------------ listeners
    def listen(self, callback: HistoryListener) -> None:
        """Call ``callback`` (a bound method, held weakly) with a :class:`HistoryStep` after each
        undo or redo of the layer that changed it."""
        if not any(ref() == callback for ref in self._listeners):
            self._listeners.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]

    def _tell(self, step: HistoryStep) -> None:
        for ref in list(self._listeners):
            callback = ref()
            if callback is None:
                self._listeners.remove(ref)
                continue
            try:
                callback(step)
            except Exception as error:  # noqa: BLE001 - one listener failing must not silence the others
                warnings.warn(f"FCFI: a listener of {self.layer.name!r} failed: {error}", stacklevel=2)

    # ------------------------------------------------------------------ journal
    def _header(self) -> dict[str, Any]:
        layer, data = self.layer, image_data(self.layer)
        return {
            **self.info,
            "labels_name": layer.name,
            "label_shape": [int(s) for s in data.shape],
            "dtype": str(np.dtype(data.dtype)),
            "scale": [float(s) for s in layer.scale],
            "translate": [float(t) for t in layer.translate],
        }

    def _start(self) -> None:
        """A new journal for the layer, holding its current content when that is not empty."""

        def start() -> None:
            self._grid = self._current_grid()
            self.journal = LabelsJournal.create(self.fingerprint, self._header(), self.root)
            self._set_folder()
            self.journal.open_log()
            data = np.asarray(image_data(self.layer))  # multiscale: the full resolution is the labels
            if data.any():
                self.journal.append(base_record(data))
            self._refs.clear()
            pending = self._group or []  # a group's objects are journaled after its labels change
            for record in click_log_of(self.layer).records:  # the objects made before this journal
                if not any(record is one for one in pending):
                    self.journal.append(self._object_record("add", record, listed=True), sync=False)
            self.journal.sync()

        self._guard(start)

    def _set_folder(self) -> None:
        assert self.journal is not None
        own_tag(self.layer)["journal"] = str(self.journal.folder)

    def _write(self, record: bytes | Callable[[], bytes]) -> None:
        """Append ``record`` (or what ``record()`` makes once the journal exists: object numbers belong
        to the journal they are written to)."""

        def write() -> None:
            if self.journal is None or not self.journal.folder.is_dir():  # saved meanwhile: start afresh
                if self.journal is not None:
                    self.journal.close()
                self._start()
            if self.journal is not None:  # else starting failed, and said so
                data = record() if callable(record) else record
                self.journal.append(data, sync=not self._deferred)

        self._guard(write)

    def _guard(self, action: Any) -> None:
        """Run a journal write; a failure is reported (once per message), never raised into napari."""
        try:
            action()
        except OSError as error:
            message = f"FCFI: the recovery journal of {self.layer.name!r} cannot be written ({error}); save your labels"
            if message != self.error:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.error = message

    @property
    def folder(self) -> str | None:
        return None if self.journal is None else str(self.journal.folder)

    @contextmanager
    def commit(
        self, label_id: int, clicks: list[tuple[int, int, bool]], record: Any = None
    ) -> Iterator[None]:
        """Writes inside are one FCFI commit: journaled with its label id and clicks, synced once at the
        end; ``record`` (its click-log entry) leaves the click log when napari's undo takes it back."""
        self._commit, self._deferred = {"label_id": int(label_id), "clicks": list(clicks)}, True
        self._record = record
        grouped = self._group is not None
        if grouped and record is not None:
            self._group.append(record)  # type: ignore[union-attr]
        try:
            yield
            if record is not None and not grouped:  # synced with the commit's writes
                self._write(lambda: self._object_record("add", record))
        finally:
            self._commit, self._deferred, self._record = None, False, None
            self._guard(lambda: self.journal.sync() if self.journal is not None else None)

    def adopt(self, refs: dict[int, ObjectRecord]) -> None:
        """Continue a restored journal: ``refs`` are its objects (now in the layer's click log) by number."""
        self._refs = {id(record): (record, ref) for ref, record in refs.items()}

    @property
    def can_undo(self) -> bool:
        """napari's undo on the layer has an item this recorder saw made (this session, this layer)."""
        return bool(self._undo)

    def _object_record(self, op: str, record: ObjectRecord, listed: bool = False) -> bytes:
        """The journal record of a click-log change (the object's description the first time;
        ``listed``: an object made before this journal started)."""
        known = self._refs.get(id(record))
        if known is not None:
            return object_record(op, known[1])
        ref = max((r for _, r in self._refs.values()), default=-1) + 1
        self._refs[id(record)] = (record, ref)
        return object_record(op, ref, record_to_entry(record, ref), listed=listed)

    @contextmanager
    def group(self) -> Iterator[None]:
        """Commits inside are one item of napari's undo history (the caller blocks its history around
        them): that item carries all their click-log records, so one undo withdraws them all."""
        self._group, self._group_written = [], False
        try:
            yield
        finally:
            records, written = self._group, self._group_written
            self._group = None
            if records and not written:  # no pixel changed: the objects still joined the click log
                for record in records:
                    self._write(lambda record=record: self._object_record("add", record))

    def record_write(self, key: tuple[int, ...], region: tuple[slice, slice], values: np.ndarray) -> None:
        """Journal a write napari does not see (multiscale labels): ``values`` now stand at ``region`` of
        slice ``key``; inside :meth:`commit`, as part of that commit."""
        rows, cols = region
        box = (
            *((k, k + 1) for k in key),
            (int(rows.start), int(rows.stop)),
            (int(cols.start), int(cols.stop)),
        )
        values = np.asarray(values).reshape((1,) * len(key) + np.shape(values))
        extra = self._commit or {}
        self._write(change_record("commit" if self._commit else "paint", box, values, **extra))

    # ------------------------------------------------------------------ napari events
    def _on_paint(self, event: Any) -> None:
        data = image_data(self.layer)
        change = history_item_change(event.value, data.shape, data.dtype)
        if change is None:
            return
        box, values, changed = change
        grouped = self._group is not None
        record = (
            (tuple(self._group) or None)
            if self._group is not None
            else (self._record if self._commit else None)
        )
        for one in _records(record):
            self._applied[id(one)] = self._applied.get(id(one), 0) + 1
        self._undo = (self._undo + [(box, record)])[-MIRROR_LIMIT:]
        self._redo.clear()
        extra = self._commit or {}
        kind = "commit" if self._commit or grouped else "paint"
        self._write(change_record(kind, box, values, changed, **extra))
        if grouped and not self._group_written:  # the group's objects, after the labels they made
            self._group_written = True
            for one in _records(record):
                self._write(lambda one=one: self._object_record("add", one))

    def _on_data(self, event: Any = None) -> None:
        """The layer's data were replaced: journal them whole (a new journal when the grid changed)."""
        self._forget_history()
        if self._grid != self._current_grid():
            if self.journal is not None:
                self.journal.close()
            self._start()
            return
        self._write(base_record(np.asarray(image_data(self.layer))))

    def _current_grid(self) -> tuple[Any, ...]:
        data = image_data(self.layer)
        return tuple(data.shape), str(np.dtype(data.dtype))

    def _on_editable(self, event: Any = None) -> None:
        if not self.layer.editable:  # napari resets its undo history then
            self._forget_history()

    def _forget_history(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._applied.clear()

    def undo(self) -> None:
        """napari's undo of the layer, journaled (what its Ctrl+Z does; other layers forward to it)."""
        self._replay(self.layer.undo, self._undo, self._redo, "undo")

    def redo(self) -> None:
        """napari's redo of the layer, journaled (Ctrl+Shift+Z)."""
        self._replay(self.layer.redo, self._redo, self._undo, "redo")

    def next_records(self, kind: str) -> tuple[ObjectRecord, ...]:
        """The FCFI objects the next ``"undo"`` (or ``"redo"``) would withdraw (or add back)."""
        stack = self._undo if kind == "undo" else self._redo
        return _records(stack[-1][1]) if stack else ()

    def _undo_key(self, layer: Any) -> None:
        self.undo()

    def _redo_key(self, layer: Any) -> None:
        self.redo()

    def _replay(self, action: Any, source: list[Any], target: list[Any], kind: str) -> None:
        """Run napari's undo/redo, journal the region it changed (as it is afterwards) and tell the
        listeners."""
        data = image_data(self.layer)
        withdrawn: list[ObjectRecord] = []
        added: list[ObjectRecord] = []
        if source:
            box, record = source[-1]
            region = tuple(slice(a, b) for a, b in box)
            before = np.array(data[region])
            action()
            after = np.array(image_data(self.layer)[region])
            if np.array_equal(before, after):  # napari had nothing (left) to take back
                self._tell(HistoryStep(kind, str(self.layer.name), (), (), changed=False))
                return
            target.append(source.pop())
            self._write(change_record(kind, box, after))
            for one in _records(record):
                change = self._follow_in_click_log(one, -1 if kind == "undo" else 1)
                if change < 0:
                    withdrawn.append(one)
                elif change > 0:
                    added.append(one)
        else:
            # An undo step made before the journal started: find what changed by comparing.
            before = np.array(data)
            action()
            after = np.asarray(image_data(self.layer))
            changed = before != after
            if not changed.any():
                self._tell(HistoryStep(kind, str(self.layer.name), (), (), changed=False))
                return
            box = tuple((int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(changed))
            region = tuple(slice(a, b) for a, b in box)
            self._write(change_record(kind, box, after[region], changed[region]))
        self._tell(HistoryStep(kind, str(self.layer.name), tuple(withdrawn), tuple(added)))

    def _follow_in_click_log(self, record: Any, change: int) -> int:
        """A commit is in the click log while any of its items (one per slice) is applied; returns -1
        when the record left the log, 1 when it came back, else 0."""
        applied = self._applied.get(id(record), 0)
        now = max(applied + change, 0)
        self._applied[id(record)] = now
        log = click_log_of(self.layer)
        if applied and not now:
            log.withdraw(record)
            self._write(lambda: self._object_record("withdraw", record))
            return -1
        if now and not applied and not any(held is record for held in log.records):
            log.add(record)
            self._write(lambda: self._object_record("add", record))
            return 1
        return 0

    def _on_inserted(self, event: Any) -> None:
        """A layer napari duplicated from this one holds this layer's FCFI dict (a shallow copy of the
        metadata): it gets its own at once (:func:`.layers.split_copied_tag`; the dock's controller does
        the same for every layer, this covers a closed dock)."""
        split_copied_tag(event.value, self.viewer.layers)

    def _on_removed(self, event: Any) -> None:
        if str(getattr(event.value, "unique_id", "")) == str(self.layer.unique_id):
            self.detach()

    def detach(self) -> None:
        """Stop journaling (the layer left the viewer); the journal stays on disk for recovery."""
        _RECORDERS.pop(str(self.layer.unique_id), None)
        for emitter, callback in (
            (self.layer.events.paint, self._on_paint),
            (self.layer.events.data, self._on_data),
            (self.layer.events.editable, self._on_editable),
            (self.viewer.layers.events.removed, self._on_removed),
            (self.viewer.layers.events.inserted, self._on_inserted),
        ):
            emitter.disconnect(callback)
        for key in UNDO_KEYS:
            self.layer.bind_key(key, None)
        if self.journal is not None:
            self.journal.close()


def _records(record: Any) -> tuple[Any, ...]:
    """The click-log records of one undo item: none, one commit's, or a group's (a tuple)."""
    if record is None:
        return ()
    return record if isinstance(record, tuple) else (record,)


def history_item_change(
    item: Any, shape: tuple[int, ...], dtype: Any
) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """One napari undo-history item (a list of atoms applied in order) as ``(box, values, changed)``.

    An atom is napari's masked paint atom (``slice_key``, ``mask``, ``new_value``: brush, fill,
    polygon) or the ``(indices, old values, new values)`` triple of ``Labels.data_setitem``.
    """
    parts = []
    for atom in item:
        if hasattr(atom, "slice_key") and hasattr(atom, "new_value"):
            box = tuple(
                (int(s.start or 0), int(n if s.stop is None else s.stop))
                for s, n in zip(atom.slice_key, shape)
            )
            parts.append((box, "mask", atom.mask, atom.new_value))
        else:
            indices, _old, new = atom
            indices = tuple(np.asarray(i).ravel() for i in indices)
            if not indices or indices[0].size == 0:
                continue
            box = tuple((int(i.min()), int(i.max()) + 1) for i in indices)
            parts.append((box, "points", indices, new))
    if not parts:
        return None
    union = tuple((min(p[0][d][0] for p in parts), max(p[0][d][1] for p in parts)) for d in range(len(shape)))
    size = tuple(b - a for a, b in union)
    values = np.zeros(size, dtype=dtype)
    changed = np.zeros(size, dtype=bool)
    for box, kind, where, new in parts:
        if kind == "mask":
            local = tuple(slice(a - u, b - u) for (a, b), (u, _) in zip(box, union))
            mask = np.ones(values[local].shape, bool) if where is None else np.asarray(where, bool)
            values[local][mask] = new if np.ndim(new) == 0 else np.asarray(new)[mask]
            changed[local] |= mask
        else:
            local_points = tuple(i - u for i, (u, _) in zip(where, union))
            values[local_points] = new
            changed[local_points] = True
    return union, values, changed


__all__ = [
    "HistoryListener",
    "HistoryStep",
    "LabelsRecorder",
    "history_item_change",
    "journal_folder_of",
    "record_layer",
    "recorder_of",
    "recorder_of_journal",
]
