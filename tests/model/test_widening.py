"""Widening a trained HRNet FCFI network keeps its outputs and lets the new channels learn."""

from __future__ import annotations

import pytest
import torch

from napari_fcfi.bench.synthetic import synthetic_network_input
from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.networks import FCFIHRNet
from napari_fcfi.model.widening import branch_channels_of, widen_hrnet


def _trained_like(seed: int = 0, **kwargs) -> FCFIHRNet:
    """A small network whose weights and BN statistics are all away from their initial values."""
    torch.manual_seed(seed)
    net = FCFIHRNet(**{"width": 4, "ocr_width": 4, "mid_ch": 4, "small": True, **kwargs})
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                if name.endswith("running_var"):
                    value.uniform_(0.5, 2.0)
                else:
                    value.add_(0.05 * torch.randn_like(value))
    return net


def _inputs(batch: int = 2, size: int = 64):
    image, points, new_clicks, gate = synthetic_network_input(size, seed=1)
    return image.repeat(batch, 1, 1, 1), points.repeat(batch, 1, 1), new_clicks.repeat(batch, 1, 1), gate


@pytest.mark.parametrize("ocr_width", [4, 0])
def test_widened_network_computes_the_same_outputs(ocr_width):
    net = _trained_like(ocr_width=ocr_width).eval()
    wide = widen_hrnet(net, [6, 8, 24, 48]).eval()
    assert branch_channels_of(wide.config) == [6, 8, 24, 48]
    assert sum(p.numel() for p in wide.parameters()) > 1.4 * sum(p.numel() for p in net.parameters())
    image, points, new_clicks, gate = _inputs()
    with torch.no_grad():
        before, after = net(image, points, new_clicks, gate), wide(image, points, new_clicks, gate)
    assert set(before) == set(after)
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=2e-5, rtol=1e-5)
    # the config rebuilds the wide network (a saved file loads)
    rebuilt = build_network(wide.config)
    rebuilt.load_state_dict(wide.state_dict())


def test_widened_network_trains_like_the_old_one_and_its_new_channels_learn():
    net = _trained_like().train()
    wide = widen_hrnet(net, [4, 8, 24, 32])
    assert wide.training
    image, points, new_clicks, gate = _inputs()
    outputs = []
    for model in (net, wide):
        torch.manual_seed(5)  # the same dropout masks in the OCR head
        outputs.append(model(image, points, new_clicks, gate, is_training=True))
    for key in outputs[0]:
        torch.testing.assert_close(outputs[1][key], outputs[0][key], atol=2e-5, rtol=1e-5)
    outputs[1]["instances"].sum().backward()
    # weights from the new channels of branch 2 (16 -> 24) into the old ones start at zero and get a gradient
    conv = wide.feature_extractor.stage4[0].branches[2][0].conv2
    assert torch.count_nonzero(conv.weight[:16, 16:]) == 0
    assert torch.count_nonzero(conv.weight.grad[:16, 16:]) > 0
    # the features' readers see each branch's old channels where they were
    reader = wide.feature_extractor.conv3x3_ocr[0].weight
    old_reader = net.feature_extractor.conv3x3_ocr[0].weight
    torch.testing.assert_close(reader[:, :28], old_reader[:, :28])  # branches 0, 1 and 2's old channels
    assert torch.count_nonzero(reader[:, 28:36]) == 0  # branch 2's new channels
    torch.testing.assert_close(reader[:, 36:], old_reader[:, 28:])  # branch 3


def test_widening_refuses_narrower_branches_and_other_networks():
    net = _trained_like()
    with pytest.raises(ValueError, match="no smaller than"):
        widen_hrnet(net, [4, 4, 16, 32])
    with pytest.raises(ValueError, match="4 widths"):
        widen_hrnet(net, [4, 8, 16])
    with pytest.raises(ValueError, match="HRNet"):
        branch_channels_of({"arch": "mobile"})
