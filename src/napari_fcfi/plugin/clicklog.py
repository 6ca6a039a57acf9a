"""The widget's click log: every committed object with its slice and clicks in order.

Saved through :func:`napari_fcfi.engine.io.save_click_log`, the CSV that ``fcfi segment --clicks``
reads (columns ``object, [t,] [z,] row, col, positive``; model name and settings in its metadata
line), so the widget and the headless CLI share one format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_fcfi.plugin.layers import SliceKey


@dataclass
class ObjectRecord:
    """One committed object: its label id, slice and clicks ``(row, col, positive)`` in order."""

    label_id: int
    slice_key: SliceKey
    clicks: list[tuple[int, int, bool]]
    edited: bool = False


@dataclass
class ClickLog:
    records: list[ObjectRecord] = field(default_factory=list)

    def add(self, record: ObjectRecord) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def save(self, path: str | Path, *, model: str, settings: dict[str, Any], image_name: str = "") -> Path:
        """Write the log to ``path`` with :func:`napari_fcfi.engine.io.save_click_log`; returns the path.

        The model name, settings, image name and per-object notes (slice, edited or new) go into
        the file's metadata line. An object edited from an existing label replays from scratch.
        """
        from napari_fcfi.engine.io import save_click_log

        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_suffix(".csv")
        lengths = {len(r.slice_key) for r in self.records}
        if len(lengths) > 1:
            raise ValueError(
                f"click log mixes slices of {sorted(lengths)} stack axes; save one image per log"
            )
        axes = {0: (), 1: ("z",), 2: ("t", "z")}.get(lengths.pop() if lengths else 0)
        if axes is None:
            raise ValueError("click logs support at most 4D stacks (t, z, y, x)")
        metadata = {
            "image": image_name,
            "model": model,
            "settings": settings,
            "objects": [
                {
                    "label_id": r.label_id,
                    "slice": list(r.slice_key),
                    "clicks": len(r.clicks),
                    "edited": r.edited,
                }
                for r in self.records
            ],
        }
        rows = [
            {
                "object": r.label_id,
                "row": row,
                "col": col,
                "positive": bool(positive),
                "position": r.slice_key,
            }
            for r in self.records
            for row, col, positive in r.clicks
        ]
        return save_click_log(path, rows, metadata, axes=axes)
