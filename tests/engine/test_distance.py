from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fcfi.engine.distance import border_distance


@pytest.mark.parametrize("seed", range(6))
def test_border_distance_equals_the_padded_full_image_transform(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndi.binary_opening(rng.random((40, 57)) < 0.6 - 0.1 * (seed % 3))
    if seed == 5:
        mask[:] = True  # the image border alone bounds the distance
    expected = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    np.testing.assert_array_equal(border_distance(mask), expected)


def test_border_distance_of_an_empty_mask_is_zero() -> None:
    assert not border_distance(np.zeros((5, 4), bool)).any()
