"""The second seeding round of segment all: one seed per uncovered foreground component of object size."""

from __future__ import annotations

import numpy as np

from helpers.standins import disk
from napari_fcfi.annotation.seeds import uncovered_seeds
from napari_fcfi.engine.intensity import ImageSource


def test_uncovered_components_of_object_size_get_one_seed_each_at_their_inside():
    shape = (120, 160)
    image = np.full(shape, 10, np.uint16)
    nuclei = [(30, 30, 10), (30, 90, 10), (90, 60, 10)]
    for row, col, radius in nuclei:
        image[disk(shape, row, col, radius)] = 200
    image[disk(shape, 95, 130, 2)] = 200  # a speck: a micronucleus or debris
    labels = np.zeros(shape, np.int32)
    labels[disk(shape, 30, 30, 11)] = 1  # the first nucleus already has a proposal
    source = ImageSource(image)
    area = np.pi * 10**2
    seeds = uncovered_seeds(source, labels, 0.5 * area)
    assert len(seeds) == 2  # the two nuclei without a proposal; not the speck, not the covered one
    for (row, col), (true_row, true_col) in zip(sorted(seeds), sorted((r, c) for r, c, _ in nuclei[1:])):
        assert abs(row - true_row) <= 1 and abs(col - true_col) <= 1
    assert uncovered_seeds(source, labels, 0.5 * area) == seeds  # deterministic
    everything = np.ones(shape, np.int32)
    assert uncovered_seeds(source, everything, 0.5 * area) == []
    assert uncovered_seeds(ImageSource(np.zeros(shape, np.uint8)), labels, 10) == []  # constant image
