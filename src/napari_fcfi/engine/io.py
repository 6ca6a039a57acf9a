"""Click logs: the CSV that the napari widget saves and ``fcfi segment`` reads.

Format (UTF-8 CSV, comma separated)::

    # napari-fcfi click log v1
    # metadata: {"model": "default", "settings": {"preset": "microscopy", ...}, "image": "cells.tif"}
    object,z,row,col,positive
    1,4,120.5,88,true
    1,4,131,95,false
    2,5,40,200.25,1

* Lines starting with ``#`` are comments. The optional ``# metadata:`` line holds one JSON object
  (model name, segmenter settings, image name... anything JSON); readers that do not care skip it
  (``pandas.read_csv(path, comment="#")`` reads the table).
* Required columns: ``object``, ``row``, ``col``, ``positive``. ``object`` is an integer label id
  or any name; ``row``/``col`` are pixel coordinates, floats allowed (the engine rounds with
  ``floor(x + 0.5)``); ``positive`` is ``true``/``false`` or ``1``/``0`` (``yes``/``no`` too).
* Every other column is a **leading (stack) axis** of the image, in image axis order, left to right:
  ``z`` for a ``(Z, Y, X)`` stack, ``t,z`` for ``(T, Z, Y, X)``. A 2D image has none. Values are
  integer slice indices.
* Row order is click order. Each object's clicks on one slice are one session, applied in order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clicks import parse_bool

MAGIC = "# napari-fcfi click log v1"
TIFF_SUFFIXES = (".tif", ".tiff")
REQUIRED_COLUMNS = ("object", "row", "col", "positive")


@dataclass(frozen=True)
class ClickRecord:
    """One logged click: ``position`` holds the leading-axis indices (e.g. ``(z,)``), empty for 2D."""

    object: int | str
    row: float
    col: float
    positive: bool
    position: tuple[int, ...] = ()


@dataclass
class ClickLog:
    records: list[ClickRecord]
    axes: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def _format_number(value: float) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _parse_object(text: str) -> int | str:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else text


def _default_axes(n: int) -> tuple[str, ...]:
    return {0: (), 1: ("z",), 2: ("t", "z")}.get(n, tuple(f"axis{i}" for i in range(n)))


def _as_record(item: ClickRecord | Mapping[str, Any], axes: Sequence[str] | None) -> ClickRecord:
    if isinstance(item, ClickRecord):
        return item
    missing = [c for c in REQUIRED_COLUMNS if c not in item]
    if missing:
        raise ValueError(f"click record {dict(item)!r} lacks {missing}")
    position = tuple(int(item[a]) for a in (axes or ()) if a in item)
    if "position" in item:
        position = tuple(int(v) for v in item["position"])
    return ClickRecord(item["object"], float(item["row"]), float(item["col"]), parse_bool(item["positive"]), position)


def save_click_log(
    path: str | Path,
    records: Iterable[ClickRecord | Mapping[str, Any]],
    metadata: Mapping[str, Any] | None = None,
    axes: Sequence[str] | None = None,
) -> Path:
    """Write a click log (format in the module docstring). Returns the path.

    ``records`` are :class:`ClickRecord` or mappings with ``object``, ``row``, ``col``, ``positive``
    and either ``position`` or one key per axis name. ``axes`` names the leading axes; by default
    ``()``, ``("z",)`` or ``("t", "z")`` by the records' position length.
    """
    rows = [_as_record(r, axes) for r in records]
    lengths = {len(r.position) for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"click records mix positions of different lengths {sorted(lengths)}")
    n_axes = lengths.pop() if lengths else len(axes or ())
    axes = tuple(axes) if axes is not None else _default_axes(n_axes)
    if len(axes) != n_axes:
        raise ValueError(f"axes {axes} do not match the records' {n_axes} leading coordinate(s)")
    clash = set(axes) & set(REQUIRED_COLUMNS)
    if clash:
        raise ValueError(f"axis names {sorted(clash)} clash with required columns")
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(MAGIC + "\n")
        if metadata:
            handle.write("# metadata: " + json.dumps(dict(metadata), sort_keys=True) + "\n")
        writer = csv.writer(handle)
        writer.writerow(["object", *axes, "row", "col", "positive"])
        for r in rows:
            writer.writerow(
                [r.object, *r.position, _format_number(r.row), _format_number(r.col), "true" if r.positive else "false"]
            )
    return path


def load_click_log(path: str | Path) -> ClickLog:
    """Read a click log; ``ValueError`` names the file and line of anything malformed."""
    path = Path(path)
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
    axes = tuple(h for h in header if h not in REQUIRED_COLUMNS)
    records = []
    for (number, _), values in zip(data_lines[1:], reader):
        if len(values) != len(header):
            raise ValueError(f"{path}:{number}: expected {len(header)} values, got {len(values)}")
        row = dict(zip(header, (v.strip() for v in values)))
        try:
            records.append(
                ClickRecord(
                    _parse_object(row["object"]),
                    float(row["row"]),
                    float(row["col"]),
                    parse_bool(row["positive"]),
                    tuple(int(float(row[a])) for a in axes),
                )
            )
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    return ClickLog(records, axes, metadata)


def read_image(path: str | Path, lazy: bool = True) -> Any:
    """Read an image file without changing its dtype: TIFF (tifffile), ``.npy`` or anything
    scikit-image reads (PNG, JPEG, BMP...). The package's only image reader.

    With ``lazy`` (the default), ``.npy`` files and uncompressed contiguous TIFFs stay memory-mapped,
    so only the regions the engine looks at are loaded.
    """
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, mmap_mode="r" if lazy else None)
    if suffix in TIFF_SUFFIXES:
        import tifffile

        if lazy:
            try:
                return tifffile.memmap(path, mode="r")
            except (ValueError, OSError):
                pass  # compressed or non-contiguous: read whole
        return np.asarray(tifffile.imread(path))
    import skimage.io

    return np.asarray(skimage.io.imread(path))
