"""The two FCFI feedback modules (Wei, Zhang, Yong, CVPR 2023).

* :class:`FocusedFeedbackCorrection` (FFCM): corrects the previous mask ("feedback") in a window
  around the newest click, by the cosine affinity between each pixel's encoded feature and the
  feature at the click.
* :class:`CollaborativeFeedbackFusion` (CFFM): refines the feedback from the deep features and
  feeds it back into those features through a gated, non-negative residual.

Everything runs at feature resolution (stride 4 for HRNet). Window sizes and click positions are
computed at input resolution and mapped down with exactly the rounding of the reference code
(half-size ``int(ratio * H / 2 + 0.5)``, floor for window starts, ceil for ends, truncation for the
click), because a one-pixel shift changes the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_fcfi.model.ops import ConvBNReLU, SeparableConvBNReLU, resize_bilinear

WINDOW_EDGE_SLOPE = 10.0


def _soft_step(x: torch.Tensor) -> torch.Tensor:
    # Written out (not torch.sigmoid) so the training window matches the reference bit for bit.
    return 1.0 / (1.0 + torch.exp(-WINDOW_EDGE_SLOPE * x))


def _resize_like(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return x if x.shape[-2:] == size else resize_bilinear(x, size)


class FocusedFeedbackCorrection(nn.Module):
    """FFCM.

    Args:
        feature_ch: channels of the backbone features.
        guide_ch: channels of the extra inputs concatenated in front of the features
            (normalised RGB + click maps + feedback).
        mid_ch: channels of the encoder used for the affinity.
        window_ratio: window side as a fraction of the input side (0.3 in the paper's models).
    """

    def __init__(self, feature_ch: int, guide_ch: int, mid_ch: int, window_ratio: float = 0.3):
        super().__init__()
        if not window_ratio > 0:
            raise ValueError(f"FocusedFeedbackCorrection: window_ratio must be > 0, got {window_ratio}")
        self.window_ratio = float(window_ratio)
        self.info_encoder = nn.Sequential(
            ConvBNReLU(feature_ch + guide_ch, mid_ch),
            SeparableConvBNReLU(mid_ch),
            SeparableConvBNReLU(mid_ch),
        )

    # ---- geometry -------------------------------------------------------------------------
    def window_in_features(
        self, clicks: torch.Tensor, input_size: tuple[int, int], feature_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``(row0, col0, row1, col1)`` and click ``(row, col)`` in feature pixels.

        ``clicks`` is ``(B, 3)`` (row, col, label) at input resolution. Returns two long tensors
        ``(B, 4)`` and ``(B, 2)``; the window is half-open and clamped to the feature map.
        """
        in_h, in_w = input_size
        ft_h, ft_w = feature_size
        half = torch.tensor(
            [int(self.window_ratio * in_h / 2 + 0.5), int(self.window_ratio * in_w / 2 + 0.5)],
            device=clicks.device,
        )
        position = clicks[:, :2]
        start = (position - half.to(position.dtype)).to(torch.float32).clamp_min(0)
        stop = (position + half.to(position.dtype)).to(torch.float32)
        stop = torch.minimum(stop, torch.tensor([in_h, in_w], device=clicks.device, dtype=torch.float32))
        # Truncate to input pixels first, then map to features: floor for starts, ceil for ends.
        start = start.long().to(torch.float32)
        stop = stop.long().to(torch.float32)
        in_sizes = torch.tensor([in_h, in_w], device=clicks.device)
        ft_sizes = torch.tensor([ft_h, ft_w], device=clicks.device)
        ft_start = torch.floor(start / in_sizes * ft_sizes).clamp_min(0)
        ft_stop = torch.minimum(torch.ceil(stop / in_sizes * ft_sizes), ft_sizes.to(torch.float32))
        window = torch.cat([ft_start, ft_stop], dim=1).long()
        click = (position.to(torch.float32) / in_sizes * ft_sizes).long()
        return window, click

    def soft_window(self, window: torch.Tensor, feature_size: tuple[int, int]) -> torch.Tensor:
        """Differentiable-edged window mask ``(B, 1, h, w)`` (product of two sigmoid steps)."""
        ft_h, ft_w = feature_size
        device = window.device
        rows = torch.arange(ft_h, device=device, dtype=torch.float32).view(1, ft_h, 1)
        cols = torch.arange(ft_w, device=device, dtype=torch.float32).view(1, 1, ft_w)
        r0, c0, r1, c1 = (window[:, i].view(-1, 1, 1) for i in range(4))
        masks = (_soft_step(rows - r0) - _soft_step(rows - r1)) * (
            _soft_step(cols - c0) - _soft_step(cols - c1)
        )
        return masks.unsqueeze(1)

    # ---- correction -----------------------------------------------------------------------
    @staticmethod
    def click_affinity(encoded: torch.Tensor, click: torch.Tensor) -> torch.Tensor:
        """Cosine affinity ``(B, 1, h, w)`` between every pixel and the pixel at ``click``."""
        batch, channels, height, width = encoded.shape
        unit = F.normalize(encoded, p=2, dim=1).reshape(batch, channels, height * width)
        flat_index = (click[:, 0] * width + click[:, 1]).view(batch, 1, 1).expand(batch, channels, 1)
        at_click = torch.gather(unit, 2, flat_index)  # (B, C, 1)
        return torch.einsum("bci,bcj->bij", at_click, unit).reshape(batch, 1, height, width)

    def forward(
        self,
        image: torch.Tensor,
        click_maps: torch.Tensor,
        features: torch.Tensor,
        feedback: torch.Tensor,
        new_clicks: torch.Tensor,
        is_training: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Correct ``feedback`` once per new click.

        Args:
            image: normalised RGB ``(B, 3, H, W)``.
            click_maps: click encoding ``(B, C, H, W)`` (prev mask + disks for HRNet).
            features: backbone features ``(B, F, h, w)``.
            feedback: previous mask ``(B, 1, H, W)`` (probabilities).
            new_clicks: ``(B, K, 3)`` or ``(B, 3)`` rows ``(row, col, label)`` at input size,
                label 1 positive / 0 negative. A click with a negative coordinate is ignored.
            is_training: soft window over the whole map instead of crop / paste.

        Returns:
            corrected feedback ``(B, 1, h, w)`` and, when training, the soft window of the last
            click ``(B, 1, h, w)`` (else ``None``).
        """
        if new_clicks.ndim == 2:
            new_clicks = new_clicks.unsqueeze(1)
        if new_clicks.ndim != 3 or new_clicks.shape[-1] != 3 or new_clicks.shape[0] != feedback.shape[0]:
            raise ValueError(
                "FocusedFeedbackCorrection: new_clicks must have shape (B, K, 3) with "
                f"B={feedback.shape[0]}, got {tuple(new_clicks.shape)}"
            )
        input_size = (feedback.shape[-2], feedback.shape[-1])
        positions = new_clicks[..., :2]
        is_click = (positions >= 0).all(dim=-1)
        too_far = is_click & ((positions[..., 0] >= input_size[0]) | (positions[..., 1] >= input_size[1]))
        if bool(too_far.any()):
            raise ValueError(
                f"FocusedFeedbackCorrection: new click outside the {input_size[0]}x{input_size[1]} "
                f"input: {new_clicks[too_far].tolist()}"
            )
        feature_size = (features.shape[-2], features.shape[-1])
        image = _resize_like(image, features.shape[-2:])
        click_maps = _resize_like(click_maps, features.shape[-2:])
        soft_masks = None
        for k in range(new_clicks.shape[1]):
            clicks = new_clicks[:, k]
            valid = (clicks[:, 0] >= 0) & (clicks[:, 1] >= 0)
            feedback = _resize_like(feedback, features.shape[-2:])
            encoded = self.info_encoder(torch.cat((image, click_maps, feedback, features), dim=1))
            window, click = self.window_in_features(clicks, input_size, feature_size)
            click = torch.where(valid.view(-1, 1), click, torch.zeros_like(click))
            labels = clicks[:, 2].to(encoded.dtype).view(-1, 1, 1, 1)
            if is_training:
                soft_masks = self.soft_window(window, feature_size)
                soft_masks = soft_masks * valid.view(-1, 1, 1, 1).to(soft_masks.dtype)
                soft_masks = soft_masks.to(feedback.dtype)
                affinity = self.click_affinity(encoded, click)
                inside = affinity * labels + (1 - affinity) * feedback
                feedback = (1 - soft_masks) * feedback + soft_masks * inside
            else:
                feedback = self._correct_in_windows(encoded, feedback, window, click, labels, valid)
        return feedback, soft_masks

    def _correct_in_windows(
        self,
        encoded: torch.Tensor,
        feedback: torch.Tensor,
        window: torch.Tensor,
        click: torch.Tensor,
        labels: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Crop each sample's window, correct it, paste it back; outside stays untouched."""
        corrected = feedback.clone()
        for b in range(feedback.shape[0]):
            r0, c0, r1, c1 = (int(v) for v in window[b].tolist())
            row, col = int(click[b, 0]) - r0, int(click[b, 1]) - c0
            if not bool(valid[b]) or not (0 <= row < r1 - r0 and 0 <= col < c1 - c0):
                continue  # no usable click in this sample: feedback passes through
            patch = encoded[b : b + 1, :, r0:r1, c0:c1]
            affinity = self.click_affinity(patch, torch.tensor([[row, col]], device=patch.device))
            old = feedback[b : b + 1, :, r0:r1, c0:c1]
            corrected[b : b + 1, :, r0:r1, c0:c1] = (1 - affinity) * old + affinity * labels[b : b + 1]
        return corrected


class CollaborativeFeedbackFusion(nn.Module):
    """CFFM: feedback refinement plus gated residual update of the features.

    Each round: ``refined = sigmoid(encoder([feedback, conv1x1(features)]))`` and
    ``features += gate * relu(bn(conv1x1([features, refined])))`` (1 channel, broadcast).
    The feedback fed to every round is the input feedback; only the features change.
    """

    def __init__(self, feature_ch: int, mid_ch: int) -> None:
        super().__init__()
        self.feature_conv = ConvBNReLU(feature_ch, mid_ch, kernel_size=1, padding=0)
        self.fusion_encoder = nn.Sequential(
            ConvBNReLU(1 + mid_ch, mid_ch),
            SeparableConvBNReLU(mid_ch),
            SeparableConvBNReLU(mid_ch),
            nn.Conv2d(mid_ch, 1, 3, padding=1),
            nn.Sigmoid(),
        )
        self.residual_predictor = ConvBNReLU(feature_ch + 1, 1, kernel_size=1, padding=0)

    def forward(
        self, features: torch.Tensor, feedback: torch.Tensor, gate: float, rounds: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(updated features, refined feedback probability)`` at feature resolution."""
        if rounds < 1:
            raise ValueError(f"CollaborativeFeedbackFusion: rounds must be >= 1, got {rounds}")
        feedback = _resize_like(feedback, features.shape[-2:])
        refined = feedback
        for _ in range(rounds):
            refined = self.fusion_encoder(torch.cat((feedback, self.feature_conv(features)), dim=1))
            residual = self.residual_predictor(torch.cat((features, refined), dim=1))
            features = features + gate * residual
        return features, refined


# ----------------------------------------------------------------------------------------------
# Switched-off modules (ablations, and the "backbone alone" benchmark)


def _feedback_at(feedback: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return _resize_like(feedback, features.shape[-2:])


class CorrectionOff(nn.Module):
    """Stands in for FFCM: the "corrected" feedback is the previous mask, and there is no window.

    It has no parameters, so a network built with it loads a state dict without FFCM keys.
    """

    def forward(
        self,
        image: torch.Tensor,
        click_maps: torch.Tensor,
        features: torch.Tensor,
        feedback: torch.Tensor,
        new_clicks: torch.Tensor | None = None,
        is_training: bool = False,
    ) -> tuple[torch.Tensor, None]:
        return _feedback_at(feedback, features), None


class FusionOff(nn.Module):
    """Stands in for CFFM: the features are not updated and the feedback is passed on."""

    def forward(
        self, features: torch.Tensor, feedback: torch.Tensor, gate: float = 1.0, rounds: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return features, _feedback_at(feedback, features)


def make_feedback_modules(
    feature_ch: int, guide_ch: int, mid_ch: int, window_ratio: float, use_ffcm: bool, use_cffm: bool
) -> tuple[nn.Module, nn.Module]:
    """FFCM and CFFM for a network, or their parameter-free stand-ins where switched off."""
    correction = (
        FocusedFeedbackCorrection(feature_ch, guide_ch, mid_ch, window_ratio=window_ratio)
        if use_ffcm
        else CorrectionOff()
    )
    fusion = CollaborativeFeedbackFusion(feature_ch, mid_ch) if use_cffm else FusionOff()
    return correction, fusion
