"""The click log: every committed object, as the steps that made it, and its CSV file.

An :class:`ObjectRecord` holds a label id and the ordered steps of its annotation:

* :class:`ClicksStep`: clicks on one 2D slice, starting from nothing, from an initial mask (the
  label being edited) or from the mask a propagation left on that slice;
  (a segment-all proposal the user accepted or corrected is such an initial mask, marked
  ``"initial": "segment-all"`` in the metadata);
* :class:`PropagateStep`: carrying the object from one slice through its neighbours along a stack
  axis (``"up"``, ``"down"`` or ``"both"``), replacing what earlier steps left beyond that slice
  (``through``: slices kept past the stopping rules, when the user continued past a stop;
  ``fading``: whether the fading rule of :mod:`.fading` stopped it, false for logs written before
  that rule, so they replay as they were made);
* :class:`FillStep`: filling the slices between two slices of the object from both of them
  (``kept``: after a Cancel, the slices it had finished; ``fused``: whether each slice was predicted
  from both chains' fused mask, false for logs written before that, so they replay as they were made).

:func:`napari_fcfi.annotation.replay.replay_object` re-runs the steps, so a saved log reproduces
the labels. The napari widget writes the log; ``fcfi segment`` reads it.

CSV format (UTF-8, comma separated)::

    # napari-fcfi click log v2
    # metadata: {"model": "default", "settings": {...}, "axes": ["z"], "objects": [...]}
    object,step,z,row,col,positive
    1,0,4,120,88,true
    1,0,4,131,95,false

* ``#`` lines are comments; the ``# metadata:`` line holds one JSON object: model, engine settings,
  image name and, per object, its label id, whether it replaced (edited) that label, whether it
  painted over other labels, the probability threshold of its commit, and its steps (kind, slice, the
  initial mask as run lengths, the propagation's axis, direction, range and threshold). A step
  without a threshold uses its object's; an object without one uses the log's setting.
* Required columns: ``object``, ``row``, ``col``, ``positive``; ``step`` (the step of the object the
  click belongs to) is written by the widget. Every other column is a leading (stack) axis, in image
  axis order: ``z`` for (Z, Y, X), ``t,z`` for (T, Z, Y, X). ``row``/``col`` may be fractional (the
  engine rounds with ``floor(x + 0.5)``), ``positive`` is true/false, 1/0 or yes/no.
* Logs without per-object metadata (hand-written, or version 1) are read as one clicks step per
  (object, slice) in file order; label ids are the object values when all are integers >= 1,
  otherwise 1..n in order of first appearance.
"""

from __future__ import annotations

import binascii
import csv
import json
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from napari_fcfi.engine.clicks import Click, parse_bool
from napari_fcfi.engine.masks import decode_mask, encode_mask

MAGIC = "# napari-fcfi click log v2"
REQUIRED_COLUMNS = ("object", "row", "col", "positive")
RESERVED_COLUMNS = REQUIRED_COLUMNS + ("step",)
DIRECTIONS = ("up", "down", "both")

SliceKey = tuple[int, ...]


@dataclass(frozen=True)
class ClicksStep:
    """Clicks on slice ``slice_key``; the session starts from ``initial_mask`` (an (H, W) bool array),
    or from the mask the last propagation left on that slice (``from_propagation``), or empty.
    A segment-all proposal the user accepted or corrected is an initial mask with ``from_segment_all``."""

    slice_key: SliceKey
    clicks: tuple[Click, ...]
    initial_mask: np.ndarray | None = None
    from_propagation: bool = False
    threshold: float | None = None  # the mask's probability threshold (None: the object's)
    from_segment_all: bool = False  # ``initial_mask`` is a segment-all proposal (replayed from the mask)


@dataclass(frozen=True)
class PropagateStep:
    """Carry the object from ``slice_key`` along stack axis ``axis`` (an index into the slice key)."""

    slice_key: SliceKey
    axis: int = 0
    direction: str = "both"
    max_slices: int | None = None
    through: int = 0  # the first slices of each direction are kept whatever the stopping rules say
    threshold: float | None = None  # the propagation's probability threshold (None: the object's)
    fading: bool = True  # the fading stop rule applied (logs written before it existed: False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"propagation direction must be one of {DIRECTIONS}, got {self.direction!r}")


