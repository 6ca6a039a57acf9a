"""Structural-integrity post-processing (after FCA-Net): keep only mask parts tied to a positive click.

A click-based segmenter sometimes lights up a second, similar-looking object far from every click.
The user meant one object, so parts of the mask that are not 8-connected to a positive click are
removed. When no positive click lies on the mask at all the mask is left alone: deleting everything
because the network disagrees with one click pixel would lose more than it fixes.
"""

from __future__ import annotations

from collections.abc import Iterable

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
