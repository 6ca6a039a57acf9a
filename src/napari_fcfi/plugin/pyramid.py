"""Labels layers of very large planes: a multiscale pyramid, so a change redraws only what is on screen.

napari draws a plane wider or taller than the graphics card's largest texture (16384 px here, 8192 on
many laptops) as a downsampled copy, and then redraws the whole plane after every change, however
small (seconds at 20000 x 20000). A multiscale labels layer is drawn from the level that fits the
screen, one tile at a time, so a commit costs what its region and the screen cost.

For planes larger than :data:`LARGE_PLANE_SIDE` on a side the plugin therefore makes its own labels
and preview layers multiscale: level 0 is the full-resolution array (what is saved and journaled),
each coarser level samples every 2nd, 4th, ... row and column of it (labels must never be averaged).
:func:`write_region` writes a region into level 0 and the matching samples of the coarser levels and
asks napari to redraw. napari's own brush and undo do not edit multiscale labels; FCFI's edit, undo
and reset work as usual.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Planes with a side above this get multiscale labels and preview layers.
LARGE_PLANE_SIDE = 8192
#: The coarsest level's longest side is at most this (napari shows it when zoomed out).
COARSEST_SIDE = 2048


def needs_pyramid(plane_shape: tuple[int, int]) -> bool:
    return max(plane_shape) > LARGE_PLANE_SIDE


def pyramid_levels(base: np.ndarray) -> list[np.ndarray]:
    """``base`` and its coarser levels (every 2**k-th row and column of the last two axes)."""
    levels, factor = [base], 2
    while max(base.shape[-2:]) / factor > COARSEST_SIDE / 2 and min(base.shape[-2:]) >= 2 * factor:
        levels.append(np.ascontiguousarray(base[..., ::factor, ::factor]))
        factor *= 2
    return levels


def is_pyramid(layer: Any) -> bool:
    return bool(getattr(layer, "multiscale", False))


def write_region(layer: Any, key: tuple[int, ...], region: tuple[slice, slice], values: np.ndarray) -> None:
    """Write ``values`` at ``region`` of slice ``key`` into every level of a multiscale layer; redraw."""
    levels = list(layer.data)
    base = levels[0]
    plane = base[key] if key else base
    plane[region] = values
    rows, cols = region
    for index, level in enumerate(levels[1:], start=1):
        factor = 2**index
        r0, r1 = -(-rows.start // factor), -(-rows.stop // factor)  # samples at multiples of factor
        c0, c1 = -(-cols.start // factor), -(-cols.stop // factor)
        if r0 < r1 and c0 < c1:
            target = level[key] if key else level
            target[r0:r1, c0:c1] = plane[
                r0 * factor : r1 * factor : factor, c0 * factor : c1 * factor : factor
            ]
    layer.refresh()


def clear(layer: Any) -> None:
    """Zero every level of a multiscale layer and redraw."""
    for level in layer.data:
        level[...] = 0
    layer.refresh()


__all__ = [
    "COARSEST_SIDE",
    "LARGE_PLANE_SIDE",
    "clear",
    "is_pyramid",
    "needs_pyramid",
    "pyramid_levels",
    "write_region",
]
