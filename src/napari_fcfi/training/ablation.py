"""Ablation variants of the paper's central claim: the same network with FFCM and/or CFFM off.

A switched-off module is replaced by a parameter-free pass-through built by the network itself
(``use_ffcm=False`` / ``use_cffm=False``, see :func:`napari_fcfi.model.fcfi_modules.make_feedback_modules`):

* without FFCM, the "corrected" feedback is the previous mask itself (resized to the feature
  map), so nothing is corrected around the new click;
* without CFFM, the features are not updated from the feedback and the "refined" feedback is
  again the previous mask.

The previous mask still reaches the network through the click encoding (as in RITM), so
"no FFCM, no CFFM" is the RITM-style baseline of the paper's ablation. The loss terms of a
switched-off module are dropped (they would have no parameters to train). Because the flags are
part of the network config, ablation checkpoints export and load like any other model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from napari_fcfi.model.fcfi_modules import CollaborativeFeedbackFusion, FocusedFeedbackCorrection

#: The four rows of the paper's ablation table: name -> (use_ffcm, use_cffm).
ABLATION_VARIANTS: dict[str, tuple[bool, bool]] = {
    "baseline": (False, False),
    "ffcm": (True, False),
    "cffm": (False, True),
    "fcfi": (True, True),
}


def ablation_config(
    config: Mapping[str, Any], use_ffcm: bool = True, use_cffm: bool = True
) -> dict[str, Any]:
    """``config`` (a network config for :func:`build_network`) with FFCM and/or CFFM switched off."""
    result = {k: v for k, v in config.items() if k not in ("use_ffcm", "use_cffm")}
    if not use_ffcm:
        result["use_ffcm"] = False
    if not use_cffm:
        result["use_cffm"] = False
    return result


def feedback_modules_in(net: nn.Module) -> dict[str, bool]:
    """Which of FFCM / CFFM a network really contains (by module type, not by its config)."""
    modules = list(net.modules())
    return {
        "ffcm": any(isinstance(m, FocusedFeedbackCorrection) for m in modules),
        "cffm": any(isinstance(m, CollaborativeFeedbackFusion) for m in modules),
    }
