"""Plots of evaluation results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
