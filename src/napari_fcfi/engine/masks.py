"""Exact, compact JSON form of a binary mask: its bounding box plus run lengths.

Used by the session state (initial masks) and by the click log (the starting mask of an edited
label), so a mask written to JSON comes back bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .windows import Box, bbox_of_mask


def encode_mask(mask: np.ndarray) -> dict[str, Any] | None:
    """``{"box": [r0, r1, c0, c1], "runs": [...]}`` of a 2D bool mask (None when empty).

    Runs alternate 0s and 1s in row-major order inside the inclusive box, starting with 0s.
    """
    mask = np.asarray(mask, bool)
    box = bbox_of_mask(mask)
    if box is None:
        return None
    return encode_box_mask(box, mask[box.slices])


def encode_box_mask(box: Box, values: np.ndarray) -> dict[str, Any]:
    """Run-length code of the bool array ``values`` that covers ``box``."""
    flat = np.asarray(values, bool).ravel()
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"box": [int(v) for v in box], "runs": [int(r) for r in runs]}


def decode_mask(data: dict[str, Any] | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The (H, W) bool mask of :func:`encode_mask` (None stays None); ValueError when it does not fit."""
    if data is None:
        return None
    box = Box(*(int(v) for v in data["box"]))
    if box.r0 < 0 or box.c0 < 0 or box.r1 >= shape[0] or box.c1 >= shape[1]:
        raise ValueError(f"mask box {list(box)} does not fit an image of shape {tuple(shape)}")
    runs = [int(r) for r in data["runs"]]
    if sum(runs) != box.height * box.width:
        raise ValueError(f"mask runs cover {sum(runs)} pixels, the box has {box.height * box.width}")
    values = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    mask = np.zeros(shape, dtype=bool)
    mask[box.slices] = values.reshape(box.height, box.width)
    return mask
