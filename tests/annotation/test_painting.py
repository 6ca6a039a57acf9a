"""Painting rules: never overwrite by default, no slivers, clean paint-over, edits, label-id ranges."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.standins import disk
from napari_fcfi.annotation.painting import (
    LabelIdError,
    check_label_id,
    label_id_range,
    next_free_label,
    paint_object,
    paint_region,
)


def test_default_paints_only_background_and_refuses_slivers():
    plane = np.zeros((60, 60), np.uint16)
    plane[disk((60, 60), 30, 30, 12)] = 5
    beside = disk((60, 60), 30, 44, 8)  # overlaps label 5 a little
    result = paint_object(plane, beside, 6, replace_label=False, overwrite=False)
    assert result.refused is None and result.blocked > 0
    assert (result.plane[plane == 5] == 5).all()  # label 5 untouched
    assert (result.plane == 6).sum() == result.painted == (beside & (plane == 0)).sum()
    # an object almost entirely on label 5 would be a sliver: refused, nothing written
    inside = disk((60, 60), 30, 33, 10)
    refused = paint_object(plane, inside, 6, replace_label=False, overwrite=False)
    assert refused.refused is not None and "paint over" in refused.refused
    assert refused.plane is plane and refused.painted == 0


def test_paint_over_leaves_no_remnants_of_the_covered_label():
    plane = np.zeros((80, 80), np.uint16)
    old = disk((80, 80), 40, 40, 15)
    plane[old] = 3
    plane[disk((80, 80), 10, 10, 5)] = 9  # another label far away
    new = disk((80, 80), 40, 41, 15)  # the same object, boundary one pixel off
    new[38:41, 38:41] = False  # and a hole inside
    result = paint_object(plane, new, 4, replace_label=False, overwrite=True)
    assert result.refused is None
    assert not (result.plane == 3).any()  # no crescent or hole remnants of label 3
    assert (result.plane[new] == 4).all() and (result.plane == 9).sum() == (plane == 9).sum()
    # a large remaining part of a covered label is left alone (the user split it)
    plane2 = np.zeros((80, 80), np.uint16)
    plane2[20:60, 10:70] = 3
    half = np.zeros((80, 80), bool)
    half[15:65, 40:75] = True
    split = paint_object(plane2, half, 4, replace_label=False, overwrite=True).plane
    assert (split[20:60, 10:38] == 3).all() and (split[half] == 4).all()


def test_edit_replaces_only_its_label():
    plane = np.zeros((40, 40), np.uint8)
    plane[5:20, 5:20] = 2
    plane[25:35, 25:35] = 7
    smaller = np.zeros((40, 40), bool)
    smaller[8:16, 8:16] = True
    out = paint_object(plane, smaller, 2, replace_label=True, overwrite=False).plane
    assert (out == 2).sum() == 64 and (out == 7).sum() == 100


def test_label_ids_follow_the_dtype():
    assert label_id_range(np.uint16) == (1, 65535)
    with pytest.raises(LabelIdError, match="70000 does not fit.*uint16.*65535"):
        check_label_id(70000, np.uint16)
    plane = np.zeros((10, 10), np.uint16)
    with pytest.raises(LabelIdError):
        paint_object(plane, np.ones((10, 10), bool), 70000, replace_label=False, overwrite=False)
    assert next_free_label(np.array([[0, 3], [7, 1]], np.uint8)) == 8
    full_top = np.array([[0, 255], [1, 2]], np.uint8)
    assert next_free_label(full_top) == 3  # past the dtype's top: the smallest free id
    everything = np.arange(256, dtype=np.uint8).reshape(16, 16)
    with pytest.raises(LabelIdError, match="every label id"):
        next_free_label(everything)


def test_paint_region_equals_painting_the_whole_plane():
    rng = np.random.default_rng(0)
    plane = np.zeros((200, 200), np.uint32)
    plane[disk((200, 200), 60, 60, 25)] = 1
    plane[disk((200, 200), 100, 100, 20)] = 2
    plane[150:190, 20:60] = 3
    for overwrite in (False, True):
        for edited in (False, True):
            mask = disk((200, 200), 80, 80, 22) | (rng.random((200, 200)) > 0.999)
            label = 2 if edited else 4
            region, partial = paint_region(plane, mask, label, replace_label=edited, overwrite=overwrite)
            whole = paint_object(plane, mask, label, replace_label=edited, overwrite=overwrite)
            assert (partial.refused is None) == (whole.refused is None)
            if whole.refused is None:
                expected = plane.copy()
                expected[region] = partial.plane
                np.testing.assert_array_equal(expected, whole.plane)