@dataclass(frozen=True)
class FillStep:
    """Fill the slices strictly between ``slice_key`` and ``other`` (the same slice but for stack axis
    ``axis``) from the object's masks on both (:mod:`napari_fcfi.annotation.filling`)."""

    slice_key: SliceKey
    other: SliceKey
    axis: int = 0
    threshold: float | None = None  # the fill's probability threshold (None: the object's)
    kept: tuple[int, ...] | None = None  # a cancelled fill: the slice indices it placed (None: all)
    fused: bool = True  # each slice re-predicted from both chains' fused mask (logs before it: False)
    # A cancelled fill that kept its unfinished slices from one chain: the network passes it had begun
    # (replay stops at the same pass, so it gives the same slices); None: older logs, finished slices only.
    passes: int | None = None


Step = Union[ClicksStep, PropagateStep, FillStep]  # noqa: UP007 - a runtime alias


@dataclass
class ObjectRecord:
    """One committed object: label id, the steps that made it, and how it was painted."""

    label_id: int
    steps: list[Step]
    edited: bool = False  # replaced the existing label ``label_id``
    overwrite: bool = False  # painted over other labels
    threshold: float | None = None  # probability threshold at the commit (None: the log's setting)
    # What the object was made with where it may differ from the log's settings (a session can switch
    # model or channel between commits): "model" (a name or file) and "channel"; absent: the log's.
    made_with: dict[str, Any] = field(default_factory=dict)

    @property
    def clicks(self) -> list[Click]:
        """All clicks of the object, in order (every clicks step)."""
        return [c for step in self.steps if isinstance(step, ClicksStep) for c in step.clicks]

    @property
    def slice_keys(self) -> list[SliceKey]:
        return list(OrderedDict.fromkeys(step.slice_key for step in self.steps))


@dataclass
class ClickLog:
    """Committed objects in commit order, plus the model and settings they were made with."""

    records: list[ObjectRecord] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    axes: tuple[str, ...] | None = None  # names of the leading axes in the file (None: by key length)

    def add(self, record: ObjectRecord) -> None:
        self.records.append(record)

    def withdraw(self, record: ObjectRecord) -> bool:
        """Take ``record`` (this very object) out, as its commit was undone; False when it was not in."""
        for index, held in enumerate(self.records):
            if held is record:
                del self.records[index]
                return True
        return False

    def __len__(self) -> int:
        return len(self.records)

    # ------------------------------------------------------------------ CSV
    def save(self, path: str | Path) -> Path:
        """Write the log as CSV (format in the module docstring); ``.csv`` is appended when missing."""
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_suffix(".csv")
        lengths = {len(step.slice_key) for record in self.records for step in record.steps}
        if len(lengths) > 1:
            raise ValueError(
                f"click log mixes slices of {sorted(lengths)} stack axes; save one image per log"
            )
        n_axes = lengths.pop() if lengths else len(self.axes or ())
        axes = self.axes if self.axes is not None else default_axes(n_axes)
        if len(axes) != n_axes:
            raise ValueError(f"axis names {axes} do not match the log's {n_axes} stack axes")
        clash = set(axes) & set(RESERVED_COLUMNS)
        if clash:
            raise ValueError(f"axis names {sorted(clash)} clash with the log's own columns")
        metadata = {
            **self.metadata,
            "axes": list(axes),
            "objects": [_record_json(i + 1, r) for i, r in enumerate(self.records)],
        }
        with path.open("w", newline="", encoding="utf-8") as handle:
            handle.write(MAGIC + "\n")
            handle.write("# metadata: " + json.dumps(metadata, sort_keys=True) + "\n")
            writer = csv.writer(handle)
            writer.writerow(["object", "step", *axes, "row", "col", "positive"])
            for number, record in enumerate(self.records, start=1):
                for index, step in enumerate(record.steps):
                    if isinstance(step, ClicksStep):
                        for click in step.clicks:
                            writer.writerow(
                                [
                                    number,
                                    index,
                                    *step.slice_key,
                                    _number(click.row),
                                    _number(click.col),
                                    "true" if click.positive else "false",
                                ]
                            )
        return path

    @classmethod
    def load(cls, path: str | Path, plane_shape: tuple[int, int] | None = None) -> ClickLog:
        """Read a click log (v1 or v2); :class:`ClickLogError` names the file (and line) of anything malformed.

        ``plane_shape`` (rows, cols) is needed to decode initial masks of edited objects; without it
        they are kept encoded in ``metadata`` and replay refuses them.
        """
        with _clear_errors(path):
            return cls._load(Path(path), plane_shape)

    @classmethod
    def _load(cls, path: Path, plane_shape: tuple[int, int] | None) -> ClickLog:
        metadata, header, rows = _read_table(path)
        axes = tuple(h for h in header if h not in RESERVED_COLUMNS)
        objects = metadata.pop("objects", None)
        metadata.pop("axes", None)
        if objects and "step" in header:
            records = _records_from_metadata(path, objects, rows, axes, plane_shape)
        else:
            records = _records_from_rows(path, rows, axes)
            # Version 1 kept one paint-over setting for the whole log.
            overwrite = bool((metadata.get("settings") or {}).get("overwrite", False))
            for record in records:
                record.overwrite = overwrite
        return cls(records, metadata, axes)


