"""FCFI with a DeepLabV3+ head on a dilated ResNet (the official "ResNet-101 SBD" network).

Layout (the state-dict keys equal those of the official checkpoint, so it loads strictly):

* ``maps_transform``: click disk maps (2 ch) -> 1x1 conv 16 -> LeakyReLU(0.2) / ReLU ->
  3x3 stride-2 conv 64 -> ``|scale|``. The result is added, zero-padded along channels, to the
  ResNet stem output before the max-pool. Unlike the HRNet variant, the previous mask is *not* a
  click channel here: it reaches the network only through FFCM and CFFM.
* ``feature_extractor``: ``backbone`` (:class:`~napari_fcfi.model.resnet.ResNetV1s`), ``aspp``
  on stage 4, upsampled to stride 4; ``correction_module`` (FFCM) and ``feedback_fusion`` (CFFM)
  act on these ASPP features; then the features are concatenated with ``skip_project`` (32-ch
  projection of stage 1) and passed through ``head`` (two separable convs + 1x1).
* ``head``: separable-conv head to one logit channel.

Call contract (see ``docs/architecture.md``)::

    out = net(image(B,4,H,W), points(B,2N,3), new_clicks(B,K,3) long, gate, is_training=False)

All outputs are returned at input size: ``instances`` (logits), ``updated_feedback1`` (FFCM),
``updated_feedback2`` (CFFM) and, on the training path, ``valid_masks``. As in the reference,
``updated_feedback1`` is upsampled with ``align_corners=False`` and ``valid_masks`` with nearest
neighbour; everything else uses bilinear with ``align_corners=True``. (``FCFIHRNet`` returns
its feedbacks at stride 4 instead; the engine and the losses resize whatever they get, and a
same-size ``align_corners=True`` resize is an exact identity, so both conventions work there.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_fcfi.model.fcfi_modules import make_feedback_modules
from napari_fcfi.model.ops import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DiskClickMaps,
    ImageNormalizer,
    ScaleLayer,
    resize_bilinear,
)
from napari_fcfi.model.resnet import RESNET_SPECS, ResNetV1s

__all__ = ["FCFIDeepLab"]

# Name under which the reference stores its only norm layer class; accepted for config parity.
_BATCHNORM_NAMES = ("torch.nn.modules.batchnorm.BatchNorm2d", "torch.nn.BatchNorm2d", "BatchNorm2d")
SKIP_CHANNELS = 32  # fixed width of the stage-1 skip projection in the reference DeepLabV3+
ASPP_RATES = (12, 24, 36)
MAPS_TRANSFORM_CHANNELS = 64


# --------------------------------------------------------------------------------------------
# DeepLabV3+ parts
# --------------------------------------------------------------------------------------------


def _conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    """Bias-free conv -> BN -> ReLU (ASPP branches and projections)."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    )


class _SeparableBlock(nn.Module):
    """Depthwise 3x3 -> pointwise 1x1 (both bias-free) -> BN -> ReLU, in ``body``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _separable_stack(in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """Two separable blocks then a 1x1 conv with bias (DeepLab decoder and final head)."""
    return nn.Sequential(
        _SeparableBlock(in_ch, mid_ch), _SeparableBlock(mid_ch, mid_ch), nn.Conv2d(mid_ch, out_ch, 1)
    )


class _DecoderHead(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.block = _separable_stack(in_ch, out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _OutputHead(nn.Module):
    def __init__(self, in_ch: int, num_outputs: int = 1) -> None:
        super().__init__()
        self.layers = _separable_stack(in_ch, in_ch // 2, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _SkipProjection(nn.Module):
    def __init__(self, in_ch: int, out_ch: int = SKIP_CHANNELS) -> None:
        super().__init__()
        self.skip_project = _conv_bn_relu(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_project(x)


class _ImagePooling(nn.Module):
    """Global-average-pool branch of ASPP, broadcast back to the input size."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), *_conv_bn_relu(in_ch, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_bilinear(self.gap(x), x.shape[-2:])


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3, image pooling; 1x1 projection."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        branches: list[nn.Module] = [_conv_bn_relu(in_ch, out_ch)]
        branches += [_conv_bn_relu(in_ch, out_ch, 3, dilation=rate) for rate in ASPP_RATES]
        branches.append(_ImagePooling(in_ch, out_ch))
        # "concurent" (sic) is the reference's attribute name; kept for checkpoint compatibility.
        self.concurent = nn.ModuleList(branches)
        project: list[nn.Module] = list(_conv_bn_relu(len(branches) * out_ch, out_ch))
        if dropout > 0:
            project.append(nn.Dropout(dropout))
        self.project = nn.Sequential(*project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.concurent], dim=1))


