"""Do the CPU speed-ups change the masks? float32 vs bfloat16 autocast vs channels_last.

For objects of an instance-label folder (``<id>_image.png`` / ``<id>_labels.png``, e.g. DSB 2018)
each variant runs the same engine session (microscopy preset): a first click at the object's most
interior pixel, then up to two corrective clicks at the most interior pixel of the larger error
(false negatives -> positive click, false positives -> negative click), each computed from that
variant's own mask. Reports the IoU with the ground truth per variant and the IoU of each variant's
final mask with the float32 one (two empty masks count as identical)::

    python benchmarks/precision_check.py --model default --data ../shared/data/dsb2018_train --objects 40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage


class CpuAutocast(torch.nn.Module):
    """Runs the wrapped network under CPU bfloat16 autocast and returns float32 outputs."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        metadata = getattr(net, "fcfi_metadata", None)
        if isinstance(metadata, dict):
            self.fcfi_metadata = dict(metadata)
        self.train(net.training)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = self.net(*args, **kwargs)
        return {key: value.float() for key, value in outputs.items()}


def _interior(mask: np.ndarray) -> tuple[int, int]:
    distance = ndimage.distance_transform_edt(mask)
    row, col = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return int(row), int(col)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def run_session(net: torch.nn.Module, image: np.ndarray, gt: np.ndarray, clicks: int) -> np.ndarray:
    from napari_fcfi.engine import InteractiveSegmenter

    segmenter = InteractiveSegmenter(net)
    segmenter.set_image(image)
    segmenter.add_click(*_interior(gt), True)
    for _ in range(clicks - 1):
        mask = segmenter.mask
        missed, extra = gt & ~mask, mask & ~gt
        error, positive = (missed, True) if missed.sum() >= extra.sum() else (extra, False)
        if not error.any():
            break
        segmenter.add_click(*_interior(error), positive)
    return np.asarray(segmenter.mask)


def main(argv: list[str] | None = None) -> int:
    from skimage.io import imread

    from napari_fcfi.model import load_model

    parser = argparse.ArgumentParser(description="float32 vs bfloat16 / channels_last masks on real objects")
    parser.add_argument("--model", default="default", help="load_model source (default: the bundled model)")
    parser.add_argument("--data", type=Path, required=True, help="instance-label folder")
    parser.add_argument("--objects", type=int, default=40)
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--min-area", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = load_model(args.model, device="cpu")
    channels_last = load_model(args.model, device="cpu").to(memory_format=torch.channels_last)
    variants = {"fp32": base, "bf16_autocast": CpuAutocast(base), "channels_last": channels_last}
    images = sorted(args.data.glob("*_image.png"))
    if not images:
        parser.error(f"no *_image.png files in {args.data}")
    rng = np.random.default_rng(0)
    to_gt: dict[str, list[float]] = {name: [] for name in variants}
    to_fp32: dict[str, list[float]] = {name: [] for name in variants if name != "fp32"}
    done = 0
    for path in images[::-1]:  # the end of the sorted list: images a split by id is likely to hold out
        image = imread(path)
        labels = imread(str(path).replace("_image.png", "_labels.png"))
        ids = [i for i in np.unique(labels) if i and (labels == i).sum() >= args.min_area]
        for label in rng.choice(ids, size=min(2, len(ids)), replace=False) if ids else []:
            gt = labels == label
            masks = {name: run_session(net, image, gt, args.clicks) for name, net in variants.items()}
            for name, mask in masks.items():
                to_gt[name].append(_iou(mask, gt))
            for name, values in to_fp32.items():
                values.append(_iou(masks[name], masks["fp32"]))
            done += 1
        if done >= args.objects:
            break
    summary = {
        "model": args.model,
        "objects": done,
        "clicks": args.clicks,
        "mean_iou_to_gt": {k: round(float(np.mean(v)), 4) for k, v in to_gt.items()},
        "iou_to_fp32_mask": {
            k: {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4)}
            for k, v in to_fp32.items()
        },
    }
    print(json.dumps(summary, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
