"""FFCM / CFFM / click encoding behaviour on tiny real tensors."""

from __future__ import annotations

import pytest
import torch

from napari_fcfi.model.fcfi_modules import CollaborativeFeedbackFusion, FocusedFeedbackCorrection
from napari_fcfi.model.ops import DiskClickMaps, ImageNormalizer, ScaleLayer


def _ffcm_inputs(batch: int = 2, size: int = 64, feature_ch: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=gen)
    click_maps = torch.rand(batch, 3, size, size, generator=gen)
    features = torch.rand(batch, feature_ch, size // 4, size // 4, generator=gen)
    feedback = torch.rand(batch, 1, size, size, generator=gen)
    return image, click_maps, features, feedback


def test_disk_maps_radius_padding_and_fractional_clicks():
    maps = DiskClickMaps(radius=5)
    points = torch.tensor([[[10.0, 10.0, 0.0], [-1, -1, -1], [30.5, 20.0, 1.0], [-1, -1, -1]]])
    out = maps(points, 40, 40)
    assert out.shape == (1, 2, 40, 40)
    pos, neg = out[0, 0], out[0, 1]
    # squared distance 25 is inside, 26 outside
    assert pos[10, 15] == 1 and pos[13, 14] == 1 and pos[10, 16] == 0 and pos[15, 11] == 0
    assert pos.sum() == 81  # lattice points with x^2 + y^2 <= 25
    # fractional row 30.5: rows 26..35 at column 20 (|dr| <= 4.5 plus col 0)
    assert neg[:, 20].nonzero().flatten().tolist() == list(range(26, 36))
    empty = maps(torch.full((1, 2, 3), -1.0), 8, 8)
    assert empty.sum() == 0


def test_disk_maps_rejects_bad_shape():
    with pytest.raises(ValueError, match="points"):
        DiskClickMaps(5)(torch.zeros(1, 3, 3), 8, 8)


def test_normalizer_and_scale_layer():
    norm = ImageNormalizer()
    x = torch.full((1, 3, 2, 2), 0.485)
    assert torch.allclose(norm(x)[0, 0], torch.zeros(2, 2), atol=1e-7)
    assert len(norm.state_dict()) == 0
    scale = ScaleLayer(0.05)
    with torch.no_grad():
        scale.scale.fill_(-2.0)
    assert torch.equal(scale(torch.ones(2)), torch.full((2,), 2.0))


def test_ffcm_inference_changes_only_the_window():
    torch.manual_seed(0)
    ffcm = FocusedFeedbackCorrection(feature_ch=6, guide_ch=7, mid_ch=8, window_ratio=0.3).eval()
    image, click_maps, features, feedback = _ffcm_inputs()
    clicks = torch.tensor([[[20, 30, 1]], [[60, 2, 0]]])
    with torch.no_grad():
        out, window = ffcm(image, click_maps, features, feedback, clicks, is_training=False)
    assert window is None
    base = torch.nn.functional.interpolate(feedback, size=(16, 16), mode="bilinear", align_corners=True)
    # half-size int(0.3*64/2+0.5) = 10 input px; sample 0 rows 10..30 -> feature 2..8 (ceil 7.5),
    # cols 20..40 -> 5..10
    inside = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    inside[0, :, 2:8, 5:10] = True
    inside[1, :, 12:16, 0:3] = True  # rows 50..64 -> 12..16, cols 0..12 -> 0..3
    assert torch.equal(out[~inside], base[~inside])
    assert not torch.equal(out[inside], base[inside])
    # positive click pulls towards 1, negative towards 0; the click pixel itself gets the label
    assert torch.all(out[0][inside[0]] >= base[0][inside[0]] - 1e-6)
    assert torch.all(out[1][inside[1]] <= base[1][inside[1]] + 1e-6)
    assert out[0, 0, 5, 7] == pytest.approx(1.0, abs=1e-5)
    assert out[1, 0, 15, 0] == pytest.approx(0.0, abs=1e-5)


def test_ffcm_ignores_padding_click_and_rejects_outside_click():
    ffcm = FocusedFeedbackCorrection(6, 7, 8).eval()
    image, click_maps, features, feedback = _ffcm_inputs(batch=1)
    base = torch.nn.functional.interpolate(feedback, size=(16, 16), mode="bilinear", align_corners=True)
    with torch.no_grad():
        out, _ = ffcm(image, click_maps, features, feedback, torch.tensor([[[-1, -1, -1]]]))
    assert torch.equal(out, base)
    with pytest.raises(ValueError, match="outside"):
        ffcm(image, click_maps, features, feedback, torch.tensor([[[64, 3, 1]]]))


def test_ffcm_training_soft_window_and_gradients():
    ffcm = FocusedFeedbackCorrection(6, 7, 8).train()
    image, click_maps, features, feedback = _ffcm_inputs()
    features.requires_grad_(True)
    clicks = torch.tensor([[20.0, 30.0, 1.0], [60.0, 2.0, 0.0]])  # (B, 3) float as in training
    out, window = ffcm(image, click_maps, features, feedback, clicks, is_training=True)
    assert out.shape == window.shape == (2, 1, 16, 16)
    assert window[0, 0, 5, 7] > 0.99 and window[0, 0, 0, 0] < 1e-3
    assert (
        window[1, 0, 14, 1] > 0.99
        and window[1, 0, 15, 0] == pytest.approx(0.5, abs=0.01)
        and window[1, 0, 0, 15] < 1e-3
    )
    out.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert all(p.grad is not None for p in ffcm.parameters())


def test_cffm_gate_zero_keeps_features_and_rounds():
    torch.manual_seed(0)
    cffm = CollaborativeFeedbackFusion(feature_ch=6, mid_ch=8).eval()
    features = torch.rand(2, 6, 16, 16)
    feedback = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        same, refined = cffm(features, feedback, gate=0.0, rounds=2)
        moved, _ = cffm(features, feedback, gate=1.0, rounds=1)
    assert torch.equal(same, features)
    assert refined.shape == (2, 1, 16, 16) and torch.all((refined >= 0) & (refined <= 1))
    # the residual is non-negative and shared by all channels
    delta = moved - features
    assert torch.all(delta >= 0)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-6)
    with pytest.raises(ValueError, match="rounds"):
        cffm(features, feedback, 1.0, rounds=0)
