"""``fcfi finetune``: adapt a model to your own labelled objects for a few minutes.

Examples::

    fcfi finetune --images ../shared/data/dsb2018_train --base default --out adapted.safetensors --minutes 3
    fcfi finetune --images stack_image.tif --labels stack_labels.tif --out adapted.safetensors --steps 200

``--images`` is an instance-label folder (``<id>_image.*`` + ``<id>_labels.*``; ``--labels`` is then
not needed) or an image file / TIFF stack whose label file or stack of the same shape is ``--labels``
(each slice is one image). A share of the objects (``--hold-back``, 25 %) is set aside; the adapted
model is written (with a Markdown card beside it) only if the robot user needs fewer clicks on them
with it than with the base model (``--always-write`` writes it regardless), the rule of the widget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images",
        type=Path,
        required=True,
        help="instance-label folder, or an image file / TIFF stack (then give --labels)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="label image or TIFF stack of the same shape as --images (0 background)",
    )
    parser.add_argument(
        "--base", default="default", help="model to adapt: 'default', a registered name or a file"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="adapted model file (.safetensors; card: .md)"
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="adaptation time budget (wall clock)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="exactly this many steps instead of a time budget (reproducible with --seed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hold-back",
        type=float,
        default=0.25,
        metavar="FRACTION",
        help="share of the objects held back to check the adapted model (0: no check)",
    )
    parser.add_argument(
        "--always-write",
        action="store_true",
        help="write the adapted model even if it needs more clicks on the held-back objects",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")


def read_pairs(images: Path, labels: Path | None) -> tuple[list[Any], list[Any]]:
    """Images and label images from an instance folder, or from an image (stack) and its labels."""
    import numpy as np

    from napari_fcfi.engine.io import read_image

    if images.is_dir():
        from napari_fcfi.training.data import load_instance_folder

        if labels is not None:
            raise ValueError("--labels is not used with an instance-label folder (its <id>_labels files are)")
        items = load_instance_folder(images)
        return [item.image for item in items], [item.labels for item in items]
    if labels is None:
        raise ValueError(f"{images} is a file: give its labels with --labels")
    image_array = np.asarray(read_image(images, lazy=False))
    label_array = np.asarray(read_image(labels, lazy=False))
    if label_array.ndim == 2:
        if image_array.shape[:2] != label_array.shape:
            raise ValueError(f"labels {label_array.shape} do not match image {image_array.shape}")
        return [image_array], [label_array]
    if label_array.ndim != 3:
        raise ValueError(f"labels must be (H, W) or a (Z, H, W) stack, got shape {label_array.shape}")
    colour = image_array.ndim == 4 and image_array.shape[-1] in (3, 4)
    if image_array.ndim != (4 if colour else 3) or image_array.shape[:3] != label_array.shape:
        raise ValueError(
            f"image stack {image_array.shape} does not match label stack {label_array.shape} "
            "(expected (Z, H, W) or (Z, H, W, 3|4) images for (Z, H, W) labels)"
        )
    return list(image_array), list(label_array)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fcfi finetune``."""
    import torch

    from napari_fcfi.model import load_model
    from napari_fcfi.training.adaptation import check_adaptation, hold_back_objects
    from napari_fcfi.training.finetune import finetune, save_adapted

    if args.threads < 0 or args.minutes <= 0 or not 0 <= args.hold_back < 1:
        print("fcfi finetune: --threads >= 0, --minutes > 0 and 0 <= --hold-back < 1 please", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        images, labels = read_pairs(args.images, args.labels)
        base = load_model(args.base, device=args.device)
        train_labels, held_labels = (
            hold_back_objects(labels, args.hold_back, args.seed) if args.hold_back else (labels, None)
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"fcfi finetune: {error}", file=sys.stderr)
        return 2
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        if time.perf_counter() - last[0] >= 10 or fraction >= 1.0:
            last[0] = time.perf_counter()
            print(f"{fraction:4.0%} {message}", flush=True)

    try:
        adapted = finetune(
            base,
            images,
            train_labels,
            time_budget_s=args.minutes * 60,
            steps=args.steps,
            seed=args.seed,
            progress=progress,
        )
    except ValueError as error:
        print(f"fcfi finetune: {error}", file=sys.stderr)
        return 2
    info = adapted.fcfi_metadata["adaptation"]
    print(
        f"adapted {info['base_model']} on {info['objects']} objects in {info['images']} images: "
        f"{info['steps']} steps, {info['seconds']:.0f} s"
    )
    if held_labels is not None:
        check = check_adaptation(base, adapted, images, held_labels, seed=args.seed, progress=progress)
        print(
            f"held-back check on {check.objects} objects: clicks (NoC@85 + NoC@90) base {check.base_clicks:.2f}, "
            f"adapted {check.adapted_clicks:.2f} ({check.change_percent:+.1f} %): "
            f"{'keep' if check.keep else 'revert to the base model'}"
        )
        print(check.advice)
        if not check.keep and not args.always_write:
            print(
                "not written: the adapted model is not measurably better on the held-back objects "
                "(--always-write writes it anyway)"
            )
            return 0
    path = save_adapted(adapted, args.out)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0
