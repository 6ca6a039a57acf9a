"""Distance of each pixel of a mask to the nearest pixel outside it, the image border counting as outside."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from .windows import bbox_of_mask


def border_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each ``mask`` pixel to the nearest non-mask pixel or the image border.

    Equals ``distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]`` (float64, zero outside the mask).
    The transform runs only on the mask's bounding box grown by one pixel: every background pixel
    outside that box is at least as far as its projection onto the box's (background) rim, so the
    result is exact at a fraction of the cost for small objects on large images.
    """
    mask = np.asarray(mask, bool)
    dist = np.zeros(mask.shape, dtype=np.float64)
    box = bbox_of_mask(mask)
    if box is None:
        return dist
    window = np.pad(mask[box.slices], 1, mode="constant", constant_values=False)
    dist[box.slices] = distance_transform_edt(window)[1:-1, 1:-1]
    return dist
