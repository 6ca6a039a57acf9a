"""The FCFI HRNet network (:class:`FCFIHRNet`) and its ready-made configurations.

:class:`FCFIHRNet` = click encoding + HRNet (+OCR) + FFCM + CFFM, following the network call
contract in ``docs/architecture.md``::

    out = net(image, points, new_clicks, gate, is_training=False)

Parameter names (the state-dict keys) are exactly those of the official FCFI HRNet checkpoints
(``maps_transform.*``, ``feature_extractor.*``), so official weights load with ``strict=True``.

Outputs follow the contract: ``instances`` / ``instances_aux`` logits at input size, the two
feedbacks (probabilities) and ``valid_masks`` at feature resolution (stride 4). The official model
upsamples the feedbacks to input size before returning them; :func:`~napari_fcfi.model.network_io.upsample_outputs` reproduces
that (bilinear, ``align_corners=True``; nearest for ``valid_masks``).
:func:`~napari_fcfi.model.architectures.build_network` builds any of our networks from its config.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from napari_fcfi.model.fcfi_modules import make_feedback_modules
from napari_fcfi.model.hrnet import STEM_CHANNELS, HRNetBackbone, default_branch_channels
from napari_fcfi.model.network_io import encode_inputs
from napari_fcfi.model.ocr import ObjectContextHead, RegionGather
from napari_fcfi.model.ops import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DiskClickMaps,
    ImageNormalizer,
    ScaleLayer,
    resize_bilinear,
)

NUM_CLASSES = 1

#: Ready-made HRNet configurations (constructor kwargs of :class:`FCFIHRNet`).
NETWORK_PRESETS: dict[str, dict[str, Any]] = {
    # The official "hrnet18s" COCO+LVIS release: full-depth HRNet-18, OCR 48, mid 64.
    "hrnet18s-ocr48": {"width": 18, "ocr_width": 48, "small": False, "mid_ch": 64},
    # RITM's HRNet-W18-small depth (2 blocks, 1/3/2 modules).
    "hrnet18-small": {"width": 18, "ocr_width": 48, "small": True, "mid_ch": 64},
    "hrnet18-ocr64": {"width": 18, "ocr_width": 64, "small": False, "mid_ch": 64},
    "hrnet32-ocr128": {"width": 32, "ocr_width": 128, "small": False, "mid_ch": 64},
    # CPU-sized networks for training from scratch.
    "hrnet12-small-cpu": {"width": 12, "ocr_width": 24, "small": True, "mid_ch": 24},
    "hrnet8-small-tiny": {"width": 8, "ocr_width": 16, "small": True, "mid_ch": 16},
}


def _click_encoder(coord_ch: int, use_leaky_relu: bool) -> nn.Sequential:
    """Click maps -> 64 channels at stride 2, scaled by a learned |s| (init 0.05)."""
    return nn.Sequential(
        nn.Conv2d(coord_ch, 16, 1),
        nn.LeakyReLU(negative_slope=0.2) if use_leaky_relu else nn.ReLU(),
        nn.Conv2d(16, STEM_CHANNELS, 3, stride=2, padding=1),
        ScaleLayer(init_value=0.05),
    )


class HRNetFCFIExtractor(HRNetBackbone):
    """HRNet trunk plus FFCM, CFFM and the OCR (or plain conv) segmentation head.

    All sub-modules hang directly off this module because the official state dict is flat
    under ``feature_extractor.``.
    """

    def __init__(
        self,
        width: int,
        ocr_width: int,
        small: bool,
        mid_ch: int,
        guide_ch: int,
        update_num: int,
        expansion_ratio: float,
        use_ffcm: bool = True,
        use_cffm: bool = True,
        branch_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(width=width, small=small, branch_channels=branch_channels)
        feature_ch = self.out_channels
        self.ocr_width = ocr_width
        self.update_num = update_num
        if ocr_width > 0:
            ocr_mid = 2 * ocr_width
            self.conv3x3_ocr = nn.Sequential(
                nn.Conv2d(feature_ch, ocr_mid, 3, padding=1),
                nn.BatchNorm2d(ocr_mid),
                nn.ReLU(),
            )
            self.ocr_gather_head = RegionGather()
            self.ocr_distri_head = ObjectContextHead(ocr_mid, ocr_width, ocr_mid, dropout=0.05)
            self.cls_head = nn.Conv2d(ocr_mid, NUM_CLASSES, 1)
            self.aux_head = nn.Sequential(
                nn.Conv2d(feature_ch, feature_ch, 1),
                nn.BatchNorm2d(feature_ch),
                nn.ReLU(),
                nn.Conv2d(feature_ch, NUM_CLASSES, 1),
            )
        else:
            self.cls_head = nn.Sequential(
                nn.Conv2d(feature_ch, feature_ch, 3, padding=1),
                nn.BatchNorm2d(feature_ch),
                nn.ReLU(),
                nn.Conv2d(feature_ch, NUM_CLASSES, 1),
            )
        self.correction_module, self.fusion_module = make_feedback_modules(
            feature_ch, guide_ch, mid_ch, expansion_ratio, use_ffcm, use_cffm
        )

    def forward(  # type: ignore[override]
        self,
        image: torch.Tensor,
        click_maps: torch.Tensor,
        new_clicks: torch.Tensor,
        feedback: torch.Tensor,
        gate: float,
        stem_addition: torch.Tensor | None,
        is_training: bool,
    ) -> dict[str, torch.Tensor | None]:
        features = self.forward_features(image, stem_addition)
        feedback1, window = self.correction_module(
            image, click_maps, features, feedback, new_clicks, is_training=is_training
        )
        features, feedback2 = self.fusion_module(features, feedback1, gate, self.update_num)
        aux = None
        if self.ocr_width > 0:
            aux = self.aux_head(features)
            pixels = self.conv3x3_ocr(features)
            regions = self.ocr_gather_head(pixels, aux)
            logits = self.cls_head(self.ocr_distri_head(pixels, regions))
        else:
            logits = self.cls_head(features)
        return {
            "instances": logits,
            "instances_aux": aux,
            "updated_feedback1": feedback1,
            "updated_feedback2": feedback2,
            "valid_masks": window,
        }


class FCFIHRNet(nn.Module):
    """FCFI with an HRNet(+OCR) backbone.

    Args:
        width: HRNet width (18 = W18, 32 = W32; small values such as 8-12 for CPU).
        ocr_width: OCR key channels (OCR mid = 2x); 0 replaces OCR by a plain conv head.
        small: HRNet-W18-small depth instead of full depth.
        mid_ch: channels inside FFCM and CFFM.
        update_num: CFFM rounds.
        expansion_ratio: FFCM window side as a fraction of the input side.
        norm_radius: click disk radius in input pixels.
        use_leaky_relu: LeakyReLU(0.2) (else ReLU) in the click encoder.
        with_aux_output: return ``instances_aux`` (needs ``ocr_width > 0``).
        with_prev_mask: feed the previous mask into the click encoding as well (it always
            reaches FFCM/CFFM).
        norm_mean_std: ``(mean, std)`` for the RGB normalisation.
        use_ffcm, use_cffm: build FFCM / CFFM (False: a parameter-free pass-through, for the
            ablation study; the previous mask still reaches the click encoding).
        branch_channels: the four HRNet branches' channels when not ``width * (1, 2, 4, 8)``
            (networks widened from a trained one, :mod:`napari_fcfi.model.widening`).
    """

    arch = "hrnet"

    def __init__(
        self,
        width: int = 18,
        ocr_width: int = 48,
        small: bool = False,
        mid_ch: int = 64,
        update_num: int = 1,
        expansion_ratio: float = 0.3,
        norm_radius: float = 5,
        use_leaky_relu: bool = True,
        with_aux_output: bool = True,
        with_prev_mask: bool = True,
        norm_mean_std: Sequence[Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
        use_ffcm: bool = True,
        use_cffm: bool = True,
        branch_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("width", width, 1),
            ("mid_ch", mid_ch, 1),
            ("update_num", update_num, 1),
            ("ocr_width", ocr_width, 0),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"FCFIHRNet: {name} must be an integer >= {low}, got {value!r}")
        if len(norm_mean_std) != 2:
            raise ValueError(f"FCFIHRNet: norm_mean_std must be (mean, std), got {norm_mean_std!r}")
        mean, std = (list(map(float, v)) for v in norm_mean_std)
        self._config: dict[str, Any] = {
            "arch": self.arch,
            "width": int(width),
            "ocr_width": int(ocr_width),
            "small": bool(small),
            "mid_ch": int(mid_ch),
            "update_num": int(update_num),
            "expansion_ratio": float(expansion_ratio),
            "norm_radius": norm_radius,
            "use_leaky_relu": bool(use_leaky_relu),
            "with_aux_output": bool(with_aux_output and ocr_width > 0),
            "with_prev_mask": bool(with_prev_mask),
            "norm_mean_std": [mean, std],
        }
        # Recorded only when switched off, so the configs of full FCFI models stay as they were.
        if not use_ffcm:
            self._config["use_ffcm"] = False
        if not use_cffm:
            self._config["use_cffm"] = False
        if branch_channels is not None and list(branch_channels) != default_branch_channels(int(width)):
            self._config["branch_channels"] = [int(c) for c in branch_channels]
        self.with_aux_output = self._config["with_aux_output"]
        self.with_prev_mask = bool(with_prev_mask)
        self.normalization = ImageNormalizer(mean, std)
        self.dist_maps = DiskClickMaps(norm_radius)
        coord_ch = 2 + int(self.with_prev_mask)
        self.maps_transform = _click_encoder(coord_ch, use_leaky_relu)
        # FFCM guide inputs: normalised RGB, the click encoding, then the feedback.
        self.feature_extractor = HRNetFCFIExtractor(
            width=int(width),
            ocr_width=int(ocr_width),
            small=bool(small),
            mid_ch=int(mid_ch),
            guide_ch=3 + coord_ch + 1,
            update_num=int(update_num),
            expansion_ratio=float(expansion_ratio),
            use_ffcm=bool(use_ffcm),
            use_cffm=bool(use_cffm),
            branch_channels=self._config.get("branch_channels"),
        )

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments plus ``"arch"``; see :func:`~napari_fcfi.model.architectures.build_network`."""
        return copy.deepcopy(self._config)

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        new_clicks: torch.Tensor,
        gate: float,
        is_training: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Run the network; see the module docstring and ``docs/architecture.md``."""
        rgb, feedback, click_maps = encode_inputs(self, image, points)
        height, width = rgb.shape[-2:]
        stem_addition = self.maps_transform(click_maps)
        raw = self.feature_extractor(
            rgb, click_maps, new_clicks, feedback, float(gate), stem_addition, is_training
        )
        out: dict[str, torch.Tensor] = {
            "instances": resize_bilinear(raw["instances"], (height, width)),
            "updated_feedback1": raw["updated_feedback1"],
            "updated_feedback2": raw["updated_feedback2"],
        }
        if self.with_aux_output and raw["instances_aux"] is not None:
            out["instances_aux"] = resize_bilinear(raw["instances_aux"], (height, width))
        if is_training:
            out["valid_masks"] = raw["valid_masks"]
        return out


def build_preset(name: str, **overrides: Any) -> FCFIHRNet:
    """Build one of :data:`NETWORK_PRESETS`, optionally overriding some kwargs."""
    if name not in NETWORK_PRESETS:
        raise ValueError(f"build_preset: unknown preset {name!r}; known: {sorted(NETWORK_PRESETS)}")
    return FCFIHRNet(**{**NETWORK_PRESETS[name], **overrides})
