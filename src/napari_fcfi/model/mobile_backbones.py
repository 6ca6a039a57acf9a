"""ImageNet-class mobile backbones for FCFI: MobileNetV2 and EfficientNet-Lite0.

Both are written from their papers (Sandler et al. 2018; Tan & Le 2019 and the "Lite" variant:
ReLU6, no squeeze-excitation, fixed stem/head) with module names chosen so that the state-dict
keys equal those of the public ImageNet files, which :mod:`napari_fcfi.model.imagenet` reads:

* MobileNetV2: torchvision's ``mobilenet_v2-b0353104.pth`` (``features.N...`` keys);
* EfficientNet-Lite0: ``efficientnet-lite0-57934424.pth`` from the ``efficientnet_pytorch`` family
  (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ... keys). Its weights were converted from
  TensorFlow, so its convolutions pad like TensorFlow's "SAME" (asymmetric for stride 2); the
  :class:`SamePadConv2d` here reproduces that, otherwise every feature map is shifted half a pixel.

A backbone returns two feature maps: ``low`` at stride 4 (DeepLabV3+ skip) and ``high`` at
``output_stride`` (16 or 32). For output stride 16 the last strided stage keeps stride 1 and
dilates its depthwise convolutions by 2 (DeepLab's "atrous" trick), so the pretrained weights
still apply. The classifier layers of the ImageNet files (MobileNetV2 ``features.18`` and
``classifier``; EfficientNet ``_conv_head``/``_bn1``/``_fc``) are not part of the backbone.

``forward(rgb, stem_addition)``: ``stem_addition`` (same shape as the stem output: 32 channels at
stride 2, or ``None``) is added after the stem's activation. FCFI injects the click maps there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BACKBONES", "EfficientNetLite0", "MobileNetV2", "SamePadConv2d", "build_backbone"]

STEM_CHANNELS = 32


# ----------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision layout)


def _conv_bn_relu6(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise (stride / dilation) -> 1x1 linear projection."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(in_ch, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expand ratio t, channels c, repeats n, first stride s) of the MobileNetV2 paper, table 2.
_MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) without its 1280-channel head; ``features.0`` .. ``features.17``."""

    name = "mobilenet_v2"

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"MobileNetV2: output_stride must be 16 or 32, got {output_stride}")
        layers: list[nn.Module] = [_conv_bn_relu6(3, STEM_CHANNELS, stride=2)]
        in_ch, stride_so_far, dilation = STEM_CHANNELS, 2, 1
        self.low_index = -1
        for t, c, n, s in _MOBILENET_V2_STAGES:
            for i in range(n):
                stride = s if i == 0 else 1
                if stride == 2 and stride_so_far == output_stride:
                    stride, dilation = 1, dilation * 2  # keep the resolution, widen the receptive field
                layers.append(_InvertedResidual(in_ch, c, stride, t, dilation))
                stride_so_far *= stride
                in_ch = c
            if stride_so_far == 4 and c == 24:
                self.low_index = len(layers) - 1
        self.features = nn.Sequential(*layers)
        self.low_channels = 24
        self.high_channels = in_ch
        self.output_stride = output_stride

    @staticmethod
    def stem_like_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
        """A stride-2 3x3 conv whose output lies on the stem's grid (for the click encoder)."""
        return nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)

    def forward(
        self, rgb: torch.Tensor, stem_addition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features[0](rgb)
        if stem_addition is not None:
            x = x + stem_addition
        low = x
        for index in range(1, len(self.features)):
            x = self.features[index](x)
            if index == self.low_index:
                low = x
        return low, x


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (efficientnet_pytorch layout, TensorFlow "SAME" padding)


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` that pads like TensorFlow's "SAME": output = ceil(input / stride), extra pixel at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pads = []
        for size, kernel, stride, dilation in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), reversed(self.dilation)
        ):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


# TensorFlow's batch-norm settings of the EfficientNet family (momentum 0.99 = torch 0.01).
_EFFICIENTNET_BN = {"eps": 1e-3, "momentum": 0.01}


class _MBConvLite(nn.Module):
    """EfficientNet-Lite block: [1x1 expand, BN, ReLU6] -> kxk depthwise, BN, ReLU6 -> 1x1 project, BN."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand_ratio: int, dilation: int = 1
    ) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.has_expansion = expand_ratio != 1
        if self.has_expansion:
            self._expand_conv = SamePadConv2d(in_ch, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_EFFICIENTNET_BN)
        self._depthwise_conv = SamePadConv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, dilation=dilation, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, **_EFFICIENTNET_BN)
        self._project_conv = SamePadConv2d(hidden, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, **_EFFICIENTNET_BN)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return x + out if self.use_residual else out


# (repeats, kernel, first stride, expand ratio, in, out) of EfficientNet-B0/Lite0 (width = depth = 1.0).
_EFFICIENTNET_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 without its 1280-channel head: ``_conv_stem``, ``_bn0``, ``_blocks.0..15``."""

    name = "efficientnet_lite0"

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"EfficientNetLite0: output_stride must be 16 or 32, got {output_stride}")
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, **_EFFICIENTNET_BN)
        blocks: list[nn.Module] = []
        stride_so_far, dilation = 2, 1
        self.low_index = -1
        for repeats, kernel, first_stride, expand, in_ch, out_ch in _EFFICIENTNET_LITE0_STAGES:
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                if stride == 2 and stride_so_far == output_stride:
                    stride, dilation = 1, dilation * 2
                blocks.append(
                    _MBConvLite(in_ch if i == 0 else out_ch, out_ch, kernel, stride, expand, dilation)
                )
                stride_so_far *= stride
            if stride_so_far == 4 and out_ch == 24:
                self.low_index = len(blocks) - 1
        self._blocks = nn.ModuleList(blocks)
        self.low_channels = 24
        self.high_channels = _EFFICIENTNET_LITE0_STAGES[-1][-1]
        self.output_stride = output_stride

    @staticmethod
    def stem_like_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
        """A stride-2 3x3 conv whose output lies on the stem's grid (for the click encoder)."""
        return SamePadConv2d(in_ch, out_ch, 3, stride=2)

    def forward(
        self, rgb: torch.Tensor, stem_addition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(rgb)))
        if stem_addition is not None:
            x = x + stem_addition
        low = x
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == self.low_index:
                low = x
        return low, x


BACKBONES: dict[str, type[nn.Module]] = {"mobilenet_v2": MobileNetV2, "efficientnet_lite0": EfficientNetLite0}


def build_backbone(name: str, output_stride: int = 16) -> nn.Module:
    """A backbone by name (:data:`BACKBONES`); ValueError naming the known ones otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"unknown mobile backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name](output_stride=output_stride)
