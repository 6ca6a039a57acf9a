"""Dilated ResNet backbones (v1b / v1s "deep stem") for the DeepLabV3+ FCFI network.

The module and attribute names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``downsample``) are
chosen so that the state-dict keys equal those of the official FCFI ResNet-101 checkpoint under
``feature_extractor.backbone.``. Layers 3 and 4 are dilated instead of strided (output stride 8),
as the official DeepLab backbone does; there is no classifier (``avgpool``/``fc``) because the
official backbone wrapper does not keep one either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RESNET_SPECS", "BasicResidualBlock", "BottleneckResidualBlock", "ResNetSpec", "ResNetV1s"]


class BasicResidualBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    ``dilation`` applies to the first convolution, ``second_dilation`` to the second one; they
    differ in the first block of a dilated stage, where the input still has the previous dilation.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        second_dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, padding=second_dilation, dilation=second_dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class BottleneckResidualBlock(nn.Module):
    """1x1 reduce, 3x3 (strided / dilated), 1x1 expand (x4), with a residual connection (ResNet-50+).

    ``second_dilation`` is accepted for a uniform block signature; a bottleneck has only one 3x3
    convolution, which uses ``dilation``.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        second_dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        del second_dilation
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


@dataclass(frozen=True)
class ResNetSpec:
    """Block type, blocks per stage and stem type of one named ResNet."""

    block: type[nn.Module]
    blocks_per_stage: tuple[int, int, int, int]
    deep_stem: bool


# v1b (single 7x7 stem) for the basic-block nets, v1s (three 3x3 stem convs) for bottleneck nets,
# matching the official choices (resnet34_v1b, resnet50/101/152_v1s).
RESNET_SPECS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicResidualBlock, (2, 2, 2, 2), deep_stem=False),
    "resnet34": ResNetSpec(BasicResidualBlock, (3, 4, 6, 3), deep_stem=False),
    "resnet50": ResNetSpec(BottleneckResidualBlock, (3, 4, 6, 3), deep_stem=True),
    "resnet101": ResNetSpec(BottleneckResidualBlock, (3, 4, 23, 3), deep_stem=True),
    "resnet152": ResNetSpec(BottleneckResidualBlock, (3, 8, 36, 3), deep_stem=True),
}


class ResNetV1s(nn.Module):
    """Dilated ResNet (output stride 8) returning the four stage outputs.

    Args:
        name: one of :data:`RESNET_SPECS` (``resnet18`` ... ``resnet152``).
        base_width: channels of the first stage's 3x3 convolutions (64 in every standard ResNet);
            the stages use ``base_width * (1, 2, 4, 8)``. Smaller values give CPU-sized networks
            that no ImageNet weights exist for.

    ``forward(x, stem_extra)`` adds ``stem_extra`` (zero-padded along channels) to the stem
    output after its BatchNorm and ReLU, before the max-pool: this is where the FCFI click
    encoding enters the backbone.
    """

    def __init__(self, name: str = "resnet101", base_width: int = 64) -> None:
        super().__init__()
        if name not in RESNET_SPECS:
            raise ValueError(f"ResNetV1s: unknown backbone {name!r}; expected one of {sorted(RESNET_SPECS)}")
        if base_width < 1:
            raise ValueError(f"ResNetV1s: base_width must be positive, got {base_width}")
        spec = RESNET_SPECS[name]
        self.name = name
        self.base_width = base_width
        block = spec.block

        if spec.deep_stem:
            stem_width = base_width
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem_width, 2 * stem_width, 3, padding=1, bias=False),
            )
            self.stem_channels = 2 * stem_width
        else:
            self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
            self.stem_channels = base_width
        self.bn1 = nn.BatchNorm2d(self.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        widths = [base_width * m for m in (1, 2, 4, 8)]
        self._in_channels = self.stem_channels
        blocks = spec.blocks_per_stage
        self.layer1 = self._make_stage(block, widths[0], blocks[0], stride=1, dilation=1)
        self.layer2 = self._make_stage(block, widths[1], blocks[1], stride=2, dilation=1)
        self.layer3 = self._make_stage(block, widths[2], blocks[2], stride=1, dilation=2)
        self.layer4 = self._make_stage(block, widths[3], blocks[3], stride=1, dilation=4)
        self.stage_channels = tuple(w * block.expansion for w in widths)
        del self._in_channels

    def _make_stage(
        self, block: type[nn.Module], planes: int, num_blocks: int, stride: int, dilation: int
    ) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        # The first block of a dilated stage still sees the previous stage's dilation (half of
        # this one; dilation 2 stages start undilated), as in the dilated-ResNet recipe.
        first_dilation = 1 if dilation <= 2 else dilation // 2
        blocks = [block(self._in_channels, planes, stride, first_dilation, dilation, downsample)]
        self._in_channels = out_channels
        blocks += [block(out_channels, planes, 1, dilation, dilation) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def forward(
        self, x: torch.Tensor, stem_extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the outputs of the four stages (strides 4, 8, 8, 8)."""
        x = self.relu(self.bn1(self.conv1(x)))
        if stem_extra is not None:
            missing = x.shape[1] - stem_extra.shape[1]
            if missing < 0:
                raise ValueError(
                    f"ResNetV1s: stem_extra has {stem_extra.shape[1]} channels, "
                    f"more than the stem's {x.shape[1]}"
                )
            x = x + F.pad(stem_extra, [0, 0, 0, 0, 0, missing])
        x = self.maxpool(x)
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return c1, c2, c3, c4
