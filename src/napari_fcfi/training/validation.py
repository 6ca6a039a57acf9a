"""Quick validation during training: a robot user on fixed validation objects.

The predictor here follows the engine's microscopy protocol closely enough for model
selection, without depending on the engine: the first click runs in a window of
``input_size`` native pixels centred on the click; later clicks in a zoom-in window around
the current object and the clicks (bounding box expanded x2, at least ``input_size // 4`` px, the engine's default
``min_window``), resized to
``input_size``. The previous probability map is the feedback; the newest click goes to FFCM.
Final numbers for the model card come from the evaluation toolkit (``fcfi eval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_fcfi.training.augment import robust_normalise
from napari_fcfi.training.clicks import ClickSet, new_clicks_tensor, next_robot_click, points_tensor
from napari_fcfi.training.data import LabeledImage


@dataclass
class ValObject:
    """One validation object: the normalised image (H, W, 3) and its ground-truth mask."""

    image: np.ndarray
    mask: np.ndarray
    name: str


def pick_validation_objects(
    items: list[LabeledImage], count: int = 30, seed: int = 0, min_area: int = 30
) -> list[ValObject]:
    """``count`` fixed objects, from as many different images as possible (seeded)."""
    rng = np.random.default_rng([seed, 424242])
    order = rng.permutation(len(items))
    chosen: list[ValObject] = []
    rounds = 0
    while len(chosen) < count and rounds < 20:
        for index in order:
            item = items[int(index)]
            areas = np.bincount(item.labels.ravel(), minlength=int(item.labels.max()) + 1)
            candidates = [i for i in item.object_ids if areas[i] >= min_area]
            if not candidates:
                continue
            object_id = int(candidates[int(rng.integers(len(candidates)))])
            chosen.append(ValObject(robust_normalise(item.image), item.labels == object_id, f"{item.name}#{object_id}"))
            if len(chosen) == count:
                break
        rounds += 1
    return chosen


def _window_around(center_r: float, center_c: float, side_h: int, side_w: int, height: int, width: int):
    """(top, left, h, w) of a window of the given size centred as asked, shifted inside the image."""

    def start(center: float, side: int, extent: int) -> int:
        if side >= extent:
            return -((side - extent) // 2)
        return int(min(max(round(center - side / 2), 0), extent - side))

    return start(center_r, side_h, height), start(center_c, side_w, width), side_h, side_w


def _crop(array: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w) + array.shape[2:], dtype=array.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + h, array.shape[0]), min(left + w, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


class WindowedPredictor:
    """A minimal click session on one normalised image (H, W, 3) with the engine's windows."""

    def __init__(self, net: torch.nn.Module, image: np.ndarray, input_size: int = 256, device: str = "cpu") -> None:
        self.net = net
        self.image = image
        self.input_size = input_size
        self.device = device
        self.clicks: list[tuple[int, int, bool]] = []
        self.prob = np.zeros(image.shape[:2], np.float32)

    def _window(self) -> tuple[int, int, int, int]:
        height, width = self.prob.shape
        if len(self.clicks) == 1:
            row, col, _ = self.clicks[0]
            side = self.input_size
            return _window_around(row, col, min(side, max(height, width)), min(side, max(height, width)), height, width)
        rows = [r for r, _, _ in self.clicks]
        cols = [c for _, c, _ in self.clicks]
        fg_r, fg_c = np.nonzero(self.prob > 0.5)
        if fg_r.size:
            rows += [int(fg_r.min()), int(fg_r.max())]
            cols += [int(fg_c.min()), int(fg_c.max())]
        r0, r1, c0, c1 = min(rows), max(rows), min(cols), max(cols)
        side = max(2 * max(r1 - r0 + 1, c1 - c0 + 1), self.input_size // 4)
        return _window_around((r0 + r1) / 2, (c0 + c1) / 2, side, side, height, width)

    @torch.no_grad()
    def add_click(self, row: int, col: int, positive: bool) -> np.ndarray:
        self.clicks.append((int(row), int(col), bool(positive)))
        top, left, h, w = self._window()
        scale_r, scale_c = self.input_size / h, self.input_size / w
        size = self.input_size
        image = torch.from_numpy(_crop(self.image, top, left, h, w).transpose(2, 0, 1).copy())[None]
        prev = torch.from_numpy(_crop(self.prob, top, left, h, w))[None, None]
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=h > size)
        prev = F.interpolate(prev, size=(size, size), mode="bilinear", align_corners=False, antialias=h > size)

        def to_window(r: int, c: int) -> tuple[int, int]:
            return int((r - top + 0.5) * scale_r), int((c - left + 0.5) * scale_c)

        inside = ClickSet()
        for r, c, p in self.clicks:
            wr, wc = to_window(r, c)
            if 0 <= wr < size and 0 <= wc < size:
                inside.clicks.append((wr, wc, p))
        wr, wc = to_window(row, col)
        inside.clicks.append((min(max(wr, 0), size - 1), min(max(wc, 0), size - 1), bool(positive)))
        points = points_tensor([inside]).to(self.device)
        new_clicks = new_clicks_tensor([inside]).to(self.device)
        gate = 0.0 if len(self.clicks) == 1 else 1.0
        net_input = torch.cat([image, prev], dim=1).to(self.device)
        logits = self.net(net_input, points, new_clicks, gate, is_training=False)["instances"].float()
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        window_prob = torch.sigmoid(logits)[0, 0].cpu().numpy()
        if len(self.clicks) == 1:
            self.prob[:] = 0.0
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + h, self.prob.shape[0]), min(left + w, self.prob.shape[1])
        self.prob[r0:r1, c0:c1] = window_prob[r0 - top : r1 - top, c0 - left : c1 - left]
        return self.prob


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


def robot_validate(
    net: torch.nn.Module,
    objects: list[ValObject],
    input_size: int = 256,
    max_clicks: int = 10,
    device: str = "cpu",
    threshold: float = 0.49,
) -> dict[str, float]:
    """NoC@85/90 (capped at ``max_clicks``), NoF@90 and mean IoU after 1 and 3 clicks."""
    was_training = net.training
    net.eval()
    noc85, noc90, iou1, iou3, failures = [], [], [], [], 0
    try:
        for obj in objects:
            session = WindowedPredictor(net, obj.image, input_size, device)
            prob = np.zeros(obj.mask.shape, np.float32)
            ious: list[float] = []
            for _ in range(max_clicks):
                click = next_robot_click(prob, obj.mask, threshold)
                if click is None:
                    ious.append(ious[-1] if ious else 1.0)
                    continue
                prob = session.add_click(*click)
                ious.append(_iou(prob > threshold, obj.mask))
                if len(ious) >= 3 and ious[-1] >= 0.9:
                    break
            ious += [ious[-1]] * (max_clicks - len(ious))
            reached85 = [i + 1 for i, v in enumerate(ious) if v >= 0.85]
            reached90 = [i + 1 for i, v in enumerate(ious) if v >= 0.90]
            noc85.append(reached85[0] if reached85 else max_clicks)
            noc90.append(reached90[0] if reached90 else max_clicks)
            failures += not reached90
            iou1.append(ious[0])
            iou3.append(ious[2] if len(ious) > 2 else ious[-1])
    finally:
        net.train(was_training)
    count = max(len(objects), 1)
    return {
        "noc85": float(np.mean(noc85)) if noc85 else math.nan,
        "noc90": float(np.mean(noc90)) if noc90 else math.nan,
        "nof90": failures / count,
        "iou1": float(np.mean(iou1)) if iou1 else math.nan,
        "iou3": float(np.mean(iou3)) if iou3 else math.nan,
    }
