"""BatchNorm folding: the same outputs as the network, from a copy the session runs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.model import load_model
from napari_fcfi.model.fusion import fuse_batchnorm, inference_network, unfolded_batchnorms
from napari_fcfi.model.networks import build_preset


def _randomised(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, as a trained network has (a fresh one has mean 0, var 1)."""
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(channels, generator=generator) * 0.1)
    return net.eval()


def _outputs(net: nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 96, 96, generator=generator)
    points = torch.tensor([[[40.0, 50.0, 0.0], [-1.0, -1.0, -1.0]]] * 2)
    new_clicks = torch.tensor([[[40.0, 50.0, 0.0]]] * 2)
    with torch.inference_mode():
        return net(torch.cat([image, torch.zeros(2, 1, 96, 96)], 1), points, new_clicks, 0.0)["instances"]


def test_folding_keeps_the_outputs_and_leaves_the_network_alone():
    net = _randomised(build_preset("hrnet8-small-tiny"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fuse_batchnorm(net)
    assert (
        unfolded_batchnorms(net) > 100 and unfolded_batchnorms(folded) < 10
    )  # OCR head: BN after a nested conv
    torch.testing.assert_close(_outputs(folded), _outputs(net), rtol=1e-4, atol=1e-4)
    # the original is untouched and still trainable
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in folded.parameters())


def test_only_float32_networks_of_moderate_size_are_folded(monkeypatch):
    net = _randomised(build_preset("hrnet8-small-tiny"))
    assert inference_network(net) is not net
    assert inference_network(net.to(torch.bfloat16)) is net
    monkeypatch.setattr("napari_fcfi.model.fusion.FUSION_MAX_PARAMETERS", 1000)
    assert inference_network(net.float()) is net
    plain = nn.Sequential(nn.Conv2d(1, 1, 3))
    assert inference_network(plain) is plain  # nothing to fold


def test_a_session_runs_the_folded_copy_with_the_same_masks():
    model = load_model("default", device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (160, 160)).astype(np.uint8)
    image[60:100, 50:110] = 220
    masks = {}
    for fuse in (True, False):
        session = InteractiveSegmenter(model, fuse_batchnorm=fuse)
        session.set_image(image)
        session.add_click(80, 80, True)
        session.add_click(62, 52, False)
        masks[fuse] = (session.mask.copy(), np.asarray(session.probability).copy())
        network = session.network
        assert (network is model) is (not fuse)
    np.testing.assert_array_equal(masks[True][0], masks[False][0])
    np.testing.assert_allclose(masks[True][1], masks[False][1], atol=1e-4)
    assert unfolded_batchnorms(model) > 0  # the loaded model itself still has its BatchNorms


def test_sessions_share_the_folded_copy_until_the_weights_change():
    net = _randomised(build_preset("hrnet8-small-tiny"))
    first = inference_network(net)
    assert inference_network(net) is first
    with torch.no_grad():
        next(net.parameters()).add_(0.01)
    again = inference_network(net)
    assert again is not first
    torch.testing.assert_close(_outputs(again), _outputs(net), rtol=1e-4, atol=1e-4)
