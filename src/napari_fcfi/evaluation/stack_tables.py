"""Tables of the stack robot's results (:mod:`.stacks`): clicks, stopping rule, fill between."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DISTANCES = (1, 2, 3, 5)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells):
        return (
            "| "
            + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    return "\n".join([sep, line(headers), sep, *(line(r) for r in rows), sep])


def _at(by_distance: dict, d: int) -> str:
    value = by_distance.get(d, by_distance.get(str(d)))
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def format_stack_table(results: Sequence[Any], distances: Sequence[int] = DISTANCES) -> str:
    """The main table (clicks per slice in both modes, corrections, uncorrected IoU by distance), a
    details table (no-correction share, stops, deletions, failures, chained propagation) and the
    stopping rule and fill-between table (:func:`format_stop_fill_table`)."""
    main, details = [], []
    for r in results:
        s = r.summary
        main.append(
            [
                r.stack_set,
                str(s["objects"]),
                str(s["slices"]),
                f"{s['clicks_per_slice_propagation']:.2f}",
                f"{s['clicks_per_slice_scratch']:.2f}",
                f"{s['ratio']:.2f}",
                f"{s['correction_clicks_per_propagated_slice']:.2f}",
                *(_at(s["iou_by_distance"], d) for d in distances),
            ]
        )
        details.append(
            [
                r.stack_set,
                str(s["propagated_slices"]),
                f"{100 * s['no_correction_fraction']:.0f} %",
                str(s["propagation_stops"]),
                str(s["deletions"]),
                f"{s['failures_propagation']} / {s['failures_scratch']}",
                *(_at(s["chained_iou_by_distance"], d) for d in distances),
                str(s["chained_overrun_slices"]),
            ]
        )
    head = [
        "stack set",
        "objects",
        "slices",
        "clicks/slice prop.",
        "clicks/slice scratch",
        "ratio",
        "corr./prop. slice",
        *(f"IoU d={d}" for d in distances),
    ]
    head2 = [
        "stack set",
        "prop. slices",
        "no corr.",
        "prop. stops",
        "deletions",
        "fail prop/scratch",
        *(f"chained d={d}" for d in distances),
        "chained overrun",
    ]
    return _table(head, main) + "\n" + _table(head2, details) + "\n" + format_stop_fill_table(results)


def _number(value: Any, fmt: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def format_stop_fill_table(results: Sequence[Any]) -> str:
    """Per set: false stops (one step from the corrected neighbour, per propagated slice), object ends
    inside the stacks, slices filled past them (one step: deletions; chained: mean overrun per end),
    chained propagations that ended early, and the fill-between mode's clicks."""
    rows = []
    for r in results:
        s = r.summary
        rate = None if s["false_stop_rate"] is None else 100 * s["false_stop_rate"]
        rows.append(
            [
                r.stack_set,
                f"{s['propagation_stops']} / {s['propagated_slices']} ({_number(rate, '.1f')} %)",
                str(s["ends"]),
                f"{s['deletions']} / {s['ends']}",
                _number(s["mean_overrun"], ".2f"),
                f"{s['chained_stops']} / {2 * s['objects']}",
                _number(s.get("clicks_per_slice_fill"), ".2f"),
                _number(s.get("ratio_fill"), ".2f"),
                _number(None if s.get("ratio_fill") in (None, 0) else 1 / s["ratio_fill"], ".2f"),
                f"{s.get('fill_review_slices', 0)} / {s.get('filled_slices', 0)}",
            ]
        )
    head = [
        "stack set",
        "false stops",
        "ends",
        "one-step overrun",
        "mean chained overrun",
        "chained early ends",
        "clicks/slice fill",
        "fill / scratch",
        "scratch / fill",
        "review / filled",
    ]
    return _table(head, rows)


__all__ = ["DISTANCES", "format_stack_table", "format_stop_fill_table"]
