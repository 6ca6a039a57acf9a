"""``checkpoints``: paper preset vs the official evaluation predictor on official-format checkpoints.

Unlike the ``protocol`` check (one network object shared by both sides, zoom-in settings
passed by hand), this check is end to end on the official checkpoint format:

* the official code builds its HRNet-18s (COCO+LVIS model script arguments) and ResNet-101 (SBD model
  script arguments) models with seed 0, random weights initialised as its model scripts do (XavierGluon,
  gaussian, magnitude 2; ``--init default``: the constructors' own initialisation; never an ImageNet
  download) and writes them with its own ``save_checkpoint``;
* the official side reads the file with its own loader (``load_is_model``) and runs ``BasePredictor``
  with ``--with-flip`` and the "cvpr" ``ZoomIn`` whose target size and expansion ratio it reads from
  ``configs/val/config_<dataset>_<backbone>.yml`` of the checkout, as ``scripts/evaluate_model.py``
  does;
* our side loads the same file with :func:`napari_fcfi.model.official.load_official_checkpoint` and
  runs ``InteractiveSegmenter(model, preset="paper")`` with nothing else set (plus ``paper_dataset``
  for a dataset other than GrabCut), so the preset must choose the official zoom-in settings itself.

Random weights alone make the object the whole image or nothing (so the zoom-in crop is hardly used).
Head ``probe`` therefore sets, before the checkpoint is written, the two final 1-channel layers
(instances: ``cls_head`` / ``head.layers.2``; ``updated_feedback2``: the fusion encoder's last conv)
to a linear probe of their own random input features: the mean feature difference between the
GrabCut object and the background at click 1, with the bias put where as many pixels are positive
as the object has (and the median pixel at logit -4). Logits then depend on the image: the object
covers part of it, and on a small object (``sheep`` 5 %, ``304074`` 6 % of the image) so does the
zoom-in ROI. Head ``random`` keeps the random weights. On ``llama`` the clicks are the issue's
(236, 220, +), (60, 460, -), (300, 250, +), (200, 120, -); elsewhere they come from the robot
(largest error region, computed from our prediction, given to both sides).

Example (stand-ins for the official code's unused imports: see ``checkout.use_official_checkout``)::

    python scripts/check_official.py checkpoints --official-repo /tmp/official

Prints per click the max |Δprob|, the foreground fraction of both sides and both ROIs; exits 1 when a
difference exceeds ``--tolerance`` or when no probe click of a backbone ran zoomed in on an ROI
smaller than the image with an object covering part of it (the check would then be vacuous).
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.model.official import load_official_checkpoint

from .checkout import DEFAULT_GRABCUT, read_grabcut, robot_click, use_official_checkout
from .deeplab import R101_SBD_ARGS
from .hrnet import CONFIGS as HRNET_CONFIGS

#: backbone -> (official class module, class name, constructor args, instance head, feedback-2 head)
BACKBONES = {
    "h18s": (
        "isegm.model.is_hrnet_model",
        "HRNetModel",
        HRNET_CONFIGS["hrnet18s_cocolvis"][0],
        "feature_extractor.cls_head",
        "feature_extractor.fusion_module.fusion_encoder.3",
    ),
    "r101": (
        "isegm.model.is_deeplab_model",
        "DeeplabModel",
        R101_SBD_ARGS,
        "head.layers.2",
        "feature_extractor.feedback_fusion.fusion_encoder.3",
    ),
}
#: The issue's clicks on GrabCut "llama": (row, col, positive).
ISSUE_CLICKS = [(236, 220, True), (60, 460, False), (300, 250, True), (200, 120, False)]


def official_zoom_params(official_repo: Path, dataset: str, backbone: str) -> tuple[int, float]:
    """ZOOM_IN.CVPR of ``configs/val/config_<dataset>_<backbone>.yml`` (what evaluate_model.py reads)."""
    cfg = yaml.safe_load((official_repo / "configs" / "val" / f"config_{dataset}_{backbone}.yml").read_text())
    return int(cfg["ZOOM_IN"]["CVPR"]["TARGET_SIZE"]), float(cfg["ZOOM_IN"]["CVPR"]["EXPANSION_RATIO"])


def _set_probe_(
    layer: torch.nn.Conv2d, features: torch.Tensor, fg: torch.Tensor, median_logit: float
) -> None:
    """Make a 1-channel conv a linear probe (object minus background mean) of its input features.

    Logit 0 where as many pixels are above as the object has; the median pixel gets ``median_logit``
    (a scale from the median, not the std: random features give long-tailed scores).
    """
    size = features.shape[-2:]
    fg = torch.nn.functional.interpolate(fg[None, None].float(), size=size, mode="nearest")[0, 0] > 0
    flat = features.reshape(features.shape[0], -1).double()
    direction = flat[:, fg.reshape(-1)].mean(1) - flat[:, ~fg.reshape(-1)].mean(1)
    scores = direction @ flat
    cut = torch.quantile(scores, 1.0 - float(fg.double().mean()))
    gain = float(median_logit / (scores.median() - cut))
    with torch.no_grad():
        layer.weight.zero_()
        kh, kw = layer.weight.shape[-2:]
        layer.weight[0, :, kh // 2, kw // 2] = (gain * direction).float()
        layer.bias.fill_(-gain * float(cut))


def write_checkpoint(
    backbone: str,
    head: str,
    seed: int,
    init: str,
    image: np.ndarray,
    gt: np.ndarray,
    first_click: tuple[int, int, bool],
    folder: Path,
) -> Path:
    misc = importlib.import_module("isegm.utils.misc")
    initializer = importlib.import_module("isegm.model.initializer")
    module_name, class_name, kwargs, instance_head, feedback_head = BACKBONES[backbone]
    torch.manual_seed(seed)
    net = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    if init == "xavier":
        net.apply(initializer.XavierGluon(rnd_type="gaussian", magnitude=2.0))
    net.eval()
    if head == "probe":
        modules = dict(net.named_modules())
        captured: dict[str, torch.Tensor] = {}
        hooks = [
            modules[name].register_forward_hook(
                lambda _m, inputs, _o, name=name: captured.__setitem__(name, inputs[0][0].detach())
            )
            for name in (instance_head, feedback_head)
        ]
        base = importlib.import_module("isegm.inference.predictors.base")
        clicker_module = importlib.import_module("isegm.inference.clicker")
        predictor = base.BasePredictor(net, "cpu", zoom_in=None, with_flip=False)
        predictor.set_input_image(image)
        clicker = clicker_module.Clicker()
        clicker.add_click(clicker_module.Click(is_positive=first_click[2], coords=first_click[:2]))
        with torch.no_grad():
            predictor.get_prediction(clicker, np.zeros(gt.shape, np.float32), 0.0)
        for hook in hooks:
            hook.remove()
        fg = torch.from_numpy(gt == 255)
        _set_probe_(modules[instance_head], captured[instance_head], fg, median_logit=-4.0)
        _set_probe_(modules[feedback_head], captured[feedback_head], fg, median_logit=-4.0)
    misc.save_checkpoint(net, folder, prefix=f"{backbone}_{head}", verbose=False)
    return folder / f"{backbone}_{head}_last_checkpoint.pth"


def compare(
    path: Path,
    backbone: str,
    dataset: str,
    official_repo: Path,
    image: np.ndarray,
    gt: np.ndarray,
    click_mode: str,
    n_clicks: int,
    flip: bool,
) -> tuple[float, bool]:
    official_utils = importlib.import_module("isegm.inference.utils")
    base = importlib.import_module("isegm.inference.predictors.base")
    zoom_module = importlib.import_module("isegm.inference.transforms.zoom_in")
    clicker_module = importlib.import_module("isegm.inference.clicker")
    target_size, expansion_ratio = official_zoom_params(official_repo, dataset, backbone)
    official_net = official_utils.load_is_model(str(path), "cpu")
    zoom_in = zoom_module.ZoomIn(target_size=target_size, expansion_ratio=expansion_ratio)
    official = base.BasePredictor(official_net, "cpu", zoom_in=zoom_in, with_flip=flip)
    official.set_input_image(image)
    clicker = clicker_module.Clicker()

    settings = ({} if dataset == "grabcut" else {"paper_dataset": dataset}) | (
        {} if flip else {"flip": False}
    )
    ours = InteractiveSegmenter(load_official_checkpoint(path), preset="paper", **settings)
    ours.set_image(image)
    s = ours.settings
    print(
        f"  official ZoomIn target {target_size} expansion {expansion_ratio} flip {flip} | ours input_size "
        f"{s.input_size} expansion_ratio {s.expansion_ratio} flip {s.flip} zoom_in {s.zoom_in}"
    )

    official_prob = np.zeros(gt.shape, dtype=np.float32)
    pred_mask = np.zeros(gt.shape, dtype=bool)
    not_clicked = np.ones(gt.shape, dtype=bool)
    worst, exercised = 0.0, False
    clicks = ISSUE_CLICKS if click_mode == "issue" else [None] * n_clicks
    for index, click in enumerate(clicks):
        row, col, positive = click if click is not None else robot_click(gt, pred_mask, not_clicked)
        not_clicked[row, col] = False
        clicker.add_click(clicker_module.Click(is_positive=positive, coords=(row, col)))
        start = time.perf_counter()
        with torch.no_grad():
            official_prob, *_ = official.get_prediction(clicker, official_prob, 0.0 if index == 0 else 1.0)
        middle = time.perf_counter()
        our_prob = ours.add_click(row, col, positive)
        end = time.perf_counter()
        diff = float(np.abs(official_prob - our_prob).max())
        worst = max(worst, diff)
        a, b = official_prob > DEFAULT_THRESHOLD, our_prob > DEFAULT_THRESHOLD
        official_roi = tuple(int(v) for v in zoom_in._object_roi) if zoom_in._object_roi else None
        our_roi = tuple(int(v) for v in ours._current.roi) if ours._current.roi is not None else None
        full = (0, gt.shape[0] - 1, 0, gt.shape[1] - 1)
        exercised |= official_roi not in (None, full) and 0.0 < a.mean() < 0.9
        print(
            f"  click {index + 1} ({'+' if positive else '-'} {row:3d},{col:3d}) max|dp|={diff:.2e} "
            f"fg official {100 * a.mean():5.1f}% ours {100 * b.mean():5.1f}% "
            f"roi official={official_roi} ours={our_roi} [{middle - start:.1f}s / {end - middle:.1f}s]"
        )
        pred_mask = b
    return worst, exercised


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grabcut", type=Path, default=DEFAULT_GRABCUT, help="GrabCut folder")
    parser.add_argument("--backbones", nargs="+", choices=sorted(BACKBONES), default=["h18s", "r101"])
    parser.add_argument("--heads", nargs="+", choices=("random", "probe"), default=["random", "probe"])
    parser.add_argument(
        "--random-images", nargs="+", default=["llama"], help="images of the random-head runs"
    )
    parser.add_argument(
        "--probe-images", nargs="+", default=["sheep", "304074", "llama"], help="images of the probe runs"
    )
    parser.add_argument(
        "--dataset",
        choices=("grabcut", "berkeley", "davis", "sbd"),
        default="grabcut",
        help="official val config (zoom-in settings) to compare with",
    )
    parser.add_argument("--clicks", type=int, default=4, help="robot clicks per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--init",
        choices=("xavier", "default"),
        default="xavier",
        help="random weights: the model scripts' XavierGluon, or the constructors' own init",
    )
    parser.add_argument("--no-flip", action="store_true", help="both sides without flip averaging")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=1e-4)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    official_repo = use_official_checkout(args.official_repo, predictor=True)

    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for backbone in args.backbones:
            backbone_exercised = False
            runs = [(head, name) for head in args.heads for name in getattr(args, f"{head}_images")]
            for head, name in runs:
                image, gt = read_grabcut(args.grabcut, name)
                click_mode = "issue" if name == "llama" else "robot"
                first = (
                    ISSUE_CLICKS[0]
                    if click_mode == "issue"
                    else robot_click(gt, np.zeros(gt.shape, bool), np.ones(gt.shape, bool))
                )
                path = write_checkpoint(backbone, head, args.seed, args.init, image, gt, first, Path(folder))
                print(
                    f"{backbone} head={head} init={args.init} image={name} {image.shape[:2]} "
                    f"dataset={args.dataset} clicks={click_mode}"
                )
                worst, exercised = compare(
                    path,
                    backbone,
                    args.dataset,
                    official_repo,
                    image,
                    gt,
                    click_mode,
                    args.clicks,
                    not args.no_flip,
                )
                ok = worst <= args.tolerance
                print(
                    f"  worst max|dp| {worst:.2e} (tolerance {args.tolerance:g}): {'OK' if ok else 'FAIL'}; "
                    f"zoomed in on a partial object: {'yes' if exercised else 'no'}"
                )
                failed |= not ok
                backbone_exercised |= head == "probe" and exercised
                path.unlink()
            if "probe" in args.heads and not backbone_exercised:
                print(f"FAIL: no {backbone} probe click zoomed in on a partial object (vacuous check)")
                failed = True
    print("OK" if not failed else "FAIL")
    return 1 if failed else 0
