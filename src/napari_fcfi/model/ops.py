"""Small building blocks shared by the FCFI networks.

* :class:`DiskClickMaps` turns click lists into binary disk maps (one for positive, one for
  negative clicks).
* :class:`ImageNormalizer` applies the ImageNet mean/std to RGB in [0, 1].
* :class:`ScaleLayer` multiplies by the absolute value of one learned scalar.
* :class:`ConvBNReLU` and :class:`SeparableConvBNReLU` are the conv units of FFCM and CFFM.

The arithmetic is written so that it matches the reference implementation bit for bit where it
matters (the disk test is a float comparison of squared distances, so operation order counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (the convention used throughout FCFI)."""
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=True)


class DiskClickMaps(nn.Module):
    """Encode clicks as two binary disk maps (positive, negative).

    ``points`` is ``(B, 2N, 3)`` with rows ``(row, col, click_index)``: the first N rows are
    positive clicks, the next N negative ones; padding rows are ``(-1, -1, -1)``. A click counts
    as padding when both of its coordinates are negative. A pixel is set when its squared
    Euclidean distance to a click is ``<= radius**2``; coordinates may be fractional.
    """

    def __init__(self, radius: float = 5.0) -> None:
        super().__init__()
        if radius <= 0:
            raise ValueError(f"DiskClickMaps: radius must be > 0, got {radius}")
        self.radius = radius

    def forward(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] % 2 != 0:
            raise ValueError(f"DiskClickMaps: points must have shape (B, 2N, 3), got {tuple(points.shape)}")
        batch, num_rows, _ = points.shape
        per_group = num_rows // 2
        if per_group == 0:
            return torch.zeros(batch, 2, height, width, device=points.device)
        coords = points[..., :2].to(torch.float32).reshape(batch, 2, per_group, 2)
        is_padding = coords.max(dim=-1).values < 0  # (B, 2, N)
        rows = torch.arange(height, dtype=torch.float32, device=points.device).view(1, 1, height, 1)
        cols = torch.arange(width, dtype=torch.float32, device=points.device).view(1, 1, 1, width)
        nearest = torch.full((batch, 2, height, width), float("inf"), device=points.device)
        # One click slot at a time keeps memory at O(B*H*W) however many clicks there are.
        for slot in range(per_group):
            d_row = rows - coords[:, :, slot, 0].view(batch, 2, 1, 1)
            d_col = cols - coords[:, :, slot, 1].view(batch, 2, 1, 1)
            sq_dist = d_row * d_row + d_col * d_col  # same float ops as the reference
            sq_dist.masked_fill_(is_padding[:, :, slot].view(batch, 2, 1, 1), float("inf"))
            nearest = torch.minimum(nearest, sq_dist)
        return (nearest <= float(self.radius) ** 2).to(torch.float32)


class ImageNormalizer(nn.Module):
    """``(rgb - mean) / std`` per channel; the constants are not part of the state dict."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"ImageNormalizer: mean/std need 3 values, got {mean!r}, {std!r}")
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.mean.to(rgb.dtype)) / self.std.to(rgb.dtype)


class ScaleLayer(nn.Module):
    """Multiply by ``|scale|``, a single learned scalar (keeps the click branch's sign fixed)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(init_value), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.abs(self.scale)


class ConvBNReLU(nn.Module):
    """Conv (with bias) -> BatchNorm -> ReLU."""

    fusable_pairs = (("conv", "bn"),)  # bn(conv(x)) only: foldable (model/fusion.py)

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class SeparableConvBNReLU(nn.Module):
    """Depthwise 3x3 conv (bias) -> pointwise 1x1 conv (bias) -> BatchNorm -> ReLU, C -> C."""

    fusable_pairs = (("conv1x1", "bn"),)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv3x3 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.conv1x1 = nn.Conv2d(channels, channels, 1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv1x1(self.conv3x3(x))))
