"""The network's click tensors: the one place that turns click lists into ``points`` and ``new_clicks``.

Every FCFI network takes (``docs/architecture.md``)

* ``points`` (B, 2N, 3) float: per sample, N rows of positive clicks then N rows of negative ones,
  each row ``(row, col, index of the click in the session)``, padded with ``(-1, -1, -1)``;
* ``new_clicks`` (B, 1, 3) long: ``(row, col, 1 positive / 0 negative)`` of the newest click, which
  FFCM corrects the feedback around.

The engine, training, fine-tuning and the benchmarks all build them here. A click is anything that
unpacks to ``(row, col, positive)`` (the engine's :class:`~napari_fcfi.engine.clicks.Click`, a tuple).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

ClickList = Sequence[Any]  # items unpack to (row, col, positive)


def points_tensor(click_lists: Sequence[ClickList], min_per_group: int = 1) -> torch.Tensor:
    """``points`` (B, 2N, 3): positives first, then negatives, each padded with -1; field 3 = click order."""
    groups = []
    for clicks in click_lists:
        positives = [(float(r), float(c), float(i)) for i, (r, c, p) in enumerate(clicks) if p]
        negatives = [(float(r), float(c), float(i)) for i, (r, c, p) in enumerate(clicks) if not p]
        groups.append((positives, negatives))
    n = max([min_per_group] + [max(len(pos), len(neg)) for pos, neg in groups])
    pad = (-1.0, -1.0, -1.0)
    rows = [pos + [pad] * (n - len(pos)) + neg + [pad] * (n - len(neg)) for pos, neg in groups]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(click_lists), 2 * n, 3)


def newest_click_tensor(
    click_lists: Sequence[ClickList], *, truncate: bool = False, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``new_clicks`` (B, 1, 3) long: the last click of each list.

    Fractional coordinates are rounded to the nearest pixel, or truncated like the official
    predictor's ``.long()`` with ``truncate=True``; with ``size=(height, width)`` rounded clicks are
    clamped into the input.
    """
    rows = []
    for clicks in click_lists:
        if not clicks:
            raise ValueError("newest_click_tensor: every sample needs at least one click")
        row, col, positive = clicks[-1]
        rows.append([float(row), float(col), float(bool(positive))])
    newest = torch.tensor(rows, dtype=torch.float32).unsqueeze(1)
    if truncate:
        return newest.long()
    rounded = torch.round(newest).long()
    if size is not None:
        rounded[..., 0].clamp_(0, size[0] - 1)
        rounded[..., 1].clamp_(0, size[1] - 1)
    return rounded
