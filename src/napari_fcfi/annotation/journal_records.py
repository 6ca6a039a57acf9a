"""Journal records: the framed, checksummed byte format of one journal entry (see :mod:`.journal`).

A record is ``MAGIC | payload length (u32) | crc32 of the payload (u32) | payload``; the payload is a
JSON description (kind, box, dtype, label id, clicks, time) followed by zlib-compressed arrays.
:func:`read_records` reads every intact record of a log's bytes and names each damaged stretch;
:func:`decode_record` checks every field, so damaged or foreign bytes end in :class:`JournalError`,
never in an exception from json, zlib or numpy.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"\x89FCJ\r\n\x1a\n"
_FRAME = struct.Struct("<8sII")  # magic, payload length, crc32
_META = struct.Struct("<I")
CHANGE_KINDS = ("commit", "paint", "undo", "redo", "base")
OBJECT_OPS = ("add", "withdraw")  # what an ``object`` record does to the layer's click log
MAX_ELEMENTS = 2**34  # no box in a journal is larger than this (guards allocations from damaged bytes)


class JournalError(ValueError):
    """A journal that cannot be read or restored (the message names the folder or file)."""


class JournalWarning(UserWarning):
    """Part of a journal was skipped (damaged, cut off or foreign); the message names the file."""


# ---------------------------------------------------------------------- records
@dataclass
class Change:
    """One journaled change: ``values`` written where ``changed`` (None: everywhere) inside ``box``."""

    kind: str
    box: tuple[tuple[int, int], ...]
    dtype: np.dtype
    where: str  # file and byte offset, for messages
    label_id: int | None = None
    clicks: list[tuple[int, int, bool]] = field(default_factory=list)
    time: float = 0.0
    fill: int | None = None  # every written value equals this
    _blobs: tuple[bytes | None, bytes | None] = (None, None)
    _arrays: tuple[np.ndarray | None, np.ndarray | None] | None = None

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.box)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.box)

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(values, changed)``, decompressed and checked (``JournalError`` when they do not fit)."""
        if self._arrays is None:
            values_blob, changed_blob = self._blobs
            size = int(np.prod(self.shape))
            if self.fill is not None:
                values = np.full(self.shape, self.fill, dtype=self.dtype)
            else:
                values = np.frombuffer(
                    _inflate(values_blob, size * self.dtype.itemsize, self.where), dtype=self.dtype
                ).reshape(self.shape)
            changed = None
            if changed_blob is not None:
                bits = np.frombuffer(_inflate(changed_blob, (size + 7) // 8, self.where), np.uint8)
                changed = np.unpackbits(bits, count=size).reshape(self.shape).astype(bool)
            self._arrays = (values, changed)
        return self._arrays  # type: ignore[return-value]


@dataclass
class ObjectEvent:
    """One change of the layer's click log: an object ``add``-ed (``entry``, the object of
    :func:`napari_fcfi.annotation.clicklog.record_to_entry`, the first time ``ref`` is added; a redo adds
    it again without) or ``withdraw``-n (its commit was undone)."""

    op: str
    ref: int
    entry: dict[str, Any] | None
    where: str
    time: float = 0.0
    listed: bool = False  # made before the journal started (a journal restarted after a save lists them)


def object_record(op: str, ref: int, entry: dict[str, Any] | None = None, listed: bool = False) -> bytes:
    """The record of an :class:`ObjectEvent` (values JSON cannot hold are written as text)."""
    meta: dict[str, Any] = {"kind": "object", "op": op, "ref": int(ref), "time": time.time()}
    if listed:
        meta["listed"] = True
    if entry is not None:
        meta["entry"] = json.loads(json.dumps(entry, default=str))
    return encode_record(meta)


def encode_record(meta: dict[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    """One framed record (see the module docstring); ``meta['blobs']`` gets the blob lengths."""
    meta = {**meta, "blobs": [len(b) for b in blobs]}
    text = json.dumps(meta, separators=(",", ":")).encode()
    payload = _META.pack(len(text)) + text + b"".join(blobs)
    return _FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def change_record(
    kind: str,
    box: tuple[tuple[int, int], ...],
    values: np.ndarray,
    changed: np.ndarray | None = None,
    *,
    label_id: int | None = None,
    clicks: Any = (),
    shape: Any = None,
) -> bytes:
    """The record of one change (``values`` has the box's shape; ``changed`` None means every pixel)."""
    values = np.asarray(values)
    meta: dict[str, Any] = {
        "kind": kind,
        "box": [[int(a), int(b)] for a, b in box],
        "dtype": values.dtype.newbyteorder("<").str,
        "time": time.time(),
    }
    if shape is not None:
        meta["shape"] = [int(s) for s in shape]
    if label_id is not None:
        meta["label_id"] = int(label_id)
    if clicks:
        meta["clicks"] = [[int(r), int(c), int(bool(p))] for r, c, p in clicks]
    written = values if changed is None else values[changed]
    blobs = []
    if written.size and (written == written.flat[0]).all():
        meta["fill"] = int(written.flat[0])
    else:
        blobs.append(zlib.compress(np.ascontiguousarray(values, dtype=meta["dtype"]).tobytes(), 1))
    if changed is not None:
        meta["changed"] = len(blobs)
        blobs.append(zlib.compress(np.packbits(np.asarray(changed, bool).ravel()).tobytes(), 1))
    if "fill" not in meta:
        meta["values"] = 0
    return encode_record(meta, blobs)


def _inflate(blob: bytes | None, size: int, where: str) -> bytes:
    if blob is None:
        raise JournalError(f"{where}: the record has no data")
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(blob, size + 1)
    except zlib.error as error:
        raise JournalError(f"{where}: compressed data are damaged ({error})") from None
    if len(data) != size:
        raise JournalError(f"{where}: expected {size} bytes of data, found {len(data)}")
    return data


def _ints(value: Any, what: str, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise JournalError(f"{where}: {what} must be a list of integers, got {value!r:.80}")
    return value


def decode_record(payload: bytes, where: str) -> Change | ObjectEvent | dict[str, Any]:
    """A record's payload -> a :class:`Change`, an :class:`ObjectEvent` or a ``start`` record's info."""
    if len(payload) < _META.size:
        raise JournalError(f"{where}: record too short")
    (length,) = _META.unpack_from(payload)
    try:
        meta = json.loads(payload[_META.size : _META.size + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JournalError(f"{where}: record description is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise JournalError(f"{where}: record description is not a JSON object")
    kind = meta.get("kind")
    if kind == "start":
        info = meta.get("info")
        if not isinstance(info, dict):
            raise JournalError(f"{where}: start record without info")
        return info
    if kind == "object":
        return _object_event(meta, where)
    if kind not in CHANGE_KINDS:
        raise JournalError(f"{where}: unknown record kind {kind!r:.40}")
    box_list = meta.get("box")
    if not isinstance(box_list, list) or not box_list:
        raise JournalError(f"{where}: record without a box")
    pairs = [_ints(b, "box", where) for b in box_list]
    if any(len(b) != 2 or not 0 <= b[0] < b[1] for b in pairs):
        raise JournalError(f"{where}: box {box_list!r:.80} is not a list of [start, stop) pairs")
    box = tuple((b[0], b[1]) for b in pairs)
    if np.prod([float(b - a) for a, b in box]) > MAX_ELEMENTS:
        raise JournalError(f"{where}: box {box_list!r:.80} is implausibly large")
    try:
        dtype = np.dtype(str(meta.get("dtype")))
    except TypeError:
        raise JournalError(f"{where}: unknown dtype {meta.get('dtype')!r:.40}") from None
    if dtype.kind not in "biu" or dtype.itemsize > 8:
        raise JournalError(f"{where}: labels dtype must be integer, got {dtype}")
    sizes = _ints(meta.get("blobs", []), "blobs", where)
    if any(s < 0 for s in sizes) or _META.size + length + sum(sizes) != len(payload):
        raise JournalError(f"{where}: data lengths {sizes} do not match the record")
    blobs, offset = [], _META.size + length
    for size in sizes:
        blobs.append(payload[offset : offset + size])
        offset += size

    def blob(name: str) -> bytes | None:
        index = meta.get(name)
        if index is None:
            return None
        if not isinstance(index, int) or not 0 <= index < len(blobs):
            raise JournalError(f"{where}: {name} data index {index!r:.20} out of range")
        return blobs[index]

    fill = meta.get("fill")
    if fill is not None and (not isinstance(fill, int) or isinstance(fill, bool)):
        raise JournalError(f"{where}: fill value {fill!r:.20} is not an integer")
    if fill is None and meta.get("values") is None:
        raise JournalError(f"{where}: record without values")
    if fill is not None:
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        if info is not None and not info.min <= fill <= info.max:
            raise JournalError(f"{where}: fill value {fill} does not fit {dtype}")
    label_id = meta.get("label_id")
    if label_id is not None and (not isinstance(label_id, int) or isinstance(label_id, bool)):
        raise JournalError(f"{where}: label id {label_id!r:.20} is not an integer")
    clicks_raw = meta.get("clicks", [])
    if not isinstance(clicks_raw, list):
        raise JournalError(f"{where}: clicks must be a list")
    clicks = [tuple(_ints(c, "click", where)) for c in clicks_raw]
    if any(len(c) != 3 for c in clicks):
        raise JournalError(f"{where}: a click must be [row, col, positive]")
    stamp = meta.get("time", 0.0)
    return Change(
        kind,
        box,
        dtype,
        where,
        label_id=label_id,
        clicks=[(r, c, bool(p)) for r, c, p in clicks],
        time=float(stamp) if isinstance(stamp, (int, float)) else 0.0,
        fill=fill,
        _blobs=(blob("values"), blob("changed")),
    )


def _object_event(meta: dict[str, Any], where: str) -> ObjectEvent:
    op, ref, entry = meta.get("op"), meta.get("ref"), meta.get("entry")
    if op not in OBJECT_OPS:
        raise JournalError(f"{where}: unknown click-log change {op!r:.40}")
    if not isinstance(ref, int) or isinstance(ref, bool) or ref < 0:
        raise JournalError(f"{where}: object reference {ref!r:.20} is not a non-negative integer")
    if entry is not None and not isinstance(entry, dict):
        raise JournalError(f"{where}: the object's description is not a JSON object")
    stamp = meta.get("time", 0.0)
    when = float(stamp) if isinstance(stamp, (int, float)) else 0.0
    return ObjectEvent(op, ref, entry, where, when, listed=meta.get("listed") is True)


def read_records(data: bytes, name: str) -> tuple[list[Change | ObjectEvent | dict[str, Any]], list[str]]:
    """Every intact record of one log's bytes, and a message per damaged stretch (naming ``name``)."""
    records: list[Change | ObjectEvent | dict[str, Any]] = []
    problems: list[str] = []
    position = 0
    while position < len(data):
        where = f"{name} at byte {position}"
        if data[position : position + len(MAGIC)] == MAGIC and position + _FRAME.size <= len(data):
            _, length, checksum = _FRAME.unpack_from(data, position)
            end = position + _FRAME.size + length
            payload = data[position + _FRAME.size : end]
            if end <= len(data) and zlib.crc32(payload) == checksum:
                try:
                    records.append(decode_record(payload, where))
                except JournalError as error:
                    problems.append(f"damaged entry skipped: {error}")
                position = end
                continue
        following = data.find(MAGIC, position + 1)
        if following < 0:
            problems.append(
                f"damaged or cut-off entry skipped: {where} ({len(data) - position} bytes to the end)"
            )
            break
        problems.append(f"damaged entry skipped: {where} ({following - position} bytes)")
        position = following
    return records, problems


def base_record(labels: np.ndarray) -> bytes:
    """A ``base`` record: the whole labels array."""
    labels = np.asarray(labels)
    return change_record("base", tuple((0, n) for n in labels.shape), labels, shape=labels.shape)


__all__ = [
    "CHANGE_KINDS",
    "Change",
    "JournalError",
    "JournalWarning",
    "base_record",
    "change_record",
    "decode_record",
    "encode_record",
    "read_records",
    "ObjectEvent",
    "object_record",
]
