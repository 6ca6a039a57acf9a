"""Structural-integrity post-processing (after FCA-Net): keep only mask parts tied to a positive click.

A click-based segmenter sometimes lights up a second, similar-looking object far from every click.
The user meant one object, so parts of the mask that are not 8-connected to a positive click are
removed. When no positive click lies on the mask at all the mask is left alone: deleting everything
because the network disagrees with one click pixel would lose more than it fixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def connected_to_points(mask: np.ndarray, points: Iterable[tuple[int, int]]) -> np.ndarray:
    """Boolean mask of the 8-connected components of ``mask`` that contain one of ``points``.

    ``points`` are ``(row, col)`` in ``mask`` coordinates; points outside the array are ignored.
    Returns ``mask`` itself (not a copy) when no point hits the mask.
    """
    height, width = mask.shape
    inside = [(r, c) for r, c in points if 0 <= r < height and 0 <= c < width and mask[r, c]]
    if not inside:
        return mask
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    # A lookup table indexed by label is one gather pass (np.isin makes several on large windows).
    keep = np.zeros(count + 1, dtype=bool)
    keep[[labels[r, c] for r, c in inside]] = True
    return keep[labels]


def suppress_unconnected(
    probability: np.ndarray, threshold: float, points: Iterable[tuple[int, int]]
) -> np.ndarray:
    """Zero the probability of mask components (``probability > threshold``) not connected to ``points``.

    Works in place on ``probability`` and returns it. Zeroing (instead of only editing the binary
    mask) keeps ``mask == probability > threshold`` true and keeps stray parts out of the feedback
    that the next click sends to the network.
    """
    mask = probability > threshold
    kept = connected_to_points(mask, points)
    if kept is not mask:
        probability[mask & ~kept] = 0.0
    return probability


def enforce_clicks(probability: np.ndarray, window: Any, clicks: Iterable[Any], radius: float) -> np.ndarray:
    """Click consistency: pixels within ``radius`` of a click take the click's label (in place).

    A negative click on a one-pixel boundary error is often outvoted by the network (the clicked
    pixel stays in the mask), which users read as "the click did nothing". Clicks are applied in
    order, so a later click wins where two disks overlap. ``probability`` covers ``window`` (a box
    with ``r0``/``c0``); ``clicks`` have native ``row``/``col``/``positive``. Returns ``probability``.
    """
    height, width = probability.shape
    reach = int(np.floor(radius))
    offsets = np.arange(-reach, reach + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius
    for click in clicks:
        row, col = int(click.row) - window.r0, int(click.col) - window.c0
        r0, r1 = max(row - reach, 0), min(row + reach + 1, height)
        c0, c1 = max(col - reach, 0), min(col + reach + 1, width)
        if r0 >= r1 or c0 >= c1:
            continue  # the click is outside this window
        part = disk[r0 - (row - reach) : r1 - (row - reach), c0 - (col - reach) : c1 - (col - reach)]
        probability[r0:r1, c0:c1][part] = 1.0 if click.positive else 0.0
    return probability
