"""Plots of evaluation results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# matplotlib is the optional [eval] extra. Checked when `fcfi eval` imports this module at its start, so
# a missing install is reported before the evaluation runs, not after it.
try:
    import matplotlib  # noqa: F401
except ImportError as error:
    raise ImportError(
        'fcfi eval draws its plots with matplotlib, an optional extra: pip install "napari-fcfi[eval]"'
    ) from error


def plot_iou_curves(results: Sequence, path: str | Path, title: str | None = None) -> Path:
    """Save a PNG of mean IoU after k clicks, one curve per :class:`EvalResult` in ``results``."""
    # A bare Figure with its own Agg canvas: no pyplot, so the global backend (napari's Qt) is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("plot_iou_curves: no results to plot")
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    max_clicks = max(r.max_clicks for r in results)
    for r in results:
        curve = r.iou_curve()
        clicks = np.arange(1, len(curve) + 1)
        s = r.summary
        ax.plot(
            clicks,
            curve,
            marker="o",
            markersize=3,
            label=f"{r.segmenter} (NoC@85 {s['noc@85']:.2f}, NoC@90 {s['noc@90']:.2f})",
        )
    for level in (0.85, 0.90):
        ax.axhline(level, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlim(1, max_clicks)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("number of clicks")
    ax.set_ylabel("mean IoU")
    dataset = results[0].dataset
    n_objects = len(results[0].objects)
    ax.set_title(title or f"{dataset}: mean IoU vs clicks ({n_objects} objects)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_stack_results(results: Sequence, path: str | Path, title: str | None = None) -> Path:
    """Save a PNG for :class:`~.stacks.StackEvalResult` objects: left, mean IoU of the uncorrected
    propagation vs distance from the start slice (solid: one step from the corrected neighbour;
    dashed: chained from the start slice, no corrections); right, clicks per slice with propagation
    vs annotating every slice from scratch, one pair of bars per stack set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not results:
        raise ValueError("plot_stack_results: no results to plot")
    fig = Figure(figsize=(11.0, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax_iou, ax_clicks = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = [f"C{i}" for i in range(10)]
    summaries = [r.summary for r in results]
    for r, s, colour in zip(results, summaries, colours):
        for key, style, suffix in (
            ("iou_by_distance", "solid", ""),
            ("chained_iou_by_distance", "dashed", " (chained)"),
        ):
            points = sorted((int(d), v) for d, v in s[key].items() if np.isfinite(v))
            if points:
                d, v = zip(*points)
                ax_iou.plot(
                    d,
                    v,
                    color=colour,
                    linestyle=style,
                    marker="o" if style == "solid" else "x",
                    markersize=3,
                    label=f"{r.stack_set}{suffix}",
                )
    ax_iou.axhline(results[0].target_iou, color="grey", linewidth=0.6, linestyle=":")
    ax_iou.set_ylim(0.0, 1.0)
    ax_iou.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_iou.set_xlabel("distance from the annotated slice (slices)")
    ax_iou.set_ylabel("mean IoU before correction")
    ax_iou.set_title("uncorrected propagation")
    ax_iou.grid(True, alpha=0.3)
    ax_iou.legend(loc="lower left", fontsize=7)
    x = np.arange(len(results))
    bars = [
        ("with propagation", [s["clicks_per_slice_propagation"] for s in summaries]),
        ("every slice from scratch", [s["clicks_per_slice_scratch"] for s in summaries]),
    ]
    fill = [s.get("clicks_per_slice_fill") for s in summaries]
    if any(f is not None for f in fill):  # the fill-between mode was measured too
        bars.insert(
            1,
            (
                "fill between (every 5th annotated)"
                if results[0].settings.get("fill_every") == 5
                else "fill between",
                [np.nan if f is None else f for f in fill],
            ),
        )
    width = 0.8 / len(bars)
    for number, (label, values) in enumerate(bars):
        offset = (number - (len(bars) - 1) / 2) * width
        ax_clicks.bar(x + offset, values, width, label=label)
        for xi, value in zip(x, values):
            if np.isfinite(value):
                ax_clicks.text(xi + offset, value, f"{value:.2f}", ha="center", va="bottom", fontsize=6)
    ax_clicks.set_xticks(
        x,
        [f"{r.stack_set}\n{s['objects']} obj / {s['slices']} sl" for r, s in zip(results, summaries)],
        fontsize=8,
    )
    ax_clicks.set_ylabel(f"clicks per slice to IoU {results[0].target_iou:g}")
    ax_clicks.set_title("annotation effort")
    ax_clicks.legend(fontsize=8)
    ax_clicks.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title or f"stacks: {results[0].segmenter}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
