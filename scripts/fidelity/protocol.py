"""``protocol``: the engine's ``preset="paper"`` against the official FCFI evaluation predictor, click by click.

Both run the SAME network object (by default a small random-weight ``FCFIHRNet``) on a GrabCut image
with robot clicks (the standard "largest error region, farthest from its border" rule, computed from
our prediction and given to both sides), so any difference comes from the inference protocol: zoom-in,
flip averaging, feedback handling, click encoding. Example::

    python scripts/check_official.py protocol --official-repo /tmp/official

Prints, per click, the max absolute probability difference, the mask IoU between both sides and
whether both chose the same zoom-in ROI; exits 1 when a difference exceeds ``--tolerance``.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np
import torch

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.model.networks import FCFIHRNet

from .checkout import DEFAULT_GRABCUT, read_grabcut, robot_click, use_official_checkout


class OfficialCallAdapter(torch.nn.Module):
    """Accepts the official call (with ``designated_click_radius``) and forwards our contract."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image, points, new_clicks, gate, designated_click_radius=-1, is_training=False):
        # Without zoom-in the official points tensor holds integers (int64); same values as float.
        return self.net(image, points.float(), new_clicks, gate, is_training=is_training)


class ClickProbeNet(torch.nn.Module):
    """A contract-following network whose masks react to clicks, feedback and colour.

    Random weights alone saturate (the mask covers the whole image, so no zoom-in ever happens).
    This wrapper adds a structured term to the real network's outputs: Gaussian blobs at the
    positive/negative points, the feedback (weighted by the gate) and the image brightness. Every
    input of the contract (points, new click, gate, feedback, image) still flows through the real
    FCFI network too, so all of the protocol is exercised.
    """

    def __init__(self, net: torch.nn.Module, bias: float = -3.0, blank_feedback_at: int = 0) -> None:
        super().__init__()
        self.net = net
        self.bias = bias
        # With k clicks the feedback is scaled below 0.5 everywhere, so click k + 1 meets an empty
        # stored map (the official predictor then runs on the whole image but pastes into its old ROI).
        self.blank_feedback_at = blank_feedback_at

    def forward(self, image, points, new_clicks, gate, is_training=False):
        out = self.net(image, points, new_clicks, gate, is_training=is_training)
        n_clicks = int((points[0, :, 2] >= 0).sum())
        batch, _, height, width = image.shape
        rows = torch.arange(height, dtype=torch.float32)[:, None]
        cols = torch.arange(width, dtype=torch.float32)[None, :]
        sigma = 0.06 * max(height, width)
        half = points.shape[1] // 2
        term = torch.zeros(batch, 1, height, width)
        for b in range(batch):
            for j in range(points.shape[1]):
                r, c, order = points[b, j].tolist()
                if order < 0:
                    continue
                blob = torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma**2))
                term[b, 0] += (8.0 if j < half else -10.0) * blob
        brightness = image[:, :3].mean(1, keepdim=True)
        term = term + self.bias + 2.0 * (brightness - 0.5) + float(gate) * 5.0 * (image[:, 3:4] - 0.5)
        instances = term + 0.5 * out["instances"]
        stride4 = torch.nn.functional.avg_pool2d(torch.sigmoid(term), 4, ceil_mode=True)
        fb2 = out["updated_feedback2"]
        if fb2.shape[-2:] != stride4.shape[-2:]:
            fb2 = torch.nn.functional.interpolate(
                fb2, size=stride4.shape[-2:], mode="bilinear", align_corners=True
            )
        result = dict(out)
        result["instances"] = instances
        result["updated_feedback2"] = 0.8 * stride4 + 0.2 * fb2
        if n_clicks == self.blank_feedback_at:
            result["updated_feedback2"] = 0.45 * result["updated_feedback2"]
        return result


