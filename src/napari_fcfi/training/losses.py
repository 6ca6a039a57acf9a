"""Losses of FCFI training: the normalized focal loss (NFL) and its masked variant.

The NFL (from RITM/FCFI) is a focal loss whose per-pixel weights ``(1 - p_t)^gamma`` are
rescaled per image to sum to the number of pixels, so hard pixels dominate without the
loss vanishing as the prediction gets good. The rescaling factor is detached, as in the
original.

About the feedback losses: the official trainer passes the FFCM/CFFM outputs, which are
already probabilities in [0, 1], through another sigmoid before the loss. That squeezes
them into [0.5, 0.73] and makes the loss push every pixel towards the same value, which
is not what the modules are meant to learn. We do **not** replicate it: the feedback
losses here treat their inputs as probabilities (``from_probabilities=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def normalized_focal_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    alpha: float = 0.5,
    gamma: float = 2.0,
    from_probabilities: bool = False,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Per-sample normalized focal loss, shape (B,).

    ``prediction``: logits (or probabilities with ``from_probabilities``) (B, 1, H, W);
    ``target``: {0, 1} (B, 1, H, W); ``valid``: optional weights/mask (B, 1, H, W), pixels
    with 0 do not count (the FFCM loss counts only inside FFCM's window).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    prediction = prediction.float()
    prob = prediction.clamp(0.0, 1.0) if from_probabilities else torch.sigmoid(prediction)
    positive = target > 0.5
    weight = torch.ones_like(prob) if valid is None else valid.float()
    alpha_map = torch.where(positive, alpha, 1.0 - alpha) * weight
    p_t = torch.where(positive, prob, 1.0 - prob)
    focal = (1.0 - p_t) ** gamma * weight
    dims = tuple(range(1, prob.dim()))
    with torch.no_grad():
        normaliser = weight.sum(dim=dims, keepdim=True) / (focal.sum(dim=dims, keepdim=True) + eps)
    pixel_loss = -alpha_map * focal * normaliser * torch.log(p_t.clamp_min(eps))
    return pixel_loss.sum(dim=dims) / (weight.sum(dim=dims) + eps)


def _to_list(value: object) -> list[torch.Tensor]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    return [value]  # type: ignore[list-item]


def _fit(tensor: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == size:
        return tensor
    if mode == "nearest":
        return F.interpolate(tensor.float(), size=size, mode="nearest")
    return F.interpolate(tensor.float(), size=size, mode="bilinear", align_corners=True)


@dataclass
class LossWeights:
    """Weights of the summed FCFI loss (defaults: the official HRNet trainer's, plus the aux head)."""

    instances: float = 1.0
    instances_aux: float = 0.4
    feedback1: float = 0.2
    feedback2: float = 0.2


def fcfi_loss(
    outputs: dict[str, object], target: torch.Tensor, weights: LossWeights | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total FCFI training loss and its named parts (as floats, for logging).

    Feature-resolution outputs (``updated_feedback1/2``, ``valid_masks``) are upsampled to
    the target's size (bilinear; the window nearest), as the official model does. A part
    whose output is absent (e.g. FFCM switched off) is skipped. ``weights``: :class:`LossWeights`'
    defaults when None.
    """
    weights = weights if weights is not None else LossWeights()
    size = tuple(target.shape[-2:])
    parts: dict[str, torch.Tensor] = {}
    parts["instances"] = normalized_focal_loss(_fit(outputs["instances"], size, "bilinear"), target).mean()
    if outputs.get("instances_aux") is not None and weights.instances_aux > 0:
        aux = _fit(outputs["instances_aux"], size, "bilinear")  # type: ignore[arg-type]
        parts["instances_aux"] = normalized_focal_loss(aux, target).mean()
    feedback1 = _to_list(outputs.get("updated_feedback1"))
    windows = _to_list(outputs.get("valid_masks"))
    if feedback1 and weights.feedback1 > 0:
        terms = []
        for i, fb in enumerate(feedback1):
            valid = _fit(windows[min(i, len(windows) - 1)], size, "nearest") if windows else None
            terms.append(
                normalized_focal_loss(
                    _fit(fb, size, "bilinear"), target, valid=valid, from_probabilities=True
                ).mean()
            )
        parts["feedback1"] = torch.stack(terms).sum()
    feedback2 = _to_list(outputs.get("updated_feedback2"))
    if feedback2 and weights.feedback2 > 0:
        terms = [
            normalized_focal_loss(_fit(fb, size, "bilinear"), target, from_probabilities=True).mean()
            for fb in feedback2
        ]
        parts["feedback2"] = torch.stack(terms).sum()
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}  # type: ignore[return-value]
