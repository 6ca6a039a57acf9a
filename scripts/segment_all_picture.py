"""The segment-all picture of docs/evaluation.md: image, ground truth, segment-all, classical baseline.

One image of each validation set (the first DSB fluorescence val image and the smallest mnfinder
val image); the classical variant is the one tuned on the training split (as ``fcfi eval
--segment-all`` does)::

    python scripts/segment_all_picture.py --out docs/images/segment_all_eval.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage.color import label2rgb
from skimage.segmentation import find_boundaries

from napari_fcfi import load_model, segment_all
from napari_fcfi.evaluation.segment_all_eval import (
    classical_instances,
    detection_scores,
    evaluation_sets,
    tune_classical,
)
from napari_fcfi.evaluation.stack_data import DEFAULT_DSB, DEFAULT_MNFINDER


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    gray = image.astype(np.float32)
    if gray.ndim == 3:
        gray = gray[..., :3].mean(-1)
    low, high = np.percentile(gray, (0.5, 99.5))
    gray = np.clip((gray - low) / max(high - low, 1e-6), 0, 1)
    out = label2rgb(labels, image=gray, alpha=0.35, bg_label=0)
    out[find_boundaries(labels)] = (1.0, 1.0, 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/segment_all_eval.png"))
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    val = evaluation_sets(DEFAULT_DSB, DEFAULT_MNFINDER, "val", 3)
    train = evaluation_sets(DEFAULT_DSB, DEFAULT_MNFINDER, "train", 20)
    picks = {
        "DSB fluorescence": val["DSB fluorescence"][0],
        "mnfinder": min(val["mnfinder"], key=lambda item: item[1].shape[0] * item[1].shape[1]),
    }
    fig, axes = plt.subplots(len(picks), 4, figsize=(16, 4 * len(picks)))
    for row, (set_name, (image_id, image, gt)) in enumerate(picks.items()):
        variant, _ = tune_classical([(im, g) for _, im, g in train[set_name]])
        proposals = segment_all(model, image)
        classical = classical_instances(image, variant)
        panels = [
            ("image", None),
            ("ground truth", gt),
            ("segment-all", proposals),
            (variant.name, classical),
        ]
        for col, (title, labels) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(overlay(image, labels if labels is not None else np.zeros(gt.shape, int)))
            if labels is not None and labels is not gt:
                f1, miou, _ = detection_scores(gt, labels)
                title = f"{title}\nF1@0.5 {f1:.2f}, mean IoU {miou:.2f}"
            ax.set_title(f"{set_name} {image_id[:12]}: {title}" if col == 0 else title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
