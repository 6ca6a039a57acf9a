"""Object-contextual representations (OCR, Yuan et al. 2020) head used on top of HRNet.

With one class, the "object regions" are a single soft region: the softmax over all pixels of the
auxiliary logits. Each pixel then attends to that region's pooled feature and the result is
concatenated with the pixel feature and projected back.

Attribute names follow the official state-dict layout (``object_context_block.f_pixel`` ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv1x1_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    # The BN+ReLU pair is nested in its own Sequential to keep the official key layout.
    return [
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        nn.Sequential(nn.BatchNorm2d(out_ch), nn.ReLU()),
    ]


class RegionGather(nn.Module):
    """Pool pixel features into one vector per class region, weighted by softmax(logits)."""

    def forward(self, features: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        batch, num_regions = region_logits.shape[:2]
        weights = F.softmax(region_logits.reshape(batch, num_regions, -1), dim=2)  # (B, K, HW)
        pixels = features.reshape(batch, features.shape[1], -1).permute(0, 2, 1)  # (B, HW, C)
        regions = torch.matmul(weights, pixels)  # (B, K, C)
        return regions.permute(0, 2, 1).unsqueeze(3)  # (B, C, K, 1)


class ObjectAttention(nn.Module):
    """Scaled dot-product attention from every pixel (queries) to the region vectors."""

    def __init__(self, in_ch: int, key_ch: int) -> None:
        super().__init__()
        self.key_ch = key_ch
        self.f_pixel = nn.Sequential(*_conv1x1_bn_relu(in_ch, key_ch), *_conv1x1_bn_relu(key_ch, key_ch))
        self.f_object = nn.Sequential(*_conv1x1_bn_relu(in_ch, key_ch), *_conv1x1_bn_relu(key_ch, key_ch))
        self.f_down = nn.Sequential(*_conv1x1_bn_relu(in_ch, key_ch))
        self.f_up = nn.Sequential(*_conv1x1_bn_relu(key_ch, in_ch))

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = pixels.shape
        query = self.f_pixel(pixels).reshape(batch, self.key_ch, -1).permute(0, 2, 1)
        key = self.f_object(regions).reshape(batch, self.key_ch, -1)
        value = self.f_down(regions).reshape(batch, self.key_ch, -1).permute(0, 2, 1)
        similarity = (self.key_ch**-0.5) * torch.matmul(query, key)  # (B, HW, K)
        attention = F.softmax(similarity, dim=-1)
        context = torch.matmul(attention, value).permute(0, 2, 1).contiguous()
        context = context.reshape(batch, self.key_ch, height, width)
        return self.f_up(context)


class ObjectContextHead(nn.Module):
    """Attend to the region vectors, concatenate ``[context, pixels]``, project with 1x1 conv."""

    def __init__(self, in_ch: int, key_ch: int, out_ch: int, dropout: float = 0.05) -> None:
        super().__init__()
        self.object_context_block = ObjectAttention(in_ch, key_ch)
        self.conv_bn_dropout = nn.Sequential(
            *_conv1x1_bn_relu(2 * in_ch, out_ch),
            nn.Dropout2d(dropout),
        )

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(pixels, regions)
        return self.conv_bn_dropout(torch.cat([context, pixels], dim=1))
