"""Synthetic workloads: network inputs of a later click, uint16 nucleus images, click plans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def click_sequence(size: int) -> list[tuple[float, float, bool]]:
    """Two positive clicks and one negative click inside a ``size x size`` input."""
    centre = size / 2
    return [
        (centre, centre, True),
        (centre + size * 0.08, centre - size * 0.05, True),
        (centre - size * 0.2, centre + size * 0.15, False),
    ]


def synthetic_network_input(size: int, seed: int = 0) -> tuple[Any, Any, Any, float]:
    """``(image, points, new_clicks, gate)`` of a later click on a ``size x size`` input (CPU float32).

    The image is smooth noise in [0, 1] plus a previous-mask disk; the points follow the contract:
    positives then negatives padded with ``(-1, -1, -1)``, third field the click index.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(4, size // 16), max(4, size // 16), generator=generator)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    rows = torch.arange(size, dtype=torch.float32).view(size, 1)
    cols = torch.arange(size, dtype=torch.float32).view(1, size)
    disk = (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) < (0.15 * size) ** 2).float()
    image = torch.cat([rgb, disk.view(1, 1, size, size)], dim=1).contiguous()
    clicks = click_sequence(size)
    positives = [(r, c, float(i)) for i, (r, c, p) in enumerate(clicks) if p]
    negatives = [(r, c, float(i)) for i, (r, c, p) in enumerate(clicks) if not p]
    n = max(len(positives), len(negatives))
    pad = [(-1.0, -1.0, -1.0)]
    rows_list = positives + pad * (n - len(positives)) + negatives + pad * (n - len(negatives))
    points = torch.tensor([rows_list], dtype=torch.float32)
    newest = clicks[-1]
    new_clicks = torch.tensor([[[int(newest[0]), int(newest[1]), int(newest[2])]]], dtype=torch.long)
    return image, points, new_clicks, 1.0


def synthetic_network_input_on(
    size: int, device: Any, channels_last: bool = False
) -> tuple[Any, Any, Any, float]:
    """:func:`synthetic_network_input` moved to ``device`` (image optionally channels_last)."""
    image, points, new_clicks, gate = synthetic_network_input(size)
    image, points, new_clicks = image.to(device), points.to(device), new_clicks.to(device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return image, points, new_clicks, gate


def synthetic_nuclei_image(
    size: int, seed: int = 0, count: int | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A ``size x size`` uint16 image of bright elliptic "nuclei" on a noisy background.

    Returns the image and the nuclei ``(row, col, radius)``. Built tile by tile in place so an
    8192x8192 image needs no float copy of the whole image.
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(180, 260, size=(size, size), dtype=np.uint16)
    # About 4-5 % of the pixels are nuclear at every size, so the percentile normalisation sees the
    # same intensity distribution on a 512^2 and an 8192^2 image.
    count = count if count is not None else max(4, size * size // 16384)
    nuclei = []
    margin = 40
    for _ in range(count):
        radius = int(rng.integers(10, 24))
        row = int(rng.integers(margin, size - margin))
        col = int(rng.integers(margin, size - margin))
        r0, r1, c0, c1 = row - radius, row + radius + 1, col - radius, col + radius + 1
        yy, xx = np.ogrid[r0:r1, c0:c1]
        inside = ((yy - row) / radius) ** 2 + ((xx - col) / (radius * 0.8)) ** 2 <= 1.0
        tile = image[r0:r1, c0:c1]
        tile[inside] = np.maximum(
            tile[inside], rng.integers(1800, 2400, size=int(inside.sum()), dtype=np.uint16)
        )
        nuclei.append((row, col, radius))
    return image, nuclei


def engine_click_plan(
    nuclei: Sequence[tuple[int, int, int]], clicks_per_object: int, objects: int
) -> list[list[tuple[int, int, bool]]]:
    """Per object: a centre click, then alternating clicks just inside / just outside the border."""
    plans = []
    for row, col, radius in list(nuclei)[:objects]:
        plan = [(row, col, True)]
        for k in range(1, clicks_per_object):
            angle = 2.0 * np.pi * k / max(1, clicks_per_object - 1)
            inside = k % 2 == 1
            distance = radius * (0.5 if inside else 1.6)
            plan.append((int(row + distance * np.sin(angle)), int(col + distance * np.cos(angle)), inside))
        plans.append(plan)
    return plans
