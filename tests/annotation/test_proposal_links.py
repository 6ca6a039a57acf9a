"""Linking segment-all proposals of neighbouring slices into one object."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.standins import disk
from napari_fcfi.annotation.proposal_links import link_to_previous

SHAPE = (64, 64)


def slice_of(*disks):
    labels = np.zeros(SHAPE, np.int32)
    for ident, (row, col, radius) in enumerate(disks, start=1):
        labels[disk(SHAPE, row, col, radius)] = ident
    return labels


def test_a_nucleus_keeps_its_id_a_new_one_gets_a_new_id():
    first, next_free = link_to_previous(None, slice_of((20, 20, 8), (45, 45, 6)), first_free=5)
    assert set(np.unique(first)) == {0, 5, 6} and next_free == 7
    # the next slice: the same two nuclei shifted by a pixel, listed in the other order, and a new one
    second, next_free = link_to_previous(first, slice_of((46, 45, 6), (21, 20, 8), (10, 50, 4)), next_free)
    assert second[21, 20] == first[20, 20] and second[46, 45] == first[45, 45]
    assert second[10, 50] == 7 and next_free == 8
    np.testing.assert_array_equal(second > 0, slice_of((46, 45, 6), (21, 20, 8), (10, 50, 4)) > 0)


def test_weak_or_ambiguous_overlaps_are_not_linked():
    first, next_free = link_to_previous(None, slice_of((30, 30, 10)), 1)
    # a much smaller object inside the big one: IoU about 0.16, a different object (or a split)
    small, next_free = link_to_previous(first, slice_of((30, 30, 4)), next_free)
    assert small[30, 30] != first[30, 30]
    # two halves of a split nucleus: only the better one continues the id
    halves = np.zeros(SHAPE, np.int32)
    halves[first > 0] = 1
    halves[:, 31:][first[:, 31:] > 0] = 2
    halves[:, 28:31] = 0
    linked, _ = link_to_previous(first, halves, next_free)
    ids = {int(linked[30, 25]), int(linked[30, 36])}
    assert len(ids) == 2  # never merged into one id


def test_empty_slices_and_shape_mismatch():
    empty, next_free = link_to_previous(None, np.zeros(SHAPE, np.int32), 3)
    assert not empty.any() and next_free == 3
    after_gap, next_free = link_to_previous(empty, slice_of((20, 20, 8)), next_free)
    assert after_gap[20, 20] == 3 and next_free == 4
    with pytest.raises(ValueError, match="differ in shape"):
        link_to_previous(np.zeros((5, 5), np.int32), slice_of((20, 20, 8)), 1)