class ClickLogError(ValueError):
    """A click log that cannot be read; the message names the file (and the line where it can)."""


@contextmanager
def _clear_errors(path: str | Path) -> Iterator[None]:
    """Whatever bytes a file holds, reading it ends in the log or in a :class:`ClickLogError`."""
    try:
        yield
    except ClickLogError:
        raise
    except UnicodeDecodeError as error:
        raise ClickLogError(
            f"{path}: not a UTF-8 text click log ({error.reason} at byte {error.start})"
        ) from None
    except ValueError as error:  # our own messages name the file and line already
        raise ClickLogError(str(error) if str(path) in str(error) else f"{path}: {error}") from None
    except (
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
        binascii.Error,
        zlib.error,
    ) as error:
        raise ClickLogError(
            f"{path}: the metadata line does not describe objects as a click log does "
            f"({type(error).__name__}: {error})"
        ) from None


def read_log_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON object of a click log's ``# metadata:`` line (empty when there is none)."""
    with _clear_errors(path):
        return _read_log_metadata(Path(path))


def _read_log_metadata(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            body = line.strip()
            if body.startswith("#") and body[1:].strip().startswith("metadata:"):
                try:
                    data = json.loads(body[1:].strip()[len("metadata:") :])
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: metadata is not valid JSON ({error})") from None
                return data if isinstance(data, dict) else {}
            if body and not body.startswith("#"):
                break
    return {}


def default_axes(n: int) -> tuple[str, ...]:
    """Column names of ``n`` leading axes: ``()``, ``("z",)``, ``("t", "z")``, else ``axis0..``."""
    return {0: (), 1: ("z",), 2: ("t", "z")}.get(n, tuple(f"axis{i}" for i in range(n)))


def _number(value: float) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _record_json(number: int, record: ObjectRecord) -> dict[str, Any]:
    steps = []
    for step in record.steps:
        if isinstance(step, ClicksStep):
            entry: dict[str, Any] = {
                "kind": "clicks",
                "slice": list(step.slice_key),
                "clicks": len(step.clicks),
            }
            if step.initial_mask is not None:
                entry["initial_mask"] = encode_mask(step.initial_mask)
            if step.from_propagation:
                entry["initial"] = "propagated"
            elif step.from_segment_all:
                entry["initial"] = "segment-all"
        elif isinstance(step, FillStep):
            entry = {"kind": "fill", "slice": list(step.slice_key), "to": list(step.other), "axis": step.axis}
            if step.kept is not None:
                entry["kept"] = list(step.kept)
            if step.passes is not None:
                entry["passes"] = step.passes
            entry["fused"] = step.fused
        else:
            entry = {
                "kind": "propagate",
                "slice": list(step.slice_key),
                "axis": step.axis,
                "direction": step.direction,
                "max_slices": step.max_slices,
            }
            if step.through:
                entry["through"] = step.through
            entry["fading"] = step.fading
        step_threshold = getattr(step, "threshold", None)
        if step_threshold is not None:
            entry["threshold"] = float(step_threshold)
        steps.append(entry)
    entry = {
        "object": number,
        "label_id": record.label_id,
        "edited": record.edited,
        "overwrite": record.overwrite,
        "steps": steps,
    }
    if record.threshold is not None:
        entry["threshold"] = float(record.threshold)
    if record.made_with:
        entry["made_with"] = dict(record.made_with)
    return entry


def _read_table(path: Path) -> tuple[dict[str, Any], list[str], list[tuple[int, dict[str, str]]]]:
    metadata: dict[str, Any] = {}
    data_lines: list[tuple[int, str]] = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                body = stripped[1:].strip()
                if body.startswith("metadata:"):
                    try:
                        metadata = json.loads(body[len("metadata:") :])
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{path}:{number}: metadata is not valid JSON ({error})") from None
                continue
            data_lines.append((number, line))
    if not data_lines:
        raise ValueError(f"{path}: no header row (expected columns {', '.join(REQUIRED_COLUMNS)})")
    reader = csv.reader([line for _, line in data_lines])
    header = [h.strip().lower() for h in next(reader)]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}:{data_lines[0][0]}: missing column(s) {missing}; found {header}")
    rows = []
    for (number, _), values in zip(data_lines[1:], reader):
        if len(values) != len(header):
            raise ValueError(f"{path}:{number}: expected {len(header)} values, got {len(values)}")
        rows.append((number, dict(zip(header, (v.strip() for v in values)))))
    return metadata, header, rows


