"""FCFIHRNet: call contract, gradients, config round trip, official key layout."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.paths import SHARED_DOCS
from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.hrnet import HRNetBackbone
from napari_fcfi.model.network_io import upsample_outputs
from napari_fcfi.model.networks import NETWORK_PRESETS, FCFIHRNet, build_preset

OFFICIAL_SHEET = SHARED_DOCS / "official_checkpoints" / "hrnet18s_cocolvis.json"
TINY = {"width": 4, "ocr_width": 8, "small": True, "mid_ch": 8}


def _inputs(batch: int = 2, height: int = 64, width: int = 48, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 4, height, width, generator=gen)
    points = torch.full((batch, 4, 3), -1.0)
    points[:, 0] = torch.tensor([20.0, 17.0, 0.0])
    points[0, 2] = torch.tensor([40.0, 30.0, 1.0])
    new_clicks = torch.tensor([[[40, 30, 0]], [[20, 17, 1]]])[:batch]
    return image, points, new_clicks


def test_forward_shapes_inference():
    torch.manual_seed(0)  # FFCM's cosine affinity can be negative for some random draws
    net = FCFIHRNet(**TINY).eval()
    image, points, new_clicks = _inputs()
    with torch.no_grad():
        out = net(image, points, new_clicks, gate=1.0)
    assert set(out) == {"instances", "instances_aux", "updated_feedback1", "updated_feedback2"}
    assert out["instances"].shape == out["instances_aux"].shape == (2, 1, 64, 48)
    assert out["updated_feedback1"].shape == out["updated_feedback2"].shape == (2, 1, 16, 12)
    for key in ("updated_feedback1", "updated_feedback2"):
        assert torch.all((out[key] >= 0) & (out[key] <= 1))
    full = upsample_outputs(out, (64, 48))
    assert full["updated_feedback2"].shape == (2, 1, 64, 48)


@pytest.mark.parametrize("small", [False, True])
def test_backbone_depth_and_channels(small):
    backbone = HRNetBackbone(width=4, small=small)
    assert backbone.out_channels == 60
    assert len(backbone.stage3) == (3 if small else 4) and len(backbone.stage4) == (2 if small else 3)
    assert len(backbone.stage2[0].branches[0]) == (2 if small else 4)
    feats = backbone(torch.rand(1, 3, 32, 40))
    assert feats.shape == (1, 60, 8, 10)


def test_training_path_gradients_reach_every_parameter():
    torch.manual_seed(0)  # a random draw can leave a unit dead (zero gradient) by chance
    net = FCFIHRNet(**TINY).train()
    image, points, _ = _inputs()
    new_clicks = torch.tensor([[40.0, 30.0, 0.0], [20.0, 17.0, 1.0]])
    out = net(image, points, new_clicks, gate=1.0, is_training=True)
    assert out["valid_masks"].shape == (2, 1, 16, 12)
    loss = sum(
        out[k].float().mean()
        for k in ("instances", "instances_aux", "updated_feedback1", "updated_feedback2")
    )
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    # With a single class the OCR attention is a softmax over one region (constant 1), so the
    # query/key branches get exactly zero gradient -- in the official network as well.
    attention_qk = ("object_context_block.f_pixel", "object_context_block.f_object")
    zero = [n for n, p in net.named_parameters() if p.grad.abs().sum() == 0]
    assert zero and all(any(a in n for a in attention_qk) for n in zero)
    assert all(p.grad.abs().sum() > 0 for n, p in net.named_parameters() if n not in zero)


def test_inference_feedback1_changes_only_inside_window():
    net = FCFIHRNet(**TINY, expansion_ratio=0.3).eval()
    image, points, new_clicks = _inputs(batch=1)
    with torch.no_grad():
        out = net(image, points, new_clicks, gate=1.0)
    prev = torch.nn.functional.interpolate(image[:, 3:], size=(16, 12), mode="bilinear", align_corners=True)
    # click (40, 30) on 64x48: half-sizes 10 / 7 -> rows 30..50, cols 23..37 -> features 7..13, 5..10
    inside = torch.zeros_like(prev, dtype=torch.bool)
    inside[..., 7:13, 5:10] = True
    assert torch.equal(out["updated_feedback1"][~inside], prev[~inside])
    assert not torch.equal(out["updated_feedback1"][inside], prev[inside])


def test_gate_zero_ignores_cffm_residual():
    net = FCFIHRNet(**TINY).eval()
    image, points, new_clicks = _inputs(batch=1)
    with torch.no_grad():
        zero_a = net(image, points, new_clicks, gate=0.0)["instances"]
        net.feature_extractor.fusion_module.residual_predictor.conv.bias.add_(5.0)
        zero_b = net(image, points, new_clicks, gate=0.0)["instances"]
        one = net(image, points, new_clicks, gate=1.0)["instances"]
    assert torch.equal(zero_a, zero_b)
    assert not torch.allclose(one, zero_a)


def test_config_round_trip_and_presets():
    net = FCFIHRNet(**{**TINY, "ocr_width": 0}, update_num=2, with_aux_output=True)
    config = json.loads(json.dumps(net.config))
    assert config["arch"] == "hrnet" and config["update_num"] == 2 and config["with_aux_output"] is False
    clone = build_network(config)
    assert isinstance(clone, FCFIHRNet)
    clone.load_state_dict(net.state_dict(), strict=True)
    assert clone.config == net.config
    with pytest.raises(ValueError, match="arch"):
        build_network({"arch": "unet"})
    with pytest.raises(ValueError, match="constructor"):
        build_network({"arch": "hrnet", "depth": 3})
    with pytest.raises(ValueError, match="preset"):
        build_preset("nope")
    assert {"hrnet18s-ocr48", "hrnet18-small", "hrnet32-ocr128"} <= set(NETWORK_PRESETS)
    tiny = build_preset("hrnet8-small-tiny")
    assert sum(p.numel() for p in tiny.parameters()) < 1_500_000


def test_bad_inputs_are_refused():
    net = FCFIHRNet(**TINY).eval()
    image, points, new_clicks = _inputs(batch=1)
    with pytest.raises(ValueError, match="image"):
        net(image[:, :, 0], points, new_clicks, 1.0)
    with pytest.raises(ValueError, match="points"):
        net(image, points[:, :3], new_clicks, 1.0)
    with pytest.raises(ValueError, match="new_clicks"):
        net(image, points, new_clicks[..., :2], 1.0)
    with pytest.raises(ValueError, match="width"):
        FCFIHRNet(width=0)


def test_state_dict_matches_official_key_layout():
    if not OFFICIAL_SHEET.is_file():
        pytest.skip("official checkpoint fact sheet not present")
    sheet = json.loads(OFFICIAL_SHEET.read_text())
    expected = [(entry["key"], list(entry["shape"])) for entry in sheet["state_dict"]]
    net = build_preset("hrnet18s-ocr48")
    actual = [(key, list(value.shape)) for key, value in net.state_dict().items()]
    assert actual == expected  # same names, same shapes, same order
    params = sum(p.numel() for p in net.parameters())
    assert params == sheet["summary"]["parameter_elements"] == 10_156_998
    # official checkpoint dtypes: float32 everywhere, int64 BN counters
    for entry, value in zip(sheet["state_dict"], net.state_dict().values()):
        assert str(value.dtype).removeprefix("torch.") == entry["dtype"]


def test_bfloat16_network_accepts_float32_inputs():
    net = FCFIHRNet(**TINY).eval().to(torch.bfloat16)
    image, points, new_clicks = _inputs(batch=1, height=32, width=32)
    new_clicks = torch.tensor([[[20, 17, 1]]])
    with torch.no_grad():
        out = net(image, points, new_clicks, gate=1.0)
    assert out["instances"].dtype == torch.bfloat16 and out["instances"].shape == (1, 1, 32, 32)
    assert torch.isfinite(out["instances"].float()).all()
