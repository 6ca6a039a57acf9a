"""The widget's click log: every committed object with its slice and clicks in order.

Saved as the CSV that ``fcfi segment --clicks`` reads (columns ``object, z, row, col, positive``;
4D stacks add a ``t`` column before ``z``) plus a JSON side file with the model name and settings.
When the engine room offers :func:`napari_fcfi.engine.io.save_click_log`, that writer is used so
both sides share one format.
"""

from __future__ import annotations

import csv
import json
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

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows, one per click, objects numbered by their label id."""
        rows = []
        for record in self.records:
            for row, col, positive in record.clicks:
                entry: dict[str, Any] = {"object": record.label_id}
                if len(record.slice_key) == 1:
                    entry["z"] = record.slice_key[0]
                elif len(record.slice_key) == 2:
                    entry["t"], entry["z"] = record.slice_key
                elif len(record.slice_key) > 2:
                    raise ValueError(f"slice key {record.slice_key}: at most 4D stacks (t, z, y, x) are supported")
                entry.update(row=int(row), col=int(col), positive=int(bool(positive)))
                rows.append(entry)
        return rows

    def save(self, path: str | Path, *, model: str, settings: dict[str, Any], image_name: str = "") -> list[Path]:
        """Write the log to ``path`` (CSV) and ``path`` with ``.json`` (model and settings).

        Returns the written paths. Objects edited from an existing label are kept in the CSV
        (replaying them gives the edited object from scratch) and flagged in the JSON.
        """
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_suffix(".csv")
        meta = {
            "image": image_name,
            "model": model,
            "settings": settings,
            "objects": [
                {"label_id": r.label_id, "slice": list(r.slice_key), "clicks": len(r.clicks), "edited": r.edited}
                for r in self.records
            ],
        }
        rows = self.rows()
        engine_writer = _engine_writer()
        if engine_writer is not None:
            engine_writer(path, rows, meta)
        else:
            columns = ["object", *[c for c in ("t", "z") if rows and c in rows[0]], "row", "col", "positive"]
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        meta_path = path.with_suffix(".json")
        meta_path.write_text(json.dumps(meta, indent=2))
        return [path, meta_path]


def _engine_writer():
    """The engine room's click-log writer once its signature is settled; ``None`` uses the CSV above."""
    return None