class _DeepLabFeatures(nn.Module):
    """Backbone + ASPP + FFCM + CFFM + decoder; the official ``feature_extractor``."""

    def __init__(
        self,
        backbone: str,
        base_width: int,
        channels: int,
        mid_ch: int,
        aspp_dropout: float,
        window_ratio: float,
        update_num: int,
        use_ffcm: bool = True,
        use_cffm: bool = True,
    ) -> None:
        super().__init__()
        self.update_num = update_num
        # Registration order equals the reference's, so state_dict() lists keys in file order.
        self.backbone = ResNetV1s(backbone, base_width=base_width)
        stage1_ch, _, _, stage4_ch = self.backbone.stage_channels
        self.head = _DecoderHead(channels + SKIP_CHANNELS, channels)
        self.skip_project = _SkipProjection(stage1_ch)
        self.aspp = _ASPP(stage4_ch, channels, aspp_dropout)
        # FFCM guide channels: normalised RGB (3) + two click disks (2) + previous mask (1).
        self.correction_module, self.feedback_fusion = make_feedback_modules(
            channels, 6, mid_ch, window_ratio, use_ffcm, use_cffm
        )

    def forward(
        self,
        image: torch.Tensor,
        click_maps: torch.Tensor,
        new_clicks: torch.Tensor,
        prev_mask: torch.Tensor,
        gate: float | torch.Tensor,
        stem_extra: torch.Tensor | None,
        is_training: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        stage1, _, _, stage4 = self.backbone(image, stem_extra)
        skip = self.skip_project(stage1)
        features = resize_bilinear(self.aspp(stage4), skip.shape[-2:])
        feedback1, soft_window = self.correction_module(
            image, click_maps, features, prev_mask, new_clicks, is_training
        )
        features, feedback2 = self.feedback_fusion(features, feedback1, gate, self.update_num)
        decoded = self.head(torch.cat((features, skip), dim=1))
        return decoded, feedback1, soft_window, feedback2


# --------------------------------------------------------------------------------------------
# Full network
# --------------------------------------------------------------------------------------------


class FCFIDeepLab(nn.Module):
    """FCFI on ResNet + DeepLabV3+ (official ``DeeplabModel``), with click encoding.

    The constructor accepts every parameter the official checkpoint ``config`` records (same
    names), so an official config maps 1:1; options the reference has but that no released
    model uses (and that would change the architecture) are refused with a ValueError. The
    defaults are those of the released ResNet-101 SBD model. ``base_width`` (not in the
    reference) shrinks the ResNet for CPU-sized networks; 64 is the standard width.

    Args:
        backbone: ``resnet18``/``resnet34`` (v1b stem) or ``resnet50``/``resnet101``/``resnet152``
            (v1s deep stem).
        deeplab_ch: ASPP / decoder width (256).
        mid_ch: FFCM / CFFM width (32).
        aspp_dropout: dropout after the ASPP projection.
        update_num: CFFM update rounds.
        expansion_ratio: FFCM window size as a fraction of the input height and width.
        use_leaky_relu: LeakyReLU(0.2) (else ReLU) in ``maps_transform``.
        norm_radius: click disk radius in input pixels.
        with_prev_mask: must be True (FFCM/CFFM need the previous mask).
        binary_prev_mask: threshold the previous mask at 0.5 before use.
        norm_mean_std: ImageNet mean and std applied to RGB in [0, 1].
        with_aux_output: must be False (the DeepLab variant has no auxiliary head).
        backbone_lr_mult: learning-rate multiplier for the backbone (read by the trainer).
        use_rgb_conv, use_disks, conv_extend, clicks_groups, cpu_dist_maps, norm_layer,
            backbone_norm_layer: official options, accepted only at the released values.
        base_width: ResNet first-stage width (64 standard).
        use_ffcm, use_cffm: build FFCM / CFFM (False: a parameter-free pass-through, for the
            ablation study).
    """

    def __init__(
        self,
        backbone: str = "resnet101",
        deeplab_ch: int = 256,
        mid_ch: int = 32,
        aspp_dropout: float = 0.2,
        update_num: int = 1,
        expansion_ratio: float = 0.3,
        use_leaky_relu: bool = True,
        norm_radius: float = 5,
        with_prev_mask: bool = True,
        binary_prev_mask: bool = False,
        norm_mean_std: Sequence[Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
        with_aux_output: bool = False,
        backbone_lr_mult: float = 0.1,
        use_rgb_conv: bool = False,
        use_disks: bool = True,
        conv_extend: bool = False,
        clicks_groups: Any = None,
        cpu_dist_maps: bool = False,
        norm_layer: Any = "torch.nn.modules.batchnorm.BatchNorm2d",
        backbone_norm_layer: Any = None,
        base_width: int = 64,
        use_ffcm: bool = True,
        use_cffm: bool = True,
    ) -> None:
        super().__init__()
        where = "FCFIDeepLab"
        if backbone not in RESNET_SPECS:
            raise ValueError(
                f"{where}: unknown backbone {backbone!r}; expected one of {sorted(RESNET_SPECS)}"
            )
        for name, value in (("deeplab_ch", deeplab_ch), ("mid_ch", mid_ch), ("update_num", update_num)):
            if int(value) != value or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
        if deeplab_ch < 2:
            raise ValueError(
                f"{where}: deeplab_ch must be >= 2 (the output head halves it), got {deeplab_ch}"
            )
        if not 0 <= aspp_dropout < 1:
            raise ValueError(f"{where}: aspp_dropout must be in [0, 1), got {aspp_dropout}")
        unsupported = {
            "with_prev_mask": (with_prev_mask, True),
            "with_aux_output": (with_aux_output, False),
            "use_rgb_conv": (use_rgb_conv, False),
            "use_disks": (use_disks, True),
            "conv_extend": (conv_extend, False),
            "clicks_groups": (clicks_groups, None),
            "cpu_dist_maps": (cpu_dist_maps, False),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(
                    f"{where}: {name}={value!r} is not supported "
                    f"(only {supported!r}, as in the released models)"
                )
        norm_layer = _batchnorm_name(norm_layer, "norm_layer")
        if backbone_norm_layer is not None:
            backbone_norm_layer = _batchnorm_name(backbone_norm_layer, "backbone_norm_layer")
        mean, std = (tuple(float(v) for v in seq) for seq in norm_mean_std)

        self.config: dict[str, Any] = {
            "arch": "deeplab",
            "backbone": backbone,
            "deeplab_ch": int(deeplab_ch),
            "mid_ch": int(mid_ch),
            "aspp_dropout": float(aspp_dropout),
            "update_num": int(update_num),
            "expansion_ratio": float(expansion_ratio),
            "use_leaky_relu": bool(use_leaky_relu),
            "norm_radius": norm_radius,
            "with_prev_mask": bool(with_prev_mask),
            "binary_prev_mask": bool(binary_prev_mask),
            "norm_mean_std": [list(mean), list(std)],
            "with_aux_output": bool(with_aux_output),
            "backbone_lr_mult": float(backbone_lr_mult),
            "use_rgb_conv": False,
            "use_disks": True,
            "conv_extend": False,
            "clicks_groups": None,
            "cpu_dist_maps": False,
            "norm_layer": norm_layer,
            "backbone_norm_layer": backbone_norm_layer,
            "base_width": int(base_width),
        }
        # Recorded only when switched off, so the configs of full FCFI models stay as they were.
        if not use_ffcm:
            self.config["use_ffcm"] = False
        if not use_cffm:
            self.config["use_cffm"] = False
        self.with_aux_output = False
        self.binary_prev_mask = bool(binary_prev_mask)
        self.backbone_lr_mult = float(backbone_lr_mult)

        self.normalize = ImageNormalizer(mean, std)
        self.click_maps = DiskClickMaps(norm_radius)
        # Registration order (maps_transform, feature_extractor, head) equals the reference's.
        stem_channels = _stem_channels(backbone, base_width)
        self.maps_transform = nn.Sequential(
            nn.Conv2d(2, 16, 1),
            nn.LeakyReLU(negative_slope=0.2) if use_leaky_relu else nn.ReLU(),
            nn.Conv2d(16, min(MAPS_TRANSFORM_CHANNELS, stem_channels), 3, stride=2, padding=1),
            ScaleLayer(0.05),
        )
        self.feature_extractor = _DeepLabFeatures(
            backbone,
            base_width,
            deeplab_ch,
            mid_ch,
            aspp_dropout,
            expansion_ratio,
            update_num,
            use_ffcm=bool(use_ffcm),
            use_cffm=bool(use_cffm),
        )
        self.head = _OutputHead(deeplab_ch, 1)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters that the reference trains with ``backbone_lr_mult``."""
        return list(self.feature_extractor.backbone.parameters())

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        new_clicks: torch.Tensor,
        gate: float | torch.Tensor,
        is_training: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Run one prediction; see the module docstring for shapes and outputs."""
        if image.ndim != 4 or image.shape[1] != 4:
            raise ValueError(
                f"FCFIDeepLab: image must be (B, 4, H, W) (RGB + previous mask), got {tuple(image.shape)}"
            )
        if new_clicks.ndim == 2:
            new_clicks = new_clicks[:, None]
        if (
            new_clicks.ndim != 3
            or new_clicks.shape[-1] != 3
            or new_clicks.shape[0] != image.shape[0]
            or new_clicks.shape[1] < 1
        ):
            raise ValueError(
                f"FCFIDeepLab: new_clicks must be (B, K, 3) (row, col, is_positive) "
                f"with B={image.shape[0]} and K >= 1, "
                f"got {tuple(new_clicks.shape)}"
            )
        if points.ndim != 3 or points.shape[0] != image.shape[0]:
            raise ValueError(
                f"FCFIDeepLab: points must be (B, 2N, 3) with B={image.shape[0]}, got {tuple(points.shape)}"
            )
        new_clicks = new_clicks.long()
        size = image.shape[-2:]
        prev_mask = image[:, 3:]
        if self.binary_prev_mask:
            prev_mask = (prev_mask > 0.5).to(image.dtype)
        rgb = self.normalize(image[:, :3])
        click_maps = self.click_maps(points, size[0], size[1]).to(rgb.dtype)
        stem_extra = self.maps_transform(click_maps)
        decoded, feedback1, soft_window, feedback2 = self.feature_extractor(
            rgb, click_maps, new_clicks, prev_mask, gate, stem_extra, is_training
        )
        outputs = {
            "instances": resize_bilinear(self.head(decoded), size),
            # align_corners=False here (only here) is what the reference does.
            "updated_feedback1": F.interpolate(
                feedback1, size=tuple(size), mode="bilinear", align_corners=False
            ),
            "updated_feedback2": resize_bilinear(feedback2, size),
        }
        if is_training:
            # No window when FFCM is switched off (ablation).
            outputs["valid_masks"] = (
                None if soft_window is None else F.interpolate(soft_window, size=tuple(size), mode="nearest")
            )
        return outputs


def _stem_channels(backbone: str, base_width: int) -> int:
    return 2 * base_width if RESNET_SPECS[backbone].deep_stem else base_width


def _batchnorm_name(value: Any, name: str) -> str:
    """Normalise a norm-layer spec (class or dotted path) to the reference's dotted path."""
    if value is nn.BatchNorm2d or value in _BATCHNORM_NAMES:
        return _BATCHNORM_NAMES[0]
    raise ValueError(f"FCFIDeepLab: {name}={value!r} is not supported (only BatchNorm2d)")
