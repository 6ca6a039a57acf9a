"""HRNet backbone (Sun et al. 2019) for FCFI, any width, full depth or "small" depth.

The backbone keeps four resolution branches (strides 4, 8, 16, 32, channels ``w, 2w, 4w, 8w``)
and returns them upsampled to stride 4 and concatenated (``15 * w`` channels).

Depth presets:

* full (``small=False``): 4 residual blocks per branch; 1 / 4 / 3 exchange modules in stages
  2 / 3 / 4 (this is what the official FCFI "hrnet18s" checkpoint uses).
* small (``small=True``): 2 blocks per branch; 1 / 3 / 2 modules (HRNet-W18-small).

Attribute names follow the official state-dict layout so that official weights load as they are.
A click/mask embedding can be added after the first stem convolution (``stem_addition``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_fcfi.model.ops import resize_bilinear

STEM_CHANNELS = 64


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity (or projected) shortcut."""

    expansion = 1
    fusable_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # bn(conv(x)) only: foldable (model/fusion.py)

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with BatchNorm and a shortcut."""

    expansion = 4
    fusable_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


def _residual_stack(block: type, in_ch: int, ch: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first one projects the shortcut if channels change."""
    out_ch = ch * block.expansion
    downsample = None
    if in_ch != out_ch:
        downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
    layers = [block(in_ch, ch, downsample=downsample)]
    layers += [block(out_ch, ch) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ExchangeModule(nn.Module):
    """One HRNet module: parallel residual branches, then every branch receives all others.

    Lower-resolution inputs are projected (1x1 conv + BN) and bilinearly upsampled; higher
    resolution inputs go through stride-2 3x3 convs (ReLU between them, not after the last).
    """

    def __init__(self, channels: list[int], num_blocks: int) -> None:
        super().__init__()
        self.channels = list(channels)
        self.branches = nn.ModuleList([_residual_stack(BasicBlock, c, c, num_blocks) for c in channels])
        n = len(channels)
        self.fuse_layers: nn.ModuleList | None = None
        if n > 1:
            rows = []
            for target in range(n):
                row: list[nn.Module | None] = []
                for source in range(n):
                    if source > target:
                        row.append(_conv_bn(channels[source], channels[target], 1, 1, relu=False))
                    elif source == target:
                        row.append(None)
                    else:
                        steps = target - source
                        downs = [
                            _conv_bn(channels[source], channels[source], 3, 2, relu=True)
                            for _ in range(steps - 1)
                        ]
                        downs.append(_conv_bn(channels[source], channels[target], 3, 2, relu=False))
                        row.append(nn.Sequential(*downs))
                rows.append(nn.ModuleList(row))
            self.fuse_layers = nn.ModuleList(rows)
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        fused = []
        for target, row in enumerate(self.fuse_layers):
            y = xs[0] if target == 0 else row[0](xs[0])
            for source in range(1, len(xs)):
                if source == target:
                    y = y + xs[source]
                elif source > target:
                    y = y + resize_bilinear(row[source](xs[source]), xs[target].shape[-2:])
                else:
                    y = y + row[source](xs[source])
            # No activation after the sum: the reference implementation omits it as well.
            fused.append(y)
        return fused


def default_branch_channels(width: int) -> list[int]:
    """HRNet's branch channels: ``width``, doubled at every coarser branch."""
    return [width * 2**i for i in range(4)]


class HRNetBackbone(nn.Module):
    """HRNet trunk returning the stride-4 concatenation of all four branches.

    Args:
        width: channels of the highest-resolution branch (18 for W18, 32 for W32).
        small: reduced depth (2 blocks per branch, 3 / 2 modules in stages 3 / 4).
        branch_channels: channels of the four branches, when not ``width * (1, 2, 4, 8)`` (a
            widened network can grow the cheap low-resolution branches more than the others).
    """

    # The stem applies bn1 to conv1's output alone (``stem_addition`` joins after the ReLU).
    fusable_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self, width: int = 18, small: bool = False, branch_channels: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"HRNetBackbone: width must be >= 1, got {width}")
        self.branch_channels = (
            default_branch_channels(width) if branch_channels is None else list(branch_channels)
        )
        if len(self.branch_channels) != 4 or any(int(c) != c or c < 1 for c in self.branch_channels):
            raise ValueError(
                f"HRNetBackbone: branch_channels must be 4 integers >= 1, got {branch_channels!r}"
            )
        self.width = width
        self.small = small
        num_blocks = 2 if small else 4
        modules_per_stage = (1, 3, 2) if small else (1, 4, 3)

        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.conv2 = nn.Conv2d(STEM_CHANNELS, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU()
        self.layer1 = _residual_stack(Bottleneck, STEM_CHANNELS, 64, num_blocks)

        previous = [64 * Bottleneck.expansion]
        for stage, num_modules in zip((2, 3, 4), modules_per_stage):
            channels = [int(c) for c in self.branch_channels[:stage]]
            setattr(self, f"transition{stage - 1}", self._transition(previous, channels))
            setattr(
                self,
                f"stage{stage}",
                nn.Sequential(*[ExchangeModule(channels, num_blocks) for _ in range(num_modules)]),
            )
            previous = channels
        self.out_channels = sum(previous)

    @staticmethod
    def _transition(previous: list[int], channels: list[int]) -> nn.ModuleList:
        """Adapt existing branches (3x3 conv when channels differ) and spawn a new, coarser one."""
        layers: list[nn.Module | None] = []
        for i, ch in enumerate(channels):
            if i < len(previous):
                layers.append(None if previous[i] == ch else _conv_bn(previous[i], ch, 3, 1, relu=True))
            else:
                extra = i + 1 - len(previous)
                steps = [
                    _conv_bn(previous[-1], ch if k == extra - 1 else previous[-1], 3, 2, relu=True)
                    for k in range(extra)
                ]
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(transition):
            source = xs[i] if i < len(xs) else xs[-1]
            out.append(source if layer is None else layer(source))
        return out

    def stem(self, x: torch.Tensor, stem_addition: torch.Tensor | None = None) -> torch.Tensor:
        """Two stride-2 convs; ``stem_addition`` (64 channels, stride 2) joins after the first."""
        x = self.relu(self.bn1(self.conv1(x)))
        if stem_addition is not None:
            x = x + stem_addition
        return self.relu(self.bn2(self.conv2(x)))

    def forward_features(self, x: torch.Tensor, stem_addition: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` image -> ``(B, sum(branch_channels), H/4, W/4)`` multi-resolution features."""
        xs = [self.layer1(self.stem(x, stem_addition))]
        for stage in (2, 3, 4):
            xs = self._apply_transition(getattr(self, f"transition{stage - 1}"), xs)
            xs = getattr(self, f"stage{stage}")(xs)
        size = xs[0].shape[-2:]
        return torch.cat([xs[0]] + [resize_bilinear(x, size) for x in xs[1:]], dim=1)

    def forward(self, x: torch.Tensor, stem_addition: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x, stem_addition)
