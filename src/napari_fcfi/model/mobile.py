"""FCFI on an ImageNet-pretrained mobile backbone (MobileNetV2 or EfficientNet-Lite0).

Built the way the paper builds its ResNet variant (DeepLabV3+): backbone -> ASPP at the output
stride -> upsampled to stride 4, where FFCM corrects the feedback around the newest click and CFFM
refines it and fuses it back into the features -> concatenated with a projection of the stride-4
backbone features -> separable-conv head -> one logit map. Same call contract, outputs and
losses as :class:`~napari_fcfi.model.networks.FCFIHRNet`::

    out = net(image(B,4,H,W), points(B,2N,3), new_clicks(B,K,3), gate, is_training=False)

Click injection keeps the pretrained path intact at the start: the click disks and the previous
mask (``with_prev_mask``, as in the HRNet variant) pass a small encoder whose last, stride-2 conv is
zero-initialised and whose output is added to the backbone's stem activations. At initialisation
the network therefore computes exactly the ImageNet features; training opens the click path.
The ASPP uses depthwise-separable dilated branches (DeepLabV3+'s "separable ASPP"), cheap enough
for a laptop CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from napari_fcfi.model.fcfi_modules import make_feedback_modules
from napari_fcfi.model.mobile_backbones import BACKBONES, STEM_CHANNELS, build_backbone
from napari_fcfi.model.network_io import encode_inputs
from napari_fcfi.model.ops import IMAGENET_MEAN, IMAGENET_STD, DiskClickMaps, ImageNormalizer, resize_bilinear

__all__ = ["FCFIMobile"]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


def _separable(in_ch: int, out_ch: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (dilated) -> pointwise 1x1 -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch, bias=False),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class _ImagePool(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.project = _conv_bn_relu(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(x.mean(dim=(2, 3), keepdim=True))
        return pooled.expand(-1, -1, x.shape[-2], x.shape[-1])


class SeparableASPP(nn.Module):
    """1x1, three separable dilated 3x3 branches and image pooling, projected to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int], dropout: float = 0.1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_ch, out_ch)]
            + [_separable(in_ch, out_ch, int(r)) for r in rates]
            + [_ImagePool(in_ch, out_ch)]
        )
        self.project = nn.Sequential(_conv_bn_relu(out_ch * len(self.branches), out_ch), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class FCFIMobile(nn.Module):
    """FCFI with a DeepLabV3+-style decoder on MobileNetV2 or EfficientNet-Lite0.

    Args:
        backbone: ``"mobilenet_v2"`` or ``"efficientnet_lite0"`` (:data:`~.mobile_backbones.BACKBONES`).
        output_stride: 16 (last stage dilated) or 32.
        aspp_ch: ASPP / FFCM / CFFM feature width.
        aspp_rates: dilation rates of the three separable ASPP branches (at the output stride).
        skip_ch: width of the stride-4 skip projection.
        decoder_ch: width of the output head.
        mid_ch: channels inside FFCM and CFFM.
        update_num: CFFM rounds.
        expansion_ratio: FFCM window side as a fraction of the input side.
        norm_radius: click disk radius in input pixels.
        with_prev_mask: feed the previous mask into the click encoder too.
        use_leaky_relu: LeakyReLU(0.2) (else ReLU) in the click encoder.
        norm_mean_std: RGB normalisation (ImageNet's, as the backbones were trained with).
        backbone_lr_mult: learning-rate factor for the backbone (read by the trainer).
        use_ffcm, use_cffm: build FFCM / CFFM (False: parameter-free pass-through, for ablations).
    """

    arch = "mobile"

    def __init__(
        self,
        backbone: str = "mobilenet_v2",
        output_stride: int = 16,
        aspp_ch: int = 96,
        aspp_rates: Sequence[int] = (2, 4, 6),
        skip_ch: int = 32,
        decoder_ch: int = 64,
        mid_ch: int = 32,
        update_num: int = 1,
        expansion_ratio: float = 0.3,
        norm_radius: float = 5,
        with_prev_mask: bool = True,
        use_leaky_relu: bool = True,
        norm_mean_std: Sequence[Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
        backbone_lr_mult: float = 0.1,
        use_ffcm: bool = True,
        use_cffm: bool = True,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"FCFIMobile: unknown backbone {backbone!r}; known: {sorted(BACKBONES)}")
        for name, value in (
            ("aspp_ch", aspp_ch),
            ("skip_ch", skip_ch),
            ("decoder_ch", decoder_ch),
            ("mid_ch", mid_ch),
            ("update_num", update_num),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"FCFIMobile: {name} must be a positive integer, got {value!r}")
        if len(aspp_rates) != 3 or any(int(r) < 1 for r in aspp_rates):
            raise ValueError(f"FCFIMobile: aspp_rates must be three positive integers, got {aspp_rates!r}")
        mean, std = (list(map(float, v)) for v in norm_mean_std)
        self._config: dict[str, Any] = {
            "arch": self.arch,
            "backbone": backbone,
            "output_stride": int(output_stride),
            "aspp_ch": int(aspp_ch),
            "aspp_rates": [int(r) for r in aspp_rates],
            "skip_ch": int(skip_ch),
            "decoder_ch": int(decoder_ch),
            "mid_ch": int(mid_ch),
            "update_num": int(update_num),
            "expansion_ratio": float(expansion_ratio),
            "norm_radius": norm_radius,
            "with_prev_mask": bool(with_prev_mask),
            "use_leaky_relu": bool(use_leaky_relu),
            "norm_mean_std": [mean, std],
            "backbone_lr_mult": float(backbone_lr_mult),
        }
        if not use_ffcm:
            self._config["use_ffcm"] = False
        if not use_cffm:
            self._config["use_cffm"] = False
        self.with_prev_mask = bool(with_prev_mask)
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.update_num = int(update_num)
        self.normalization = ImageNormalizer(mean, std)
        self.dist_maps = DiskClickMaps(norm_radius)
        self.backbone = build_backbone(backbone, int(output_stride))
        coord_ch = 2 + int(self.with_prev_mask)
        stem_conv = self.backbone.stem_like_conv(16, STEM_CHANNELS)
        nn.init.zeros_(stem_conv.weight)
        nn.init.zeros_(stem_conv.bias)
        self.maps_transform = nn.Sequential(
            nn.Conv2d(coord_ch, 16, 1),
            nn.LeakyReLU(negative_slope=0.2) if use_leaky_relu else nn.ReLU(),
            stem_conv,
        )
        self.aspp = SeparableASPP(self.backbone.high_channels, int(aspp_ch), aspp_rates)
        self.skip_project = _conv_bn_relu(self.backbone.low_channels, int(skip_ch))
        self.correction_module, self.fusion_module = make_feedback_modules(
            int(aspp_ch),
            3 + coord_ch + 1,
            int(mid_ch),
            float(expansion_ratio),
            bool(use_ffcm),
            bool(use_cffm),
        )
        self.head = nn.Sequential(
            _separable(int(aspp_ch) + int(skip_ch), int(decoder_ch)),
            _separable(int(decoder_ch), int(decoder_ch)),
            nn.Conv2d(int(decoder_ch), 1, 1),
        )

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments plus ``"arch"``; see ``build_network``."""
        return copy.deepcopy(self._config)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Pretrained parameters, trained with ``backbone_lr_mult`` times the learning rate."""
        return list(self.backbone.parameters())

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        new_clicks: torch.Tensor,
        gate: float,
        is_training: bool = False,
    ) -> dict[str, torch.Tensor]:
        rgb, feedback, click_maps = encode_inputs(self, image, points)
        height, width = rgb.shape[-2:]
        low, high = self.backbone(rgb, self.maps_transform(click_maps))
        skip = self.skip_project(low)
        features = resize_bilinear(self.aspp(high), skip.shape[-2:])
        feedback1, window = self.correction_module(
            rgb, click_maps, features, feedback, new_clicks, is_training=is_training
        )
        features, feedback2 = self.fusion_module(features, feedback1, float(gate), self.update_num)
        logits = self.head(torch.cat((features, skip), dim=1))
        out: dict[str, torch.Tensor] = {
            "instances": resize_bilinear(logits, (height, width)),
            "updated_feedback1": feedback1,
            "updated_feedback2": feedback2,
        }
        if is_training:
            out["valid_masks"] = window
        return out