def build_network(kind: str, seed: int, bias: float = -3.0, blank_feedback_at: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "tiny":
        net = FCFIHRNet(width=8, ocr_width=16, small=True, mid_ch=16)
    elif kind == "hrnet18s":
        net = FCFIHRNet(width=18, ocr_width=48, small=True, mid_ch=32)
    else:
        raise ValueError(f"unknown network {kind!r}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    return ClickProbeNet(net, bias, blank_feedback_at).eval()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grabcut", type=Path, default=DEFAULT_GRABCUT, help="GrabCut folder")
    parser.add_argument("--images", nargs="*", default=None, help="image ids (default: the first one)")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--target-size", type=int, default=700)
    parser.add_argument("--expansion-ratio", type=float, default=3.0)
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--no-zoom", action="store_true")
    parser.add_argument("--network", choices=("tiny", "hrnet18s"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bias", type=float, default=-3.0, help="probe logit bias (higher: larger masks)")
    parser.add_argument(
        "--blank-feedback-at", type=int, default=4, help="click whose feedback map is blanked"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=1e-4)


def run(args: argparse.Namespace) -> int:

    use_official_checkout(args.official_repo, predictor=True)
    base = importlib.import_module("isegm.inference.predictors.base")
    zoom_module = importlib.import_module("isegm.inference.transforms.zoom_in")
    clicker_module = importlib.import_module("isegm.inference.clicker")

    torch.set_num_threads(args.threads)
    net = build_network(args.network, args.seed, args.bias, args.blank_feedback_at)
    adapter = OfficialCallAdapter(net).eval()
    flip, zoom = not args.no_flip, not args.no_zoom

    ids = args.images or sorted(p.name[: -len("_gt.png")] for p in args.grabcut.glob("*_gt.png"))[:1]
    worst = 0.0
    for image_id in ids:
        image, gt = read_grabcut(args.grabcut, image_id)

        zoom_in = (
            zoom_module.ZoomIn(target_size=args.target_size, expansion_ratio=args.expansion_ratio)
            if zoom
            else None
        )
        official = base.BasePredictor(adapter, "cpu", zoom_in=zoom_in, with_flip=flip)
        official.set_input_image(image)
        clicker = clicker_module.Clicker()

        ours = InteractiveSegmenter(
            net,
            preset="paper",
            input_size=args.target_size,
            expansion_ratio=args.expansion_ratio,
            flip=flip,
            zoom_in=zoom,
        )
        ours.set_image(image)

        pred_mask = np.zeros(gt.shape, dtype=bool)
        official_prob = np.zeros(gt.shape, dtype=np.uint8)
        not_clicked = np.ones(gt.shape, dtype=bool)
        print(f"image {image_id} {image.shape[:2]} network={args.network} flip={flip} zoom={zoom}")
        for index in range(args.clicks):
            row, col, positive = robot_click(gt, pred_mask, not_clicked)
            not_clicked[row, col] = False
            clicker.add_click(clicker_module.Click(is_positive=positive, coords=(row, col)))
            with torch.no_grad():
                official_prob, *_ = official.get_prediction(
                    clicker, official_prob, 0.0 if index == 0 else 1.0
                )
            our_prob = ours.add_click(row, col, positive)
            diff = float(np.abs(official_prob - our_prob).max())
            worst = max(worst, diff)
            a, b = official_prob > DEFAULT_THRESHOLD, our_prob > DEFAULT_THRESHOLD
            iou = (a & b).sum() / max(1, (a | b).sum())
            official_roi = (
                tuple(int(v) for v in zoom_in._object_roi) if zoom and zoom_in._object_roi else None
            )
            our_roi = tuple(ours._current.roi) if ours._current.roi is not None else None
            print(
                f"  click {index + 1:2d} ({'+' if positive else '-'} {row:4d},{col:4d}) "
                f"max|dp|={diff:.2e} mask IoU={iou:.6f} fg={int(b.sum()):7d} "
                f"roi official={official_roi} ours={our_roi}"
            )
            pred_mask = b
    print(f"worst max abs probability difference: {worst:.3e} (tolerance {args.tolerance:g})")
    return 0 if worst <= args.tolerance else 1
