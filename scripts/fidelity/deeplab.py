"""``deeplab``: FCFIDeepLab against the official FCFI ``DeeplabModel`` on random weights and inputs.

The official model is built with its backbone's ImageNet weights off (no download), its weights are
randomised (including BatchNorm statistics, so every layer matters), loaded into ours with
``strict=True``, and both run in eval mode on the inference path (and optionally the training path).
Example::

    python scripts/check_official.py deeplab --official-repo /tmp/official
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from napari_fcfi.model.deeplab import FCFIDeepLab

from .checkout import use_official_checkout

# The released ResNet-101 SBD model's explicit arguments (fact sheet r101_sbd.json).
R101_SBD_ARGS = {
    "backbone": "resnet101",
    "deeplab_ch": 256,
    "mid_ch": 32,
    "aspp_dropout": 0.2,
    "update_num": 1,
    "expansion_ratio": 0.3,
    "use_leaky_relu": True,
    "use_rgb_conv": False,
    "use_disks": True,
    "norm_radius": 5,
    "with_prev_mask": True,
}


def build_official(official_repo: Path, **overrides) -> torch.nn.Module:
    """Build the official DeeplabModel (r101 SBD arguments, overridable) with random weights."""
    use_official_checkout(official_repo)
    from isegm.model.is_deeplab_model import DeeplabModel  # type: ignore[import-not-found]

    return DeeplabModel(**{**R101_SBD_ARGS, **overrides})


def randomise_(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every parameter and BN statistic non-trivial random values (in place)."""
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif name.endswith("scale"):
                tensor.fill_(-0.7)  # negative on purpose: the network must use |scale|
            elif tensor.ndim >= 2:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (1.5 / fan_in) ** 0.5)
            else:
                tensor.copy_(
                    1.0 + 0.1 * torch.randn(tensor.shape, generator=generator)
                    if name.endswith("weight")
                    else 0.1 * torch.randn(tensor.shape, generator=generator)
                )


def make_inputs(batch: int, height: int, width: int, generator: torch.Generator):
    """Random RGB + previous-mask image, 3 positive / 2 negative clicks (padded), newest click."""
    image = torch.rand(batch, 4, height, width, generator=generator)
    num = 3
    points = torch.full((batch, 2 * num, 3), -1.0)
    new_clicks = torch.zeros(batch, 1, 3, dtype=torch.long)
    for b in range(batch):
        rows = torch.randint(0, height, (5,), generator=generator).float()
        cols = torch.randint(0, width, (5,), generator=generator).float()
        for i in range(3):
            points[b, i] = torch.tensor([rows[i], cols[i], float(i)])
        for i in range(2):
            points[b, num + i] = torch.tensor([rows[3 + i], cols[3 + i], float(3 + i)])
        # alternate the newest click's sign across the batch to test both labels
        last = 2 if b % 2 == 0 else 4
        new_clicks[b, 0] = torch.tensor([int(rows[last]), int(cols[last]), 1 if last == 2 else 0])
    # one fractional click (zoom-in produces them)
    points[0, 1, :2] += 0.4
    return image, points, new_clicks


def check_fidelity(
    official_repo: Path,
    backbone: str = "resnet101",
    height: int = 96,
    width: int = 96,
    batch: int = 2,
    seed: int = 0,
    gates: tuple[float, ...] = (0.0, 1.0),
    training_path: bool = True,
) -> dict[str, float]:
    """Max abs differences between official and ours, per output, path and gate."""
    generator = torch.Generator().manual_seed(seed)
    official = build_official(official_repo, backbone=backbone)
    randomise_(official, generator)
    official.eval()
    ours = FCFIDeepLab(**{**R101_SBD_ARGS, "backbone": backbone})
    ours.load_state_dict(official.state_dict(), strict=True)
    ours.eval()
    official_keys = list(official.state_dict())
    if official_keys != list(ours.state_dict()):
        raise AssertionError("state_dict key order differs from the official one")

    image, points, new_clicks = make_inputs(batch, height, width, generator)
    results: dict[str, float] = {}
    paths = [False, True] if training_path else [False]
    with torch.no_grad():
        for is_training in paths:
            for gate in gates:
                ref_new = new_clicks[:, 0] if is_training else new_clicks
                ref = official(image, points, ref_new, gate, is_training=is_training)
                got = ours(image, points, new_clicks, gate, is_training=is_training)
                keys = ["instances", "updated_feedback1", "updated_feedback2"] + (
                    ["valid_masks"] if is_training else []
                )
                for key in keys:
                    if ref[key].shape != got[key].shape:
                        raise AssertionError(
                            f"{key}: shape {tuple(got[key].shape)} != official {tuple(ref[key].shape)}"
                        )
                    path = "train" if is_training else "infer"
                    results[f"{path}/gate{gate:g}/{key}"] = float((ref[key] - got[key]).abs().max())
                # Guard against a vacuous comparison: FFCM must have changed the previous mask
                # somewhere, and the logits must vary.
                # (previous mask taken to feature size and back the same way as feedback 1)
                ft_size = (math.ceil(math.ceil(height / 2) / 2), math.ceil(math.ceil(width / 2) / 2))
                prev = torch.nn.functional.interpolate(
                    torch.nn.functional.interpolate(
                        image[:, 3:], size=ft_size, mode="bilinear", align_corners=True
                    ),
                    size=(height, width),
                    mode="bilinear",
                    align_corners=False,
                )
                results[f"{path}/gate{gate:g}/_fraction_fb1_changed"] = -float(
                    ((got["updated_feedback1"] - prev).abs() > 1e-3).float().mean()
                )
                results[f"{path}/gate{gate:g}/_logit_std"] = -float(got["instances"].std())
        # Several new clicks at once (the official web demo does this): applied in sequence.
        two_new = torch.cat([new_clicks, new_clicks.flip(0)], dim=1)
        ref = official(image, points, two_new, 1.0, is_training=False)
        got = ours(image, points, two_new, 1.0, is_training=False)
        for key in ("instances", "updated_feedback1", "updated_feedback2"):
            results[f"infer/2new/{key}"] = float((ref[key] - got[key]).abs().max())
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="resnet101", choices=["resnet34", "resnet50", "resnet101"])
    parser.add_argument("--size", type=int, nargs=2, default=(96, 96), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--no-training-path", action="store_true")
    parser.add_argument("--threads", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    results = check_fidelity(
        args.official_repo,
        args.backbone,
        args.size[0],
        args.size[1],
        args.batch,
        args.seed,
        training_path=not args.no_training_path,
    )
    for name, value in results.items():
        if name.rsplit("/", 1)[1].startswith("_"):  # informative magnitudes, stored negated
            print(f"{name:42s} {-value:.3f}")
        else:
            print(f"{name:42s} max|diff| = {value:.3e}")
    worst = max(results.values())
    print(f"worst {worst:.3e} (tolerance {args.tolerance:g}): {'OK' if worst <= args.tolerance else 'FAIL'}")
    return 0 if worst <= args.tolerance else 1
