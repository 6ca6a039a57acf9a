"""The initial clicks of a training sample (the robot's later clicks come from the evaluation robot).

Coordinates are ``(row, col)`` in the pixel grid of the training crop; a sample's clicks are a list
of :class:`napari_fcfi.engine.clicks.Click` in the order they were made. The network's tensors are
built by :mod:`napari_fcfi.model.click_encoding`, the robot's next click by
:func:`napari_fcfi.evaluation.robot.robot_click`, as everywhere else in the package.
"""

from __future__ import annotations

import numpy as np

from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.distance import border_distance


def _pick_weighted(rng: np.random.Generator, weights: np.ndarray) -> tuple[int, int] | None:
    flat = weights.ravel().astype(np.float64)
    total = flat.sum()
    if total <= 0:
        return None
    index = int(rng.choice(flat.size, p=flat / total))
    return divmod(index, weights.shape[1])


def sample_initial_clicks(
    mask: np.ndarray,
    rng: np.random.Generator,
    max_positive: int = 4,
    max_negative: int = 3,
    single_click_prob: float = 0.6,
    center_first_prob: float = 0.5,
) -> list[Click]:
    """Random initial clicks on a binary object ``mask`` (H, W): 1..max_positive inside, 0..max_negative outside.

    Most samples (``single_click_prob``) get one positive click and nothing else, which is how
    every session in the engine starts. The first positive goes to the object's centre (the
    robot user's first click) with probability ``center_first_prob``, otherwise to a random
    interior point weighted by the distance to the boundary. Negatives fall in the background
    near the object (where a user would put them) or on neighbouring structures.
    """
    mask = np.asarray(mask, bool)
    clicks: list[Click] = []
    inner = border_distance(mask)
    if inner.max() <= 0:
        raise ValueError("sample_initial_clicks: the object mask is empty")
    if rng.random() < center_first_prob:
        first = np.unravel_index(int(np.argmax(inner)), mask.shape)
    else:
        first = _pick_weighted(rng, inner**2)
    clicks.append(Click(int(first[0]), int(first[1]), True))
    if rng.random() < single_click_prob:
        return clicks

    n_pos = int(rng.integers(0, max_positive))  # extra positives
    n_neg = int(rng.integers(0, max_negative + 1))
    for _ in range(n_pos):
        point = _pick_weighted(rng, (inner > 0.3 * inner.max()) * inner)
        if point is not None:
            clicks.append(Click(int(point[0]), int(point[1]), True))
    if n_neg:
        outer = border_distance(~mask)
        # Background within a band around the object, weighted towards being near it.
        band = (outer >= 2) & (outer <= max(6.0, 2.0 * float(inner.max())))
        for _ in range(n_neg):
            point = _pick_weighted(rng, band.astype(np.float32))
            if point is not None:
                clicks.append(Click(int(point[0]), int(point[1]), False))
    # Shuffle all but the first click: the order the user made them in is arbitrary.
    rest = clicks[1:]
    order = rng.permutation(len(rest))
    return clicks[:1] + [rest[i] for i in order]
