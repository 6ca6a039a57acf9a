"""Fragments: two touching proposals are merged only when no dark valley separates them, the pair is
not too large, and the network keeps their union."""

from __future__ import annotations

import numpy as np

from napari_fcfi.annotation.fragments import border_ratio, merge_fragments, touching_pairs
from napari_fcfi.engine.intensity import ImageSource
from napari_fcfi.engine.windows import Patch

SIZE = 64


class UnionKeeper:
    """Proposer stand-in: its refining pass returns the feedback (the union) as the new mask, or with
    ``refuse`` the first patch itself (what the engine does when the refined mask misses its click)."""

    threshold = 0.4

    def __init__(self, image: np.ndarray, refuse: bool = False) -> None:
        self.image_source = ImageSource(image)
        self.refuse = refuse
        self.calls = 0

    def refine_predictions(self, points, patches, **_):
        self.calls += 1
        if self.refuse:
            return list(patches)
        return [Patch.from_array(p.box, p.values.copy()) for p in patches]


def disk(row, col, radius):
    rows, cols = np.ogrid[:SIZE, :SIZE]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def one_nucleus_in_two_fragments():
    """A textured nucleus (radius 10) whose two halves are two proposals; a third object elsewhere."""
    image = np.full((SIZE, SIZE), 20.0, np.float32)
    nucleus = disk(30, 30, 10)
    image[nucleus] = 180.0
    image[disk(30, 29, 4)] = 255.0  # bright chromatin across the line between the two seeds' masks
    image[disk(24, 34, 2)] = 120.0  # and a dim spot
    image[disk(10, 52, 5)] = 200.0
    labels = np.zeros((SIZE, SIZE), np.int32)
    rows, _ = np.mgrid[:SIZE, :SIZE]
    labels[nucleus & (rows < 30)] = 1
    labels[nucleus & (rows >= 30)] = 2
    labels[disk(10, 52, 5)] = 3
    return image, labels


def test_fragments_of_one_nucleus_are_merged():
    image, labels = one_nucleus_in_two_fragments()
    assert touching_pairs(labels) == [(1, 2)]
    assert border_ratio(image / 255.0, labels == 1, labels == 2) >= 1.0
    merged = merge_fragments(UnionKeeper(image), labels, object_size=20.0, zoom=2.0, input_size=128)
    assert merged == {2: 1}
    assert np.array_equal(labels == 1, disk(30, 30, 10)) and not (labels == 2).any()
    assert np.array_equal(labels == 3, disk(10, 52, 5))  # the other object is untouched
    # the same for dark objects on a bright background (brightfield)
    image, labels = one_nucleus_in_two_fragments()
    assert merge_fragments(
        UnionKeeper(255.0 - image), labels, object_size=20.0, zoom=2.0, input_size=128
    ) == {2: 1}


def test_touching_nuclei_with_a_valley_too_large_pairs_and_a_refusing_network_stay_apart():
    image = np.full((SIZE, SIZE), 20.0, np.float32)
    left, right = disk(30, 22, 8), disk(30, 39, 8)
    image[left | right] = 200.0
    labels = np.zeros((SIZE, SIZE), np.int32)
    labels[left] = 1
    labels[right & ~left] = 2
    image[:, 30:32] = np.where(labels[:, 30:32] > 0, 90.0, 20.0)  # the dim line where they touch
    assert touching_pairs(labels) == [(1, 2)]
    assert border_ratio(image / 255.0, labels == 1, labels == 2) < 1.0
    before = labels.copy()
    proposer = UnionKeeper(image)
    assert merge_fragments(proposer, labels, object_size=16.0, zoom=2.0, input_size=128) == {}
    assert np.array_equal(labels, before) and proposer.calls == 0  # no network run for them
    # fragments of one nucleus, but together far larger than the objects of this image; or objects so
    # small that two touching proposals are two objects
    image, labels = one_nucleus_in_two_fragments()
    assert merge_fragments(UnionKeeper(image), labels, object_size=14.0, zoom=2.0, input_size=128) == {}
    assert merge_fragments(UnionKeeper(image), labels, object_size=10.0, zoom=2.0, input_size=128) == {}
    # the network does not keep the union: nothing changes
    image, labels = one_nucleus_in_two_fragments()
    assert (
        merge_fragments(UnionKeeper(image, refuse=True), labels, object_size=20.0, zoom=2.0, input_size=128)
        == {}
    )
    assert set(np.unique(labels)) == {0, 1, 2, 3}
