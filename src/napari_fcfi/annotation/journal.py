"""Crash recovery: every commit is journaled on disk at once, and can be restored exactly.

A journal is a folder under ``<cache>/recovery/<image fingerprint>/`` (``$NAPARI_FCFI_CACHE`` or the
user cache, see :func:`napari_fcfi.model.registry.cache_dir`) holding ``journal.json`` (what image and
labels layer it belongs to) and one ``NNNNNN.npz`` per commit and slice, in commit order. Each entry
holds the label id, the slice, the region that changed, the exact label values written there and
which pixels they changed, plus the object's mask (compressed) and its clicks. Entries are written
to a temporary name, flushed to disk and then renamed, so a crash (even ``kill -9``) leaves either
the whole entry or none; nothing is ever rewritten (append-only).

:meth:`CommitJournal.restore` replays the entries onto a labels array: the result equals the labels
the user had committed, bit for bit, without any model. The journal is removed once the labels are
saved (the FCFI writer does it) or when the user discards it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ENTRY_SUFFIX = ".npz"
HEADER = "journal.json"
FORMAT = "napari-fcfi-commit-journal/1"


def recovery_root() -> Path:
    """Where journals live: ``<cache>/recovery``."""
    from napari_fcfi.model.registry import cache_dir

    return cache_dir() / "recovery"


def image_fingerprint(data: Any, name: str = "", source_path: str | None = None) -> str:
    """A stable id of an image across sessions: its path (if any), shape, dtype and sampled pixels.

    Only a few strided slices are read, so lazy stacks are not loaded whole.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"shape": list(map(int, data.shape)), "dtype": str(np.dtype(data.dtype)),
                              "path": source_path or ""}).encode())
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


@dataclass
class JournalEntry:
    """One commit on one slice."""

    index: int
    label_id: int
    slice_key: tuple[int, ...]
    region: tuple[int, int, int, int]  # r0, r1, c0, c1 (half-open)
    values: np.ndarray  # label values of the region after the commit
    changed: np.ndarray  # bool: pixels of the region the commit changed
    object_mask: np.ndarray  # bool: the object's mask inside the region
    clicks: list[tuple[int, int, bool]]

    @property
    def slices(self) -> tuple[slice, slice]:
        r0, r1, c0, c1 = self.region
        return slice(r0, r1), slice(c0, c1)


class CommitJournal:
    """The journal of one image (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_image(cls, fingerprint: str, root: str | Path | None = None) -> CommitJournal:
        return cls((Path(root) if root is not None else recovery_root()) / fingerprint)

    # ------------------------------------------------------------------ reading
    def exists(self) -> bool:
        return (self.folder / HEADER).is_file() and any(self._entry_files())

    def header(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / HEADER).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _entry_files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.suffix == ENTRY_SUFFIX and p.stem.isdigit())

    def entries(self) -> list[JournalEntry]:
        out = []
        for path in self._entry_files():
            with np.load(path, allow_pickle=False) as data:
                r0, r1, c0, c1 = (int(v) for v in data["region"])
                shape = (r1 - r0, c1 - c0)
                out.append(JournalEntry(
                    index=int(path.stem),
                    label_id=int(data["label_id"]),
                    slice_key=tuple(int(v) for v in data["slice_key"]),
                    region=(r0, r1, c0, c1),
                    values=data["values"],
                    changed=np.unpackbits(data["changed"], count=shape[0] * shape[1]).reshape(shape).astype(bool),
                    object_mask=np.unpackbits(data["object_mask"], count=shape[0] * shape[1]).reshape(shape).astype(bool),
                    clicks=[(int(r), int(c), bool(p)) for r, c, p in data["clicks"].reshape(-1, 3)],
                ))
        return out

    def summary(self) -> str:
        header, entries = self.header(), self.entries()
        labels = sorted({e.label_id for e in entries})
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(header.get("updated", 0)))
        return (f"{len(labels)} object(s) ({len(entries)} slice commit(s)) committed to "
                f"{header.get('labels_name', 'labels')!r} of {header.get('image_name', 'an image')!r}, last at {when}")

    def restore(self, labels: np.ndarray) -> np.ndarray:
        """Apply every entry, in order, to ``labels`` (the labels the journal started from); returns it."""
        header = self.header()
        shape = tuple(header.get("label_shape", labels.shape))
        if tuple(labels.shape) != shape:
            raise ValueError(f"the journal is for labels of shape {shape}, got {tuple(labels.shape)}")
        for entry in self.entries():
            plane = labels[entry.slice_key] if entry.slice_key else labels
            region = plane[entry.slices]
            region[entry.changed] = entry.values[entry.changed]
        return labels

    # ------------------------------------------------------------------ writing
    def start(self, info: dict[str, Any]) -> None:
        """Write the header (image name, labels layer name, shape, dtype, scale, translate)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        header = {**self.header(), **info, "format": FORMAT, "updated": time.time()}
        _atomic_write(self.folder / HEADER, json.dumps(header, indent=1).encode())

    def append(self, label_id: int, slice_key: tuple[int, ...], region: tuple[slice, slice], before: np.ndarray,
               after: np.ndarray, object_mask: np.ndarray, clicks: list[tuple[int, int, bool]]) -> Path:
        """Journal one slice of a commit: ``before``/``after`` are the region's labels around it."""
        files = self._entry_files()
        index = int(files[-1].stem) + 1 if files else 0
        buffer = _npz_bytes(
            label_id=np.array(label_id, np.int64),
            slice_key=np.array(slice_key, np.int64),
            region=np.array([region[0].start, region[0].stop, region[1].start, region[1].stop], np.int64),
            values=np.ascontiguousarray(after),
            changed=np.packbits((after != before).ravel()),
            object_mask=np.packbits(np.asarray(object_mask, bool).ravel()),
            clicks=np.array([[r, c, int(p)] for r, c, p in clicks], np.int64).reshape(-1, 3),
        )
        path = self.folder / f"{index:06d}{ENTRY_SUFFIX}"
        _atomic_write(path, buffer)
        header = self.header()
        header["updated"] = time.time()
        _atomic_write(self.folder / HEADER, json.dumps(header, indent=1).encode())
        return path

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


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


def find_journals(root: str | Path | None = None) -> list[CommitJournal]:
    """Every journal with entries under ``root`` (default: :func:`recovery_root`)."""
    base = Path(root) if root is not None else recovery_root()
    if not base.is_dir():
        return []
    return [CommitJournal(p) for p in sorted(base.iterdir()) if CommitJournal(p).exists()]
