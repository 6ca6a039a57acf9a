"""Box helpers of engine.windows: the one box type of the package."""

from __future__ import annotations

import numpy as np

from napari_fcfi.engine.windows import Box, bbox_of_mask, bbox_union


def test_bbox_union_holds_every_box_and_skips_none():
    assert bbox_union([]) is None and bbox_union([None, None]) is None
    assert bbox_union([None, Box(2, 3, 4, 5)]) == Box(2, 3, 4, 5)
    assert bbox_union([Box(2, 3, 4, 5), None, Box(0, 2, 6, 9)]) == Box(0, 3, 4, 9)


def test_the_union_of_two_masks_boxes_is_the_box_of_their_union():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random((12, 15)) > 0.97, rng.random((12, 15)) > 0.97
        assert bbox_union([bbox_of_mask(a), bbox_of_mask(b)]) == bbox_of_mask(a | b)
