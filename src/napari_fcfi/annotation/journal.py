"""Crash recovery: every change to a labels layer is journaled on disk at once and restores bit for bit.

One journal belongs to one labels layer of one run: ``<root>/<image fingerprint>/<journal id>/`` under
``<cache>/recovery`` (``$NAPARI_FCFI_CACHE`` or the user cache, see
:func:`napari_fcfi.model.registry.cache_dir`). The folder holds

* ``journal.json``: the header, written once (format, image and labels names, label shape, dtype,
  scale, translate, creation time);
* ``log-NNN.fcj``: append-only record logs. Each process that writes to the journal opens the next
  number, so appending never lists the folder and never rewrites anything.

A record is ``MAGIC | payload length (u32) | crc32 of the payload (u32) | payload``; the payload is a
JSON description (kind, box, dtype, label id, clicks, time) followed by zlib-compressed arrays. Kinds:
``start`` (a copy of the header), ``base`` (the whole labels, when the layer was not empty when the
journal started or its data were replaced) and the changes ``commit``, ``paint``, ``undo`` and
``redo``: a box, the label values written there and which pixels they changed; ``object`` records
follow the layer's click log (an object added at its commit or redo, with its clicks and steps the
first time; withdrawn at its undo), so a restore gives back the click log as well. Each record is
written and flushed to disk before the call returns, so ``kill -9`` leaves whole records and at most
one cut-off tail.

Reading never trusts the bytes: :meth:`LabelsJournal.scan` checks every record's checksum and
contents; a damaged record, a cut-off tail or a foreign file is skipped with a message naming the
file (and the byte offset), the records after it are still read, and a damaged header falls back to
the ``start`` record and then to what the entries carry. :meth:`LabelsJournal.restore` replays the
intact records onto a fresh array (never onto the user's layer) and raises :class:`JournalError`
when nothing usable is left. Journals of format 1 (``NNNNNN.npz`` files directly in the fingerprint
folder, commits only) are still read and restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .clicklog import ClickLog, ClickLogError, ObjectRecord, record_from_entry
from .journal_records import (
    CHANGE_KINDS,
    Change,
    JournalError,
    JournalWarning,
    ObjectEvent,
    base_record,
    change_record,
    encode_record,
    read_records,
)

FORMAT = "napari-fcfi-labels-journal/2"
FORMAT_V1 = "napari-fcfi-commit-journal/1"
HEADER = "journal.json"
LOG_PREFIX, LOG_SUFFIX = "log-", ".fcj"


#: Environment variable naming the folder journals live in (default ``<cache>/recovery``).
RECOVERY_ENV_VAR = "NAPARI_FCFI_RECOVERY"


def recovery_root() -> Path:
    """Where journals live: ``$NAPARI_FCFI_RECOVERY`` when set, else ``<cache>/recovery``."""
    from napari_fcfi.model.registry import cache_dir

    chosen = os.environ.get(RECOVERY_ENV_VAR)
    return Path(chosen).expanduser() if chosen else cache_dir() / "recovery"


def image_fingerprint(data: Any, name: str = "", source_path: str | None = None) -> str:
    """A stable id of an image across sessions: its path (if any), shape, dtype and sampled pixels.

    Only a few strided slices are read, so lazy stacks are not loaded whole.
    """
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {
                "shape": list(map(int, data.shape)),
                "dtype": str(np.dtype(data.dtype)),
                "path": source_path or "",
            }
        ).encode()
    )
    if not source_path:
        digest.update(name.encode())
    shape = tuple(int(s) for s in data.shape)
    leading = shape[:-2] if len(shape) > 2 else ()
    picks = [tuple(0 for _ in leading)]
    if leading:
        picks += [tuple(n // 2 for n in leading), tuple(n - 1 for n in leading)]
    step_r = max(1, shape[-2] // 128) if len(shape) >= 2 else 1
    step_c = max(1, shape[-1] // 128)
    for pick in picks:
        sample = np.ascontiguousarray(np.asarray(data[pick][..., ::step_r, ::step_c]))
        digest.update(sample.tobytes())
    return digest.hexdigest()[:24]


# ---------------------------------------------------------------------- reading a journal
@dataclass
class JournalScan:
    """What a journal holds: its intact changes in order, the header info and the damage found."""

    info: dict[str, Any]
    changes: list[Change]
    problems: list[str]  # each names the file
    damaged: int  # entries (records or entry files) that could not be read
    objects: list[ObjectEvent] = field(default_factory=list)  # the click log's changes, in order

    def click_log(self, plane_shape: tuple[int, int]) -> tuple[ClickLog, dict[int, ObjectRecord]]:
        """The layer's click log as the journal left it, and each object's reference (to continue it).

        An object whose description is damaged, or a change of one never added, is skipped and named
        in :attr:`problems`; the rest of the log is kept.
        """
        log, known = ClickLog(), dict[int, ObjectRecord]()
        for event in self.objects:
            record = known.get(event.ref)
            if event.op == "add" and event.entry is not None:
                try:
                    record = known[event.ref] = record_from_entry(event.entry, plane_shape, event.where)
                except ClickLogError as error:
                    self.problems.append(f"click-log entry skipped: {error}")
                    continue
            if record is None:
                self.problems.append(f"click-log change skipped: {event.where}: object {event.ref} unknown")
            elif event.op == "withdraw":
                log.withdraw(record)
            elif not any(held is record for held in log.records):
                log.add(record)
        return log, known

    @property
    def intact(self) -> int:
        return len(self.changes)

    @property
    def label_ids(self) -> list[int]:
        committed = {c.label_id for c in self.changes if c.kind == "commit" and c.label_id is not None}
        # grouped commits (Accept all) are one change without an id: their objects name theirs
        described = {
            event.entry.get("label_id")
            for event in self.objects
            if event.entry is not None and not event.listed
        }
        return sorted(committed | {i for i in described if isinstance(i, int) and not isinstance(i, bool)})

    @property
    def kept_label_ids(self) -> list[int]:
        """The ids of the objects the labels hold at the journal's end: :attr:`label_ids` less those
        committed and then undone (their click-log entries withdrawn, not added again)."""
        ids: dict[int, Any] = {}
        present: dict[int, bool] = {}
        for event in self.objects:
            if event.op == "add" and event.entry is not None and not event.listed:
                ids[event.ref] = event.entry.get("label_id")
            present[event.ref] = event.op == "add"
        # only an object seen withdrawn is undone (a damaged entry's object is still in the labels)
        withdrawn = {ids.get(ref) for ref, here in present.items() if not here}
        return [i for i in self.label_ids if i not in withdrawn]

    def objects_text(self) -> str:
        """ "N object(s) committed", and how many more were committed and then undone."""
        kept, undone = len(self.kept_label_ids), len(set(self.label_ids) - set(self.kept_label_ids))
        return f"{kept} object(s) committed" + (f" ({undone} more undone)" if undone else "")

    @property
    def last_time(self) -> float:
        times = [c.time for c in self.changes if c.time] or [float(self.info.get("created", 0) or 0)]
        return max(times)

    def summary_lines(self) -> list[str]:
        """What the journal holds, in short lines: layer, objects and edits, entries, times."""
        counts = {kind: sum(c.kind == kind for c in self.changes) for kind in CHANGE_KINDS}
        parts = [self.objects_text()]
        if counts["paint"]:
            parts.append(f"{counts['paint']} brush/fill edit(s)")
        if counts["undo"] or counts["redo"]:
            parts.append(f"{counts['undo']} undo(s), {counts['redo']} redo(s)")
        started = self.info.get("created")
        since = _when(started) if isinstance(started, (int, float)) else "unknown"
        return [
            f"{str(self.info.get('labels_name', 'labels'))!r} of {str(self.info.get('image_name', 'an image'))!r}",
            ", ".join(parts),
            f"{self.intact} {'entry' if self.intact == 1 else 'entries'} intact, {self.damaged} damaged"
            + (" (skipped)" if self.damaged else ""),
            f"started {since}, last change {_when(self.last_time) if self.last_time else 'unknown'}",
        ]

    def summary(self) -> str:
        return "; ".join(self.summary_lines())


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


class LabelsJournal:
    """The journal of one labels layer (see the module docstring); format 1 folders are read too."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._log: BinaryIO | None = None
        self._log_path: Path | None = None

    def __repr__(self) -> str:
        return f"LabelsJournal({str(self.folder)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelsJournal) and other.folder == self.folder

    def __hash__(self) -> int:
        return hash(self.folder)

    @classmethod
    def create(cls, fingerprint: str, info: dict[str, Any], root: str | Path | None = None) -> LabelsJournal:
        """A new journal (new id) for a labels layer of the image ``fingerprint``; header written."""
        base = Path(root) if root is not None else recovery_root()
        journal_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        journal = cls(base / fingerprint / journal_id)
        journal.folder.mkdir(parents=True)
        header = {
            **info,
            "format": FORMAT,
            "fingerprint": fingerprint,
            "journal_id": journal_id,
            "created": time.time(),
            "pid": os.getpid(),
        }
        _atomic_write(journal.folder / HEADER, json.dumps(header, indent=1).encode())
        return journal

    # ------------------------------------------------------------------ reading
    @property
    def is_v1(self) -> bool:
        return any(_is_v1_entry(p) for p in self._files()) or self._header_raw().get("format") == FORMAT_V1

    def exists(self) -> bool:
        return any(p.name.startswith(LOG_PREFIX) or _is_v1_entry(p) for p in self._files())

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if p.is_file())
        except OSError:
            return []

    def _header_raw(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / HEADER).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def scan(self) -> JournalScan:
        """Read every file of the journal, skipping (and naming) what is damaged or foreign."""
        if not self.folder.is_dir():
            raise JournalError(f"{self.folder}: no journal here")
        problems: list[str] = []
        header = self._header_raw()
        if (self.folder / HEADER).is_file() and not header:
            problems.append(f"{self.folder / HEADER}: header damaged; using what the entries carry")
        changes: list[Change] = []
        info: dict[str, Any] = {}
        damaged = 0
        logs, v1_entries = [], []
        objects: list[ObjectEvent] = []
        for path in self._files():
            if path.name == HEADER:
                continue
            if path.name.startswith(LOG_PREFIX) and path.name.endswith(LOG_SUFFIX):
                logs.append(path)
            elif _is_v1_entry(path):
                v1_entries.append(path)
            elif not path.name.startswith("."):
                problems.append(f"{path}: not a journal file; ignored")
        for path in v1_entries:
            try:
                changes.append(_read_v1_entry(path))
            except JournalError as error:
                problems.append(f"damaged entry skipped: {error}")
                damaged += 1
        # logs are numbered 000, 001, ... one per writing process and never deleted one by one: a gap
        # is a lost file, and with it what that session committed (said, not silently restored without)
        numbers = {_log_number(path) for path in logs}
        missing = [n for n in range(max(numbers, default=-1)) if n not in numbers]
        if missing:
            names = ", ".join(f"{LOG_PREFIX}{n:03d}{LOG_SUFFIX}" for n in missing[:5])
            problems.append(f"{self.folder}: {names} missing; what was committed in it cannot come back")
            damaged += len(missing)
        for path in sorted(logs, key=_log_number):
            try:
                data = path.read_bytes()
            except OSError as error:
                problems.append(f"{path}: unreadable ({error}); skipped")
                damaged += 1
                continue
            records, log_problems = read_records(data, str(path))
            problems += log_problems
            damaged += len(log_problems)
            for record in records:
                if isinstance(record, dict):
                    info = {**record, **info}
                elif isinstance(record, ObjectEvent):
                    objects.append(record)
                else:
                    changes.append(record)
        info = {**info, **header}
        if "dtype" not in info and changes:
            info["dtype"] = str(changes[-1].dtype)
        return JournalScan(info, changes, problems, damaged, objects)

    def restore(
        self, shape: tuple[int, ...] | None = None, dtype: Any = None
    ) -> tuple[np.ndarray, JournalScan]:
        """Replay the intact entries onto a fresh array; returns it and the scan (its problems warned).

        ``shape``/``dtype`` (the image's label grid) are used where the journal does not say them and
        must agree with it where it does. Raises :class:`JournalError` when nothing can be restored.
        """
        scan = self.scan()
        info = scan.info
        known = info.get("label_shape")
        if isinstance(known, list) and all(isinstance(v, int) and v > 0 for v in known):
            if shape is not None and tuple(known) != tuple(shape):
                raise JournalError(
                    f"{self.folder}: the journal is for labels of shape {tuple(known)}, not {tuple(shape)}"
                )
            shape = tuple(known)
        if shape is None:
            raise JournalError(
                f"{self.folder}: the labels shape is unknown (header damaged); choose the image"
            )
        try:
            dtype = np.dtype(info.get("dtype", dtype if dtype is not None else "uint32"))
        except TypeError:
            dtype = np.dtype(dtype if dtype is not None else "uint32")
        if dtype.kind not in "iu":
            raise JournalError(f"{self.folder}: labels dtype {dtype} is not an integer type")
        if scan.intact == 0:
            first = f": {scan.problems[0]}" if scan.problems else ""
            raise JournalError(f"{self.folder}: no intact entry to restore ({scan.damaged} damaged{first})")
        labels = np.zeros(shape, dtype=dtype)
        for change in scan.changes:
            try:
                _apply(labels, change)
            except JournalError as error:
                scan.problems.append(f"damaged entry skipped: {error}")
                scan.damaged += 1
        for problem in scan.problems:
            warnings.warn(problem, JournalWarning, stacklevel=2)
        return labels, scan

    # ------------------------------------------------------------------ writing
    def open_log(self, info: dict[str, Any] | None = None) -> None:
        """Open the next log file of this journal for appending (lists the folder once)."""
        numbers = [_log_number(p) for p in self._files() if p.name.startswith(LOG_PREFIX)]
        self._log_path = self.folder / f"{LOG_PREFIX}{max(numbers, default=-1) + 1:03d}{LOG_SUFFIX}"
        self._log = open(self._log_path, "ab")  # noqa: SIM115 - kept open for the session's appends
        header = self._header_raw()
        self.append(encode_record({"kind": "start", "info": {**header, **(info or {})}}))

    def append(self, record: bytes, sync: bool = True) -> None:
        """Append one encoded record; with ``sync`` it is on disk when this returns."""
        if self._log is None:
            self.open_log()
        assert self._log is not None
        self._log.write(record)
        if sync:
            self.sync()

    def sync(self) -> None:
        if self._log is not None:
            self._log.flush()
            os.fsync(self._log.fileno())

    def close(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            finally:
                self._log = None

    def discard(self) -> None:
        """Delete the journal (a format 1 journal: only its own files; newer journals inside stay)."""
        self.close()
        if self.is_v1:
            for path in self._files():
                if path.name == HEADER or _is_v1_entry(path) or path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
            return
        shutil.rmtree(self.folder, ignore_errors=True)


def _apply(labels: np.ndarray, change: Change) -> None:
    if len(change.box) != labels.ndim or any(b > n for (_, b), n in zip(change.box, labels.shape)):
        raise JournalError(f"{change.where}: box {change.box} outside the labels {labels.shape}")
    values, changed = change.arrays()
    region = labels[change.slices]
    if changed is None:
        region[...] = values
    else:
        region[changed] = values[changed]


def _log_number(path: Path) -> int:
    digits = path.name[len(LOG_PREFIX) : -len(LOG_SUFFIX)]
    return int(digits) if digits.isdigit() else -1


def _is_v1_entry(path: Path) -> bool:
    return path.suffix == ".npz" and path.stem.isdigit()


def _read_v1_entry(path: Path) -> Change:
    """A format 1 entry (one commit on one slice) as a :class:`Change`."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            r0, r1, c0, c1 = (int(v) for v in data["region"])
            key = tuple(int(v) for v in data["slice_key"])
            values = np.array(data["values"])
            size = (r1 - r0) * (c1 - c0)
            changed = np.unpackbits(data["changed"], count=size).reshape(r1 - r0, c1 - c0).astype(bool)
            label_id = int(data["label_id"])
            clicks = [(int(r), int(c), bool(p)) for r, c, p in data["clicks"].reshape(-1, 3)]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise JournalError(
            f"{path}: not a readable journal entry ({type(error).__name__}: {error})"
        ) from None
    if values.shape != changed.shape or values.dtype.kind not in "iu":
        raise JournalError(f"{path}: values of shape {values.shape} do not fit the region")
    box = tuple((k, k + 1) for k in key) + ((r0, r1), (c0, c1))
    change = Change(
        "commit", box, values.dtype, str(path), label_id=label_id, clicks=clicks, time=path.stat().st_mtime
    )
    shape = tuple(b - a for a, b in box)
    change._arrays = (values.reshape(shape), changed.reshape(shape))
    return change


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the whole new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    try:  # make the rename itself durable (POSIX); Windows has no directory handles
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def journals_for_image(fingerprint: str, root: str | Path | None = None) -> list[LabelsJournal]:
    """Every journal with entries of one image (a format 1 journal is the fingerprint folder itself)."""
    folder = (Path(root) if root is not None else recovery_root()) / fingerprint
    if not folder.is_dir():
        return []
    found = [LabelsJournal(folder)] if LabelsJournal(folder).exists() else []
    found += [LabelsJournal(p) for p in sorted(folder.iterdir()) if p.is_dir() and LabelsJournal(p).exists()]
    return found


def find_journals(root: str | Path | None = None) -> list[LabelsJournal]:
    """Every journal with entries under ``root`` (default: :func:`recovery_root`)."""
    base = Path(root) if root is not None else recovery_root()
    if not base.is_dir():
        return []
    return [j for p in sorted(base.iterdir()) if p.is_dir() for j in journals_for_image(p.name, base)]


__all__ = [
    "FORMAT",
    "Change",
    "JournalError",
    "JournalScan",
    "JournalWarning",
    "LabelsJournal",
    "base_record",
    "change_record",
    "find_journals",
    "image_fingerprint",
    "journals_for_image",
    "recovery_root",
]
