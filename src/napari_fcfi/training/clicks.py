"""Click simulation for training: the initial multi-point sampler and the robot's next click.

Coordinates are ``(row, col)`` in the pixel grid of the training crop. The network's click
tensor layout (``points`` (B, 2N, 3) with positives first, negatives after, each padded with
``(-1, -1, -1)``; ``new_clicks`` (B, K, 3) with ``(row, col, is_positive)``) is built by
:func:`points_tensor` and :func:`new_clicks_tensor`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage as ndi


@dataclass
class ClickSet:
    """Clicks of one sample in the order they were made."""

    clicks: list[tuple[int, int, bool]] = field(default_factory=list)  # (row, col, is_positive)

    @property
    def positives(self) -> list[tuple[int, int]]:
        return [(r, c) for r, c, p in self.clicks if p]

    @property
    def negatives(self) -> list[tuple[int, int]]:
        return [(r, c) for r, c, p in self.clicks if not p]

    @property
    def newest(self) -> tuple[int, int, bool]:
        return self.clicks[-1]


def _padded_edt(region: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel outside ``region``, the image border counting as outside.

    The robot user clicks far from both the object boundary and the crop border, so a click
    is never put on a sliver that the crop cut off.
    """
    padded = np.pad(region, 1, constant_values=False)
    return ndi.distance_transform_edt(padded)[1:-1, 1:-1]


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
) -> ClickSet:
    """Random initial clicks on a binary object ``mask`` (H, W): 1..max_positive inside, 0..max_negative outside.

    Most samples (``single_click_prob``) get one positive click and nothing else, which is how
    every session in the engine starts. The first positive goes to the object's centre (the
    robot user's first click) with probability ``center_first_prob``, otherwise to a random
    interior point weighted by the distance to the boundary. Negatives fall in the background
    near the object (where a user would put them) or on neighbouring structures.
    """
    mask = np.asarray(mask, bool)
    clicks = ClickSet()
    inner = _padded_edt(mask)
    if inner.max() <= 0:
        raise ValueError("sample_initial_clicks: the object mask is empty")
    if rng.random() < center_first_prob:
        first = np.unravel_index(int(np.argmax(inner)), mask.shape)
    else:
        first = _pick_weighted(rng, inner**2)
    clicks.clicks.append((int(first[0]), int(first[1]), True))
    if rng.random() < single_click_prob:
        return clicks

    n_pos = int(rng.integers(0, max_positive))  # extra positives
    n_neg = int(rng.integers(0, max_negative + 1))
    for _ in range(n_pos):
        point = _pick_weighted(rng, (inner > 0.3 * inner.max()) * inner)
        if point is not None:
            clicks.clicks.append((int(point[0]), int(point[1]), True))
    if n_neg:
        outer = _padded_edt(~mask)
        # Background within a band around the object, weighted towards being near it.
        band = (outer >= 2) & (outer <= max(6.0, 2.0 * float(inner.max())))
        for _ in range(n_neg):
            point = _pick_weighted(rng, band.astype(np.float32))
            if point is not None:
                clicks.clicks.append((int(point[0]), int(point[1]), False))
    # Shuffle all but the first click: the order the user made them in is arbitrary.
    rest = clicks.clicks[1:]
    order = rng.permutation(len(rest))
    clicks.clicks = clicks.clicks[:1] + [rest[i] for i in order]
    return clicks


def next_robot_click(prob: np.ndarray, gt: np.ndarray, threshold: float = 0.49) -> tuple[int, int, bool] | None:
    """The robot user's next click given a probability map and the ground truth (both (H, W)).

    The click goes into the larger error: a false-negative region gets a positive click, a
    false-positive region a negative one, at the pixel farthest from the error's boundary
    (and from the crop border). Returns ``None`` when the prediction has no error.
    """
    pred = np.asarray(prob) > threshold
    gt = np.asarray(gt, bool)
    fn_dist = _padded_edt(gt & ~pred)
    fp_dist = _padded_edt(~gt & pred)
    fn_max, fp_max = float(fn_dist.max()), float(fp_dist.max())
    if fn_max <= 0 and fp_max <= 0:
        return None
    positive = fn_max >= fp_max
    dist = fn_dist if positive else fp_dist
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(row), int(col), bool(positive)


def points_tensor(click_sets: list[ClickSet], min_per_group: int = 1) -> torch.Tensor:
    """The network's ``points`` tensor (B, 2N, 3): positives first, then negatives, -1 padded.

    The third column is the index of the click in the session (order of clicking).
    """
    n = max([min_per_group] + [max(len(s.positives), len(s.negatives)) for s in click_sets])
    out = torch.full((len(click_sets), 2 * n, 3), -1.0)
    for b, click_set in enumerate(click_sets):
        n_pos = n_neg = 0
        for index, (row, col, positive) in enumerate(click_set.clicks):
            slot = n_pos if positive else n + n_neg
            out[b, slot] = torch.tensor([row, col, index], dtype=torch.float32)
            if positive:
                n_pos += 1
            else:
                n_neg += 1
    return out


def new_clicks_tensor(click_sets: list[ClickSet]) -> torch.Tensor:
    """The network's ``new_clicks`` tensor (B, 1, 3): ``(row, col, is_positive)`` of the newest click."""
    rows = [[r, c, int(p)] for r, c, p in (s.newest for s in click_sets)]
    return torch.tensor(rows, dtype=torch.long).unsqueeze(1)