def _parse_click(
    path: Path, number: int, row: dict[str, str], axes: tuple[str, ...]
) -> tuple[SliceKey, Click]:
    from napari_fcfi.engine.clicks import round_coordinate

    try:
        key = tuple(int(float(row[a])) for a in axes)
        click = Click(
            round_coordinate(float(row["row"])),
            round_coordinate(float(row["col"])),
            parse_bool(row["positive"]),
        )
    except ValueError as error:
        raise ValueError(f"{path}:{number}: {error}") from None
    return key, click


def _parse_object(text: str) -> int | str:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else text


def _records_from_rows(
    path: Path, rows: list[tuple[int, dict[str, str]]], axes: tuple[str, ...]
) -> list[ObjectRecord]:
    """v1 / hand-written logs: one clicks step per (object, slice), label ids from the object values."""
    groups: OrderedDict[tuple[Any, SliceKey], list[Click]] = OrderedDict()
    for number, row in rows:
        key, click = _parse_click(path, number, row, axes)
        groups.setdefault((_parse_object(row["object"]), key), []).append(click)
    objects = list(OrderedDict.fromkeys(obj for obj, _ in groups))
    if objects and all(isinstance(o, int) and o >= 1 for o in objects):
        ids = {o: int(o) for o in objects}
    else:
        ids = {o: i + 1 for i, o in enumerate(objects)}
    return [ObjectRecord(ids[obj], [ClicksStep(key, tuple(clicks))]) for (obj, key), clicks in groups.items()]


def _records_from_metadata(
    path: Path,
    objects: list[dict[str, Any]],
    rows: list[tuple[int, dict[str, str]]],
    axes: tuple[str, ...],
    plane_shape: tuple[int, int] | None,
) -> list[ObjectRecord]:
    clicks: dict[tuple[int, int], list[Click]] = {}
    for number, row in rows:
        key, click = _parse_click(path, number, row, axes)
        try:
            clicks.setdefault((int(row["object"]), int(row["step"])), []).append(click)
        except ValueError:
            raise ValueError(f"{path}:{number}: object and step must be integers") from None
    return [_record_from_entry(path, entry, clicks, plane_shape) for entry in objects]


