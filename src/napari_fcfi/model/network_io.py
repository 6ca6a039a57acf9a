"""What every FCFI network does with its input and output tensors (shared by the architectures).

The input is ``(B, 4, H, W)``: RGB and the previous mask. :func:`encode_inputs` turns it into the
normalised RGB, the previous mask and the click maps; :func:`upsample_outputs` brings the outputs to
input size the way the official model returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from napari_fcfi.model.ops import resize_bilinear


def encode_inputs(net: nn.Module, image: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(normalised RGB, previous mask, click maps)`` of a network's ``(B, 4, H, W)`` input.

    The click maps are the disks of ``points`` (``net.dist_maps``), with the previous mask in front
    when the network feeds it to the click encoder (``net.with_prev_mask``). Inputs follow the
    weights' dtype, so a network moved to bfloat16/float16 accepts float32 inputs (a no-op in float32
    and under autocast).
    """
    image = image.to(net.maps_transform[0].weight.dtype)
    rgb, feedback = split_network_input(image, type(net).__name__)
    height, width = rgb.shape[-2:]
    rgb = net.normalization(rgb)
    click_maps = net.dist_maps(points, height, width).to(rgb.dtype)
    if net.with_prev_mask:
        click_maps = torch.cat((feedback, click_maps), dim=1)
    return rgb, feedback, click_maps


def split_network_input(image: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(B, 4, H, W)`` into RGB and previous mask (a 3-channel input gets a zero mask)."""
    if image.ndim != 4 or image.shape[1] not in (3, 4):
        raise ValueError(f"{who}: image must have shape (B, 4, H, W), got {tuple(image.shape)}")
    rgb = image[:, :3]
    if image.shape[1] == 4:
        return rgb, image[:, 3:4]
    return rgb, torch.zeros_like(image[:, :1])


def upsample_outputs(outputs: Mapping[str, torch.Tensor], size: Sequence[int]) -> dict[str, torch.Tensor]:
    """Bring every output map to ``size`` the way the official model does before returning.

    Logits and feedbacks: bilinear with ``align_corners=True``; ``valid_masks``: nearest.
    """
    result: dict[str, torch.Tensor] = {}
    for key, value in outputs.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 4 or tuple(value.shape[-2:]) == tuple(size):
            result[key] = value
        elif key == "valid_masks":
            result[key] = nn.functional.interpolate(value, size=tuple(size), mode="nearest")
        else:
            result[key] = resize_bilinear(value, size)
    return result
