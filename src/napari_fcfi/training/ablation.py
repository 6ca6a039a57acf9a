"""Ablation switches: the same network with FFCM and/or CFFM taken out.

The network classes always contain both modules (their state-dict layout is the official
one), so the ablations are done here by swapping a module for a pass-through:

* without FFCM, the "corrected" feedback is the previous mask itself (resized to the feature
  map), so nothing is corrected around the new click;
* without CFFM, the features are not updated from the feedback (no gated residual) and the
  "refined" feedback is again the previous mask.

The previous mask still reaches the network through the click encoding (as in RITM), so
"no FFCM, no CFFM" is the RITM-style baseline of the paper's ablation. The loss terms of a
switched-off module are dropped (they would have no parameters to train).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _feedback_at(feedback: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    if feedback.shape[-2:] == features.shape[-2:]:
        return feedback
    return F.interpolate(feedback, size=features.shape[-2:], mode="bilinear", align_corners=True)


class PassThroughCorrection(nn.Module):
    """Stands in for FFCM: returns the previous mask unchanged and no window."""

    def forward(self, image, click_maps, features, feedback, new_clicks, is_training=False):
        return _feedback_at(feedback, features), None


class PassThroughFusion(nn.Module):
    """Stands in for CFFM: features untouched, feedback passed on unchanged."""

    def forward(self, features, feedback, gate, rounds=1):
        return features, _feedback_at(feedback, features)


def apply_ablation(net: nn.Module, use_ffcm: bool = True, use_cffm: bool = True) -> nn.Module:
    """Switch FFCM and/or CFFM off in an HRNet/DeepLab FCFI network (in place); returns ``net``."""
    if use_ffcm and use_cffm:
        return net
    extractor = getattr(net, "feature_extractor", None)
    if extractor is None or not hasattr(extractor, "correction_module") or not hasattr(extractor, "fusion_module"):
        raise ValueError(
            f"apply_ablation: {type(net).__name__} has no feature_extractor.correction_module/fusion_module"
        )
    if not use_ffcm:
        extractor.correction_module = PassThroughCorrection()
    if not use_cffm:
        extractor.fusion_module = PassThroughFusion()
    net.ablation = {"ffcm": bool(use_ffcm), "cffm": bool(use_cffm)}  # type: ignore[attr-defined]
    return net
