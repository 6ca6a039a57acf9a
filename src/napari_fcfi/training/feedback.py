"""Feedback from a neighbouring slice: training samples that teach the network to correct a displaced mask.

Propagation through a stack hands the network the object's mask on the neighbouring slice as its
feedback (previous mask), with one positive click at that mask's most interior pixel. Ordinary
iterative training only ever shows the network its own predictions on the same image as feedback. A
share of the training steps (``--neighbour-feedback``) therefore uses the ground-truth mask under a
random shift, scaling, rotation and erosion/dilation as the feedback, gate 1, and the automatic click
of propagation (inside the object), so the network learns to move, grow, shrink or drop a nearby mask
to fit the object in front of it, as it has to on every propagated slice and every correction.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.distance import border_distance


def neighbour_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object's ``mask`` as it might look on a neighbouring slice: moved, scaled, turned, grown or eroded."""
    mask = np.asarray(mask, bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return mask.copy()
    centre = np.array([rows.mean(), cols.mean()])
    extent = max(np.ptp(rows) + 1, np.ptp(cols) + 1)
    scale = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    angle = rng.uniform(-0.35, 0.35)
    shift = rng.normal(0.0, 0.12 * extent, 2)
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) / scale  # output -> input coordinates
    offset = centre - matrix @ (centre + shift)
    moved = ndi.affine_transform(mask.astype(np.float32), matrix, offset=offset, order=1) > 0.5
    morph = int(rng.integers(-2, 3))
    if morph > 0:
        moved = ndi.binary_dilation(moved, iterations=morph)
    elif morph < 0:
        eroded = ndi.binary_erosion(moved, iterations=-morph)
        moved = eroded if eroded.any() else moved
    return moved


def propagation_click(mask: np.ndarray, target: np.ndarray) -> Click | None:
    """Propagation's automatic click: the most interior pixel of ``mask`` that lies on the object."""
    inside = np.asarray(mask, bool) & np.asarray(target, bool)
    if not inside.any():
        return None
    depth = border_distance(mask) * inside
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return Click(int(row), int(col), True)


def neighbour_feedback_batch(
    masks: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[Click]]] | None:
    """Feedback maps (B, 1, H, W) and one-click sets for a batch of target ``masks`` (B, 1, H, W).

    Returns None when a sample's displaced mask misses its object entirely (the caller then trains
    the batch the ordinary way).
    """
    feedback = np.zeros(masks.shape, np.float32)
    clicks: list[list[Click]] = []
    for index, target in enumerate(np.asarray(masks)[:, 0] > 0.5):
        moved = neighbour_mask(target, rng)
        click = propagation_click(moved, target)
        if click is None:
            return None
        feedback[index, 0] = moved
        clicks.append([click])
    return feedback, clicks
