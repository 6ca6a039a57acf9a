"""Stand-ins with exact, predictable output for the tests (the one place they are defined).

* :class:`BlobNet`: a deterministic network that follows the FCFI call contract (engine logic);
* :class:`ContractStandIn`: a tiny trainable network with every output the trainer's losses need;
* :class:`DiskSegmenter`: an engine-session stand-in (disks at clicks) for plugin tests;
* :class:`GrowingDiskSegmenter`: an evaluation segmenter whose IoU per click is known;
* :class:`UnsureCopier`: a bright-region session that copies its feedback, unsure, where nothing is bright.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_fcfi.engine.settings import DEFAULT_THRESHOLD

RADIUS = 5


class BlobNet(torch.nn.Module):
    """Deterministic network following the call contract, for engine logic tests.

    logits = blobs at positive (+) / negative (-) points + ``brightness_weight`` * (brightness - 0.5)
    + gate * 6 * (feedback - 0.5) - 2 + ``column_slope`` * column (breaks left/right symmetry).
    Feedback outputs are at stride 4. Every call is recorded in ``calls``.
    """

    def __init__(self, radius: float = 6.0, brightness_weight: float = 0.0, column_slope: float = 0.0):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.radius = radius
        self.brightness_weight = brightness_weight
        self.column_slope = column_slope
        self.calls: list[dict] = []

    def forward(self, image, points, new_clicks, gate, is_training=False):
        assert image.ndim == 4 and image.shape[1] == 4 and points.shape[-1] == 3
        self.calls.append(
            {
                "shape": tuple(image.shape),
                "points": points.clone(),
                "new_clicks": new_clicks.clone(),
                "gate": float(gate),
                "image": image.clone(),
            }
        )
        b, _, h, w = image.shape
        rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
        cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
        half = points.shape[1] // 2
        logits = torch.full((b, h, w), -2.0)
        for j in range(points.shape[1]):
            r = points[:, j, 0].view(b, 1, 1)
            c = points[:, j, 1].view(b, 1, 1)
            valid = (points[:, j, 2] >= 0).float().view(b, 1, 1)
            blob = torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * self.radius**2))
            logits = logits + valid * (12.0 if j < half else -12.0) * blob
        logits = logits[:, None] * self.scale
        logits = logits + self.brightness_weight * (image[:, :3].mean(1, keepdim=True) - 0.5)
        logits = logits + float(gate) * 6.0 * (image[:, 3:4] - 0.5) + self.column_slope * cols[:, None]
        feedback = F.avg_pool2d(torch.sigmoid(logits), 4, ceil_mode=True)
        return {"instances": logits, "updated_feedback1": feedback, "updated_feedback2": feedback}


class ContractStandIn(nn.Module):
    """A tiny network that follows the FCFI call contract (docs/architecture.md).

    It encodes clicks as disks, has a stride-4 feature map, an FFCM-like corrected feedback
    inside a soft window around the newest click and a CFFM-like fused feedback, so that
    every loss term of the trainer is exercised without the real (slow) network.
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.config = {"arch": "stand-in", "width": width}
        self.encoder = nn.Sequential(
            nn.Conv2d(6, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.feedback1_head = nn.Conv2d(width + 1, 1, 3, padding=1)
        self.feedback2_head = nn.Conv2d(width + 1, 1, 3, padding=1)
        self.head = nn.Conv2d(width + 1, 1, 3, padding=1)

    @staticmethod
    def _disks(points: torch.Tensor, height: int, width: int, radius: float = 5.0) -> torch.Tensor:
        rows = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1)
        cols = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width)
        n = points.shape[1] // 2
        maps = []
        for group in (points[:, :n], points[:, n:]):
            valid = (group[..., 0] >= 0).float().view(*group.shape[:2], 1, 1)
            d2 = (rows - group[..., 0].view(*group.shape[:2], 1, 1)) ** 2 + (
                cols - group[..., 1].view(*group.shape[:2], 1, 1)
            ) ** 2
            maps.append(((d2 <= radius**2).float() * valid).amax(dim=1, keepdim=True))
        return torch.cat(maps, dim=1)

    def forward(self, image, points, new_clicks, gate, is_training=False):
        b, _, h, w = image.shape
        prev = image[:, 3:4]
        x = torch.cat([image, self._disks(points, h, w)], dim=1)
        features = self.encoder(x)
        small_prev = F.interpolate(prev, size=features.shape[-2:], mode="bilinear", align_corners=True)
        feedback1 = torch.sigmoid(self.feedback1_head(torch.cat([features, small_prev], 1)))
        rows = torch.arange(features.shape[-2], dtype=torch.float32).view(1, 1, -1, 1)
        cols = torch.arange(features.shape[-1], dtype=torch.float32).view(1, 1, 1, -1)
        click = new_clicks[:, 0].float() / 4
        window = torch.sigmoid(6 - (rows - click[:, 0].view(-1, 1, 1, 1)).abs()) * torch.sigmoid(
            6 - (cols - click[:, 1].view(-1, 1, 1, 1)).abs()
        )
        feedback1 = window * feedback1 + (1 - window) * small_prev
        feedback2 = torch.sigmoid(self.feedback2_head(torch.cat([features, feedback1], 1)))
        logits = self.head(torch.cat([features, gate * feedback2 + (1 - gate) * 0.5], 1))
        out = {
            "instances": F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=True),
            "updated_feedback1": feedback1,
            "updated_feedback2": feedback2,
        }
        if is_training:
            out["valid_masks"] = window
        return out