def record_to_entry(record: ObjectRecord, number: int = 0) -> dict[str, Any]:
    """One object as a self-contained JSON object (its metadata entry plus each step's clicks), as the
    recovery journal keeps it; ``number`` names it in messages about it."""
    entry = _record_json(number, record)
    for step, described in zip(record.steps, entry["steps"]):
        if isinstance(step, ClicksStep):
            described["click_list"] = [
                [_json_number(c.row), _json_number(c.col), bool(c.positive)] for c in step.clicks
            ]
    return entry


def record_from_entry(entry: dict[str, Any], plane_shape: tuple[int, int], where: str) -> ObjectRecord:
    """The object of :func:`record_to_entry`; :class:`ClickLogError` (naming ``where``) when malformed."""
    with _clear_errors(where):
        clicks: dict[tuple[int, int], list[Click]] = {}
        for index, step in enumerate(entry["steps"]):
            for row, col, positive in step.get("click_list", ()):
                if not isinstance(positive, bool):
                    raise ValueError(
                        f"object {entry.get('object')}: click sign {positive!r} is not true/false"
                    )
                clicks.setdefault((int(entry["object"]), index), []).append(
                    Click(_finite(row), _finite(col), positive)
                )
        return _record_from_entry(Path(where), entry, clicks, plane_shape)


def _json_number(value: float) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def _finite(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"click coordinate {value!r:.20} is not a finite number")
    return value


def _record_from_entry(
    path: Path,
    entry: dict[str, Any],
    clicks: dict[tuple[int, int], list[Click]],
    plane_shape: tuple[int, int] | None,
) -> ObjectRecord:
    number = int(entry["object"])
    steps: list[Step] = []
    for index, step in enumerate(entry["steps"]):
        key = tuple(int(v) for v in step["slice"])
        threshold = _threshold(path, number, step.get("threshold"))
        if step["kind"] == "propagate":
            steps.append(
                PropagateStep(
                    key,
                    int(step.get("axis", 0)),
                    step.get("direction", "both"),
                    step.get("max_slices"),
                    through=int(step.get("through", 0)),
                    threshold=threshold,
                    fading=bool(step.get("fading", False)),
                )
            )
            continue
        if step["kind"] == "fill":
            kept = step.get("kept")
            steps.append(
                FillStep(
                    key,
                    tuple(int(v) for v in step["to"]),
                    int(step.get("axis", 0)),
                    threshold,
                    kept=None if kept is None else tuple(int(v) for v in kept),
                    fused=bool(step.get("fused", False)),
                    passes=None if step.get("passes") is None else int(step["passes"]),
                )
            )
            continue
        initial = step.get("initial_mask")
        if initial is not None:
            if plane_shape is None:
                raise ValueError(
                    f"{path}: object {number} starts from a mask; the image shape is needed to read it"
                )
            initial = decode_mask(initial, plane_shape)
        steps.append(
            ClicksStep(
                key,
                tuple(clicks.get((number, index), ())),
                initial,
                step.get("initial") == "propagated",
                threshold=threshold,
                from_segment_all=step.get("initial") == "segment-all",
            )
        )
    return ObjectRecord(
        int(entry["label_id"]),
        steps,
        bool(entry.get("edited", False)),
        bool(entry.get("overwrite", False)),
        _threshold(path, number, entry.get("threshold")),
        _made_with(path, number, entry.get("made_with")),
    )


def _made_with(path: Path, number: int, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not set(value) <= {"model", "channel"}:
        raise ClickLogError(f"{path}, line {number}: 'made_with' must hold only 'model' and 'channel'")
    channel = value.get("channel")
    if isinstance(channel, list):  # JSON keeps a composite as a list
        value = {**value, "channel": channel[0] if len(channel) == 1 else tuple(channel)}
    return dict(value)


def _threshold(path: Path, number: int, value: Any) -> float | None:
    if value is None:
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"{path}: object {number} has threshold {value!r}; it must be between 0 and 1")
    return threshold
