"""The result of an evaluation (:class:`EvalResult`, per-object :class:`ObjectResult`), its JSON and table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.result_json import JsonResult


@dataclass
class ObjectResult:
    """Robot session on one object: IoU and click time after each click, and the clicks."""

    sample_id: str
    ious: list[float]
    times: list[float]
    clicks: list[tuple[int, int, bool]] = field(default_factory=list)


@dataclass
class EvalResult(JsonResult):
    """All object sessions of one segmenter on one dataset, with the headline metrics."""

    segmenter: str
    dataset: str
    max_clicks: int
    objects: list[ObjectResult]
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def all_ious(self) -> list[list[float]]:
        return [o.ious for o in self.objects]

    @property
    def click_times(self) -> list[float]:
        return [t for o in self.objects for t in o.times]

    def noc(self, threshold: float) -> float:
        return metrics.noc(self.all_ious, threshold, self.max_clicks)

    def nof(self, threshold: float) -> int:
        return metrics.nof(self.all_ious, threshold, self.max_clicks)

    def iou_curve(self) -> np.ndarray:
        return metrics.mean_iou_curve(self.all_ious, self.max_clicks)

    @property
    def summary(self) -> dict:
        """Headline numbers (see :func:`napari_fcfi.evaluation.metrics.summarize`)."""
        return metrics.summarize(self.all_ious, self.click_times, self.max_clicks)

    def to_dict(self) -> dict:
        return {
            "segmenter": self.segmenter,
            "dataset": self.dataset,
            "max_clicks": self.max_clicks,
            "elapsed_s": self.elapsed_s,
            "settings": self.settings,
            "summary": self.summary,
            "skipped": self.skipped,
            "objects": [asdict(o) for o in self.objects],
        }

    @classmethod
    def load_json(cls, path: str | Path) -> EvalResult:
        data = json.loads(Path(path).read_text())
        objects = [
            ObjectResult(o["sample_id"], o["ious"], o["times"], [tuple(c) for c in o.get("clicks", [])])
            for o in data["objects"]
        ]
        return cls(
            data["segmenter"],
            data["dataset"],
            data["max_clicks"],
            objects,
            data.get("skipped", []),
            data.get("elapsed_s", 0.0),
            data.get("settings", {}),
        )


def _cell(fmt: str, value: Any) -> str:
    """A table cell; "-" for a number not measured (e.g. IoU@5 with at most 3 clicks)."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return fmt.format(value)


def format_table(results: Sequence[EvalResult]) -> str:
    """Plain-text results table: one row per segmenter."""
    columns = [
        ("segmenter", "{}", lambda r, s: r.segmenter),
        ("NoC@85", "{:.2f}", lambda r, s: s["noc@85"]),
        ("NoC@90", "{:.2f}", lambda r, s: s["noc@90"]),
        ("NoC@95", "{:.2f}", lambda r, s: s["noc@95"]),
        ("NoF@85", "{}", lambda r, s: s["nof@85"]),
        ("NoF@90", "{}", lambda r, s: s["nof@90"]),
        ("IoU@1", "{:.3f}", lambda r, s: s.get("iou@1", float("nan"))),
        ("IoU@3", "{:.3f}", lambda r, s: s.get("iou@3", float("nan"))),
        ("IoU@5", "{:.3f}", lambda r, s: s.get("iou@5", float("nan"))),
        ("SPC mean", "{:.3f}", lambda r, s: s["spc_mean"]),
        ("SPC median", "{:.3f}", lambda r, s: s["spc_median"]),
        ("objects", "{}", lambda r, s: s["objects"]),
    ]
    rows = []
    for r in results:
        s = r.summary
        rows.append([_cell(fmt, get(r, s)) for _, fmt, get in columns])
    headers = [c[0] for c in columns]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells):
        return (
            "| "
            + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    out = [sep, line(headers), sep, *(line(r) for r in rows), sep]
    return "\n".join(out)