class DiskSegmenter:
    """Engine stand-in: object = union of disks at positive clicks minus disks at negative ones."""

    def __init__(self, model, delay: float = 0.0):
        self.model = model
        self.delay = delay
        self.threshold = DEFAULT_THRESHOLD
        self._history: list[list[tuple[int, int, bool]]] = [[]]
        self._future: list[list[tuple[int, int, bool]]] = []
        self.image = None
        self.initial = None
        self.channel = None

    def set_image(self, image, channel_axis=None, channel=None, initial_mask=None):
        self.image = np.asarray(image)
        self.channel_axis, self.channel = channel_axis, channel
        if channel_axis is None and self.image.ndim == 3 and self.image.shape[-1] in (3, 4):
            channel_axis = 2  # RGB(A), as the engine reads it
        shape = (
            self.image.shape
            if channel_axis is None
            else tuple(n for ax, n in enumerate(self.image.shape) if ax != channel_axis)
        )
        if len(shape) != 2:
            raise ValueError(f"not a 2D slice: {self.image.shape}")
        self.shape = shape
        self.initial = None if initial_mask is None else np.asarray(initial_mask, bool)
        self._history, self._future = [[]], []

    @property
    def clicks(self):
        return list(self._history[-1])

    def _prob(self, clicks):
        rows, cols = np.ogrid[: self.shape[0], : self.shape[1]]
        mask = np.zeros(self.shape, bool) if self.initial is None else self.initial.copy()
        for row, col, positive in clicks:
            disk = (rows - row) ** 2 + (cols - col) ** 2 <= RADIUS**2
            mask = mask | disk if positive else mask & ~disk
        return mask.astype(np.float32)

    def add_click(self, row, col, positive):
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]):
            raise ValueError(f"click ({row}, {col}) outside image {self.shape}")
        if self.delay:
            time.sleep(self.delay)
        self._history.append(self.clicks + [(int(row), int(col), bool(positive))])
        self._future = []
        return self._prob(self._history[-1])

    def undo(self):
        if len(self._history) > 1:
            self._future.append(self._history.pop())

    def redo(self):
        if self._future:
            self._history.append(self._future.pop())

    @property
    def probability(self):
        return self._prob(self._history[-1])

    @property
    def mask(self):
        return self.probability > self.threshold


def disk(shape, row, col, radius=RADIUS):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


class GrowingDiskSegmenter:
    """Fake: the bright object (image > 128) inside a disk around the first click whose radius grows
    by ``step`` pixels per click; negative clicks are ignored. Deterministic, so IoUs are known."""

    threshold = 0.5
    name = "growing-disk"

    def __init__(self, step: int = 4):
        self.step = step
        self.starts = 0

    def start(self, image, gt_ignore=None):
        self.bright = np.asarray(image) > 128
        self.clicks = []
        self.starts += 1

    def add_click(self, row, col, positive):
        self.clicks.append((row, col, positive))
        r0, c0, _ = self.clicks[0]
        yy, xx = np.ogrid[: self.bright.shape[0], : self.bright.shape[1]]
        disk = (yy - r0) ** 2 + (xx - c0) ** 2 <= (self.step * len(self.clicks)) ** 2
        return (self.bright & disk).astype(np.float32)


def cells_image(height: int = 160, width: int = 200, dtype=np.uint16) -> np.ndarray:
    """Two bright rectangular "cells" on a dim background."""
    image = np.full((height, width), 100, dtype=np.float64)
    image[40:80, 50:100] = 3000
    image[100:130, 140:180] = 2500
    return image.astype(dtype)


class BrightRegionSegmenter(DiskSegmenter):
    """Engine stand-in: the object is the bright region (above the image's mid-range) connected to the
    positive clicks (the starting mask when there is no positive click), minus disks at negative clicks."""

    def _prob(self, clicks):
        from scipy import ndimage as ndi

        image = self.image.astype(np.float64)
        if image.ndim == 3:
            image = image.mean(axis=self.channel_axis if self.channel_axis is not None else -1)
        bright = image > (image.min() + image.max()) / 2
        parts, _ = ndi.label(bright)
        mask = np.zeros(self.shape, bool)
        if not any(positive for _, _, positive in clicks) and self.initial is not None:
            mask = self.initial.copy()
        for row, col, positive in clicks:
            if positive and parts[row, col]:
                mask |= parts == parts[row, col]
        rows, cols = np.ogrid[: self.shape[0], : self.shape[1]]
        for row, col, positive in clicks:
            if not positive:
                mask &= (rows - row) ** 2 + (cols - col) ** 2 > RADIUS**2
        return mask.astype(np.float32)


class UnsureCopier(BrightRegionSegmenter):
    """The bright region at the click, sure of it (probability 0.95); where the click is not on a bright
    region, the feedback mask copied (as a network tends to past an object's end), unsure of it (0.6)."""

    def _prob(self, clicks):
        region = super()._prob(clicks)
        if self.image.max() > 100 and region.any():
            return region * 0.95
        if self.initial is None:
            return region
        return self.initial.astype(np.float32) * 0.6


def toy_training_items(count: int = 4, seed: int = 0):
    """A few small procedural training images (``training.data.make_synthetic_pool``)."""
    from napari_fcfi.training.data import make_synthetic_pool

    return make_synthetic_pool(count, seed=seed, shape=(96, 96))
