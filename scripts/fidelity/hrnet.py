"""``hrnet``: napari-fcfi's FCFIHRNet against the official FCFI HRNetModel, weight for weight.

The check builds the official ``HRNetModel`` with random weights
(randomised BatchNorm statistics too, so every layer matters), loads its ``state_dict`` into our
network with ``strict=True`` (same key names, no renaming), runs both on random images, previous
masks and click sets, and prints the maximum absolute differences of every output.

Modes compared:

* ``infer``: eval mode, ``is_training=False`` (crop / correct / paste FFCM) -- the protocol path.
* ``train-path``: eval mode, ``is_training=True`` (soft-window FFCM, float new clicks (B, 3)).
* ``train-bn``: train mode (batch statistics), dropout disabled in both, ``is_training=True``.

The official model returns the feedbacks upsampled to input size; ours returns them at feature
resolution, so ours are upsampled with :func:`napari_fcfi.model.network_io.upsample_outputs` first.

Exit status 1 if any difference exceeds ``--tolerance``. Example::

    python scripts/check_official.py hrnet --official-repo /tmp/official
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from napari_fcfi.model.fcfi_modules import FocusedFeedbackCorrection
from napari_fcfi.model.network_io import upsample_outputs
from napari_fcfi.model.networks import FCFIHRNet
from napari_fcfi.model.ops import DiskClickMaps

from .checkout import use_official_checkout

#: name -> (official HRNetModel kwargs, our FCFIHRNet kwargs)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "hrnet18s_cocolvis": (
        {
            "width": 18,
            "ocr_width": 48,
            "mid_ch": 64,
            "with_aux_output": True,
            "use_leaky_relu": True,
            "update_num": 1,
            "expansion_ratio": 0.3,
            "use_rgb_conv": False,
            "use_disks": True,
            "norm_radius": 5,
            "with_prev_mask": True,
        },
        {
            "width": 18,
            "ocr_width": 48,
            "small": False,
            "mid_ch": 64,
            "with_aux_output": True,
            "use_leaky_relu": True,
            "update_num": 1,
            "expansion_ratio": 0.3,
            "norm_radius": 5,
            "with_prev_mask": True,
        },
    ),
    "small_w8_ocr16": (
        {
            "width": 8,
            "ocr_width": 16,
            "small": True,
            "mid_ch": 16,
            "with_aux_output": True,
            "use_leaky_relu": True,
            "update_num": 1,
            "expansion_ratio": 0.3,
            "use_rgb_conv": False,
            "use_disks": True,
            "norm_radius": 5,
            "with_prev_mask": True,
        },
        {
            "width": 8,
            "ocr_width": 16,
            "small": True,
            "mid_ch": 16,
            "with_aux_output": True,
            "use_leaky_relu": True,
            "update_num": 1,
            "expansion_ratio": 0.3,
            "norm_radius": 5,
            "with_prev_mask": True,
        },
    ),
    "w12_noocr_relu_2rounds": (
        {
            "width": 12,
            "ocr_width": 0,
            "small": True,
            "mid_ch": 24,
            "with_aux_output": False,
            "use_leaky_relu": False,
            "update_num": 2,
            "expansion_ratio": 0.4,
            "use_rgb_conv": False,
            "use_disks": True,
            "norm_radius": 7,
            "with_prev_mask": True,
        },
        {
            "width": 12,
            "ocr_width": 0,
            "small": True,
            "mid_ch": 24,
            "with_aux_output": False,
            "use_leaky_relu": False,
            "update_num": 2,
            "expansion_ratio": 0.4,
            "norm_radius": 7,
            "with_prev_mask": True,
        },
    ),
}


def import_official_model(repo: Path) -> type:
    """``isegm.model.is_hrnet_model.HRNetModel`` of the checkout ``repo``."""
    use_official_checkout(repo)
    from isegm.model.is_hrnet_model import HRNetModel  # type: ignore[import-not-found]

    return HRNetModel


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random BN affine parameters and running statistics, random click-branch scale."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
        for name, param in model.named_parameters():
            if name.endswith("maps_transform.3.scale"):
                param.copy_(-0.5 - torch.rand(1, generator=gen))  # negative on purpose: abs() counts


def make_inputs(batch: int, height: int, width: int, gen: torch.Generator, training: bool):
    """Image with a soft previous mask, padded click lists (fractional), newest click."""
    rgb = torch.rand(batch, 3, height, width, generator=gen)
    rows = torch.arange(height).view(-1, 1).float()
    cols = torch.arange(width).view(1, -1).float()
    masks = []
    for _ in range(batch):
        cy, cx = torch.rand(2, generator=gen) * torch.tensor([height, width])
        radius = (0.15 + 0.2 * torch.rand(1, generator=gen)) * min(height, width)
        dist = ((rows - cy) ** 2 + (cols - cx) ** 2).sqrt()
        masks.append(torch.sigmoid((radius - dist) / 4.0))
    prev = torch.stack(masks).unsqueeze(1)
    image = torch.cat([rgb, prev], dim=1)

    num_pos, num_neg = 3, 2
    per_group = max(num_pos, num_neg) + 1  # at least one padding row per group
    points = torch.full((batch, 2 * per_group, 3), -1.0)
    newest = []
    for b in range(batch):
        coords = torch.rand(num_pos + num_neg, 2, generator=gen) * torch.tensor([height - 1, width - 1])
        if b == 0:
            coords[-1] = torch.tensor([0.0, width - 1.0])  # a border click: window clamping
        for i in range(num_pos):
            points[b, i] = torch.tensor([coords[i, 0], coords[i, 1], float(i)])
        for j in range(num_neg):
            points[b, per_group + j] = torch.tensor(
                [coords[num_pos + j, 0], coords[num_pos + j, 1], float(num_pos + j)]
            )
        if b == 1:
            coords = torch.round(coords * 2) / 2  # half-pixel clicks: exact-radius boundaries
        last = coords[-1]
        newest.append([int(last[0]), int(last[1]), 0])  # the last click is negative
    new_clicks = torch.tensor(newest, dtype=torch.long).unsqueeze(1)  # (B, 1, 3) as the predictor
    if training:
        new_clicks = new_clicks[:, 0].float()  # (B, 3) float as the official trainer
    return image, points, new_clicks


def compare(official: torch.nn.Module, ours: torch.nn.Module, inputs, gate: float, is_training: bool):
    image, points, new_clicks = inputs
    with torch.no_grad():
        ref = official(image, points, new_clicks, gate, is_training=is_training)
        out = ours(image, points, new_clicks, gate, is_training=is_training)
    # FFCM must actually have corrected something, or the comparison proves little.
    prev_small = torch.nn.functional.interpolate(
        image[:, 3:], size=out["updated_feedback1"].shape[-2:], mode="bilinear", align_corners=True
    )
    changed = (out["updated_feedback1"] != prev_small).float().mean().item()
    out = upsample_outputs(out, image.shape[-2:])
    diffs = {
        "instances": (out["instances"] - ref["instances"]).abs().max().item(),
        "prob": (torch.sigmoid(out["instances"]) - torch.sigmoid(ref["instances"])).abs().max().item(),
        "feedback1": (out["updated_feedback1"] - ref["updated_feedback1"][0]).abs().max().item(),
        "feedback2": (out["updated_feedback2"] - ref["updated_feedback2"][0]).abs().max().item(),
    }
    if "instances_aux" in out:
        diffs["aux"] = (out["instances_aux"] - ref["instances_aux"]).abs().max().item()
    if is_training:
        diffs["valid_masks"] = (out["valid_masks"] - ref["valid_masks"][0]).abs().max().item()
    scale = ref["instances"].abs().max().item()
    return diffs, scale, changed


def sweep_modules(repo_gen: torch.Generator, cases: int) -> float:
    """Many sizes / click positions through the click maps and FFCM alone (cheap, rigorous)."""
    from isegm.model.modeling.fcfi import FocusedCorrectionModule  # type: ignore[import-not-found]
    from isegm.model.ops import DistMaps  # type: ignore[import-not-found]

    worst = {"disk maps": 0.0, "ffcm infer": 0.0, "ffcm train": 0.0, "windows": 0.0}
    for case in range(cases):
        height, width = (int(v) for v in torch.randint(12, 400, (2,), generator=repo_gen))
        radius = [5, 3, 7.5][case % 3]
        ratio = [0.3, 0.25, 0.5][case % 3]
        points = torch.rand(2, 8, 3, generator=repo_gen) * torch.tensor([height - 1, width - 1, 1.0])
        if case % 2:
            points = torch.round(points * 2) / 2
        points[:, 3] = -1
        points[0, 6:] = -1
        points[1, 4:] = -1
        ref_maps = DistMaps(norm_radius=radius, spatial_scale=1.0, use_disks=True)(
            torch.zeros(2, 3, height, width), points
        )
        our_maps = DiskClickMaps(radius)(points, height, width)
        worst["disk maps"] = max(worst["disk maps"], (ref_maps - our_maps).abs().max().item())

        official = FocusedCorrectionModule(in_ch=5, mid_ch=6, aux_ch=7, expan_ratio=ratio)
        randomise(official, repo_gen)
        ours = FocusedFeedbackCorrection(5, 7, 6, window_ratio=ratio)
        ours.load_state_dict(official.state_dict(), strict=True)
        official.eval()
        ours.eval()
        ft_h, ft_w = (height + 3) // 4, (width + 3) // 4
        image = torch.rand(2, 3, height, width, generator=repo_gen)
        click_maps = torch.rand(2, 3, height, width, generator=repo_gen)
        features = torch.rand(2, 5, ft_h, ft_w, generator=repo_gen)
        feedback = torch.rand(2, 1, height, width, generator=repo_gen)
        clicks = (torch.rand(2, 2, generator=repo_gen) * torch.tensor([height, width])).long()
        clicks[0] = torch.tensor([height - 1, 0]) if case % 4 == 0 else clicks[0]
        labels = torch.tensor([[1], [0]])
        new = torch.cat([clicks, labels], dim=1)
        with torch.no_grad():
            ref, _ = official(image, click_maps, features, feedback, new.unsqueeze(1), is_training=False)
            out, _ = ours(image, click_maps, features, feedback, new.unsqueeze(1), is_training=False)
            worst["ffcm infer"] = max(worst["ffcm infer"], (ref - out).abs().max().item())
            ref, ref_win = official(image, click_maps, features, feedback, new.float(), is_training=True)
            out, our_win = ours(image, click_maps, features, feedback, new.float(), is_training=True)
            worst["ffcm train"] = max(worst["ffcm train"], (ref - out).abs().max().item())
            worst["windows"] = max(worst["windows"], (ref_win - our_win).abs().max().item())
    print(
        f"== module sweep over {cases} random sizes / clicks / radii / window ratios: "
        + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
    )
    return max(worst.values())


def negative_controls(official: torch.nn.Module, ours: torch.nn.Module, inputs) -> float:
    """Show that the comparison is sensitive: small weight changes and the gate must show up.

    Returns ``inf`` when a control sees no difference (then the check proves nothing), else 0.
    """
    official.eval()
    ours.eval()
    image, points, new_clicks = inputs
    with torch.no_grad():
        gate0 = ours(image, points, new_clicks, 0.0)["instances"]
        gate1 = ours(image, points, new_clicks, 1.0)["instances"]
    gate_effect = (gate1 - gate0).abs().max().item()
    results = {"gate 0 vs 1 (ours)": gate_effect}
    perturbations = {
        "click encoder bias +1e-3": ours.maps_transform[0].bias,
        "FFCM encoder bias +1e-3": ours.feature_extractor.correction_module.info_encoder[0].conv.bias,
    }
    for label, tensor in perturbations.items():
        with torch.no_grad():
            tensor.add_(1e-3)
        diffs, _, _ = compare(official, ours, inputs, 1.0, is_training=False)
        with torch.no_grad():
            tensor.sub_(1e-3)
        results[label] = max(diffs["instances"], diffs["feedback1"])
    print("  negative controls (each must be > 0): " + ", ".join(f"{k}: {v:.2e}" for k, v in results.items()))
    if min(results.values()) == 0.0:
        print("  NEGATIVE CONTROL FAILED: the comparison is not sensitive")
        return float("inf")
    return 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--sizes", nargs="+", default=["320x480", "250x333", "97x131"], help="input sizes HxW"
    )
    parser.add_argument("--trials", type=int, default=2, help="random inputs per size and gate")
    parser.add_argument("--sweep-cases", type=int, default=60, help="module-level random cases")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    official_cls = import_official_model(args.official_repo.resolve())
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]

    worst = sweep_modules(torch.Generator().manual_seed(args.seed), args.sweep_cases)
    for name in args.configs:
        official_kwargs, our_kwargs = CONFIGS[name]
        torch.manual_seed(args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        official = official_cls(**official_kwargs)
        randomise(official, gen)
        ours = FCFIHRNet(**our_kwargs)
        ours.load_state_dict(official.state_dict(), strict=True)
        print(
            f"== {name}: {sum(p.numel() for p in ours.parameters()):,} parameters, state dict loaded strict"
        )
        for mode in ("infer", "train-path", "train-bn"):
            for model in (official, ours):
                model.train(mode == "train-bn")
                for module in model.modules():
                    if isinstance(module, torch.nn.Dropout2d):
                        module.p = 0.0
            for height, width in sizes:
                for gate in (0.0, 1.0):
                    for trial in range(args.trials):
                        inputs = make_inputs(2, height, width, gen, training=mode != "infer")
                        if mode == "train-bn":
                            # identical running stats before each call: BN updates them in train mode
                            ours.load_state_dict(official.state_dict(), strict=True)
                        diffs, scale, changed = compare(
                            official, ours, inputs, gate, is_training=mode != "infer"
                        )
                        worst_here = max(diffs.values())
                        worst = max(worst, worst_here)
                        flag = "" if worst_here <= args.tolerance else "  <-- over tolerance"
                        text = " ".join(f"{k}={v:.2e}" for k, v in diffs.items())
                        print(
                            f"  {mode:10s} {height}x{width} gate={gate:.0f} #{trial}: {text} "
                            f"(|logit| max {scale:.2f}, FFCM changed {100 * changed:.1f}%){flag}"
                        )
        worst = max(worst, negative_controls(official, ours, make_inputs(2, *sizes[-1], gen, training=False)))
    print(f"max abs difference over everything: {worst:.3e} (tolerance {args.tolerance:.0e})")
    return 0 if worst <= args.tolerance else 1
