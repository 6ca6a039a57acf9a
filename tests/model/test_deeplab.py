"""FCFIDeepLab (ResNet + DeepLabV3+ FCFI): shapes, gradients, FFCM window, CFFM gate, key layout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from helpers.paths import REPO_ROOT, SHARED_DOCS
from napari_fcfi.model.deeplab import FCFIDeepLab
from napari_fcfi.model.resnet import ResNetV1s

R101_SHEET = SHARED_DOCS / "official_checkpoints" / "r101_sbd.json"

TINY = {"backbone": "resnet18", "base_width": 16, "deeplab_ch": 32, "mid_ch": 8}
TINY_BOTTLENECK = {"backbone": "resnet50", "base_width": 8, "deeplab_ch": 24, "mid_ch": 8}


def _inputs(batch: int, height: int, width: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 4, height, width, generator=gen)
    points = torch.full((batch, 4, 3), -1.0)
    points[:, 0] = torch.tensor([height // 2, width // 2, 0.0])
    points[:, 1] = torch.tensor([height // 4, width // 3, 1.0])
    points[:, 2] = torch.tensor([3 * height // 4, 2 * width // 3, 2.0])
    new_clicks = torch.tensor([[3 * height // 4, 2 * width // 3, 0]] * batch, dtype=torch.long).view(
        batch, 1, 3
    )
    return image, points, new_clicks


def _tiny(seed: int = 0, **overrides) -> FCFIDeepLab:
    torch.manual_seed(seed)
    return FCFIDeepLab(**{**TINY, **overrides}).eval()


@pytest.mark.parametrize("arch", [TINY, TINY_BOTTLENECK], ids=["basic", "bottleneck"])
@pytest.mark.parametrize("size", [(64, 64), (48, 72)])
def test_forward_shapes_and_ranges(arch, size):
    torch.manual_seed(0)
    net = FCFIDeepLab(**arch).eval()
    image, points, new_clicks = _inputs(2, *size)
    with torch.no_grad():
        out = net(image, points, new_clicks, 1.0)
    assert set(out) == {"instances", "updated_feedback1", "updated_feedback2"}
    for key in out:
        assert out[key].shape == (2, 1, *size), key
        assert torch.isfinite(out[key]).all()
    for key in ("updated_feedback1", "updated_feedback2"):
        assert out[key].min() >= 0 and out[key].max() <= 1
    with torch.no_grad():
        train_out = net(image, points, new_clicks, 1.0, is_training=True)
    assert train_out["valid_masks"].shape == (2, 1, *size)
    assert float(train_out["valid_masks"].min()) >= 0 and float(train_out["valid_masks"].max()) <= 1


def test_backbone_strides_and_dilation():
    backbone = ResNetV1s("resnet34", base_width=8).eval()
    with torch.no_grad():
        c1, c2, c3, c4 = backbone(torch.rand(1, 3, 64, 64))
    assert [tuple(c.shape[-2:]) for c in (c1, c2, c3, c4)] == [(16, 16), (8, 8), (8, 8), (8, 8)]
    assert backbone.stage_channels == (8, 16, 32, 64)
    # Stage 4 of a dilated ResNet: first block dilation 2, later blocks 4 (basic: conv2 always 4).
    assert backbone.layer4[0].conv1.dilation == (2, 2) and backbone.layer4[0].conv2.dilation == (4, 4)
    assert backbone.layer4[1].conv1.dilation == (4, 4)
    with pytest.raises(ValueError, match="more than the stem"):
        backbone(torch.rand(1, 3, 64, 64), stem_extra=torch.rand(1, 9, 32, 32))


def test_gradients_reach_all_parameters():
    net = _tiny(seed=1).train()
    image, points, new_clicks = _inputs(2, 64, 64, seed=1)
    out = net(image, points, new_clicks, 1.0, is_training=True)
    loss = out["instances"].mean() + out["updated_feedback1"].mean() + out["updated_feedback2"].mean()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    zero = [n for n, p in net.named_parameters() if p.grad is not None and not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing
    assert not zero, zero


def test_ffcm_changes_only_the_window():
    """Feedback 1 at feature resolution equals the resized previous mask outside the window."""
    net = _tiny(seed=2)
    height = width = 64
    image, points, _ = _inputs(1, height, width, seed=2)
    click_row, click_col = 30, 40
    new_clicks = torch.tensor([[[click_row, click_col, 1]]])
    captured = {}
    handle = net.feature_extractor.correction_module.register_forward_hook(
        lambda module, args, output: captured.update(feedback1=output[0])
    )
    try:
        with torch.no_grad():
            net(image, points, new_clicks, 1.0)
    finally:
        handle.remove()
    feedback1 = captured["feedback1"]
    assert feedback1.shape == (1, 1, 16, 16)
    prev = torch.nn.functional.interpolate(image[:, 3:], size=(16, 16), mode="bilinear", align_corners=True)
    # Window: half-size int(0.3 * 64 / 2 + 0.5) = 10 -> rows [20, 40), cols [30, 50) at input
    # scale -> rows [floor(5), ceil(10)), cols [floor(7.5), ceil(12.5)) = [7, 13) at stride 4.
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[5:10, 7:13] = True
    assert torch.equal(feedback1[0, 0][~inside], prev[0, 0][~inside])
    assert not torch.allclose(feedback1[0, 0][inside], prev[0, 0][inside])
    # A positive click pulls the feedback up, fully at the click itself (affinity 1).
    assert (feedback1[0, 0][inside] >= prev[0, 0][inside] - 1e-6).all()
    assert float(feedback1[0, 0, click_row // 4, click_col // 4]) == pytest.approx(1.0, abs=1e-5)


def test_cffm_gate_zero_leaves_features_unchanged():
    net = _tiny(seed=3)
    with torch.no_grad():  # make sure the 1-channel ReLU residual is not dead at initialisation
        net.feature_extractor.feedback_fusion.residual_predictor.bn.bias.fill_(1.0)
    image, points, new_clicks = _inputs(1, 64, 64, seed=3)
    seen = []
    handle = net.feature_extractor.feedback_fusion.register_forward_hook(
        lambda module, args, output: seen.append((args[0].clone(), output[0].clone()))
    )
    try:
        with torch.no_grad():
            closed = net(image, points, new_clicks, 0.0)
            opened = net(image, points, new_clicks, 1.0)
    finally:
        handle.remove()
    (in0, out0), (in1, out1) = seen
    assert torch.equal(in0, out0)
    assert not torch.equal(in1, out1)
    assert (out1 - in1 >= 0).all()  # the residual is non-negative
    # The gate reaches the logits but not feedback 1 (FFCM runs before CFFM).
    assert not torch.equal(closed["instances"], opened["instances"])
    assert torch.equal(closed["updated_feedback1"], opened["updated_feedback1"])


def test_batch_elements_are_independent():
    """Per-sample windows: a batch of two gives the same as two single runs."""
    net = _tiny(seed=4)
    image, points, _ = _inputs(2, 64, 64, seed=4)
    new_clicks = torch.tensor([[[10, 12, 1]], [[50, 60, 0]]])
    with torch.no_grad():
        both = net(image, points, new_clicks, 1.0)
        for b in range(2):
            single = net(image[b : b + 1], points[b : b + 1], new_clicks[b : b + 1], 1.0)
            for key in single:
                torch.testing.assert_close(single[key], both[key][b : b + 1], rtol=1e-5, atol=1e-5)


def test_config_is_json_and_rebuilds_the_same_network():
    net = _tiny(seed=5, aspp_dropout=0.1, update_num=2)
    config = json.loads(json.dumps(net.config))
    assert config["arch"] == "deeplab"
    rebuilt = FCFIDeepLab(**{k: v for k, v in config.items() if k != "arch"})
    assert rebuilt.config == net.config
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    rebuilt.eval()
    image, points, new_clicks = _inputs(1, 64, 64)
    with torch.no_grad():
        assert torch.equal(
            net(image, points, new_clicks, 1.0)["instances"],
            rebuilt(image, points, new_clicks, 1.0)["instances"],
        )
    try:
        from napari_fcfi.model.architectures import build_network
    except ImportError:  # pragma: no cover - networks.py is another helper's module
        return
    assert build_network(config).config == net.config


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        FCFIDeepLab(backbone="resnet7")
    with pytest.raises(ValueError, match="with_aux_output"):
        FCFIDeepLab(**TINY, with_aux_output=True)
    with pytest.raises(ValueError, match="use_rgb_conv"):
        FCFIDeepLab(**TINY, use_rgb_conv=True)
    with pytest.raises(ValueError, match="norm_layer"):
        FCFIDeepLab(**TINY, norm_layer="torch.nn.GroupNorm")
    net = _tiny()
    image, points, new_clicks = _inputs(1, 64, 64)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        net(image[:, :3], points, new_clicks, 1.0)
    with pytest.raises(ValueError, match="new_clicks"):
        net(image, points, new_clicks[:, :0], 1.0)
    with pytest.raises(ValueError, match="new click outside"):
        net(image, points, torch.tensor([[[64, 3, 1]]]), 1.0)


def _sheet() -> dict:
    if not R101_SHEET.is_file():
        pytest.skip("official checkpoint fact sheet r101_sbd.json not present")
    return json.loads(R101_SHEET.read_text())


def test_official_r101_config_builds_exact_key_layout():
    """Every key, shape, dtype (and the order) of the official ResNet-101 SBD state dict."""
    sheet = _sheet()
    params = {name: record["value"] for name, record in sheet["config"]["params"].items()}
    with torch.device("meta"):  # shapes only: no 58M-parameter allocation
        net = FCFIDeepLab(**params)
    state = net.state_dict()
    expected = [(e["key"], tuple(e["shape"]), e["dtype"]) for e in sheet["state_dict"]]
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    assert got == expected
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == sheet["summary"]["parameter_elements"] == 58_540_599
    backbone_keys = {k for k, _, _ in expected if k.startswith("feature_extractor.backbone.")}
    lr_mult_keys = {e["key"] for e in sheet["state_dict"] if e["lr_mult"] == 0.1}
    assert {
        "feature_extractor.backbone." + n for n, _ in net.feature_extractor.backbone.named_parameters()
    } == lr_mult_keys
    assert lr_mult_keys <= backbone_keys
    assert len(net.backbone_parameters()) == len(lr_mult_keys)


@pytest.mark.slow
def test_matches_official_implementation():
    """Bit-level comparison with the official code, when a checkout is given (never in the repo)."""
    official = os.environ.get("FCFI_OFFICIAL_REPO")
    if not official or not (Path(official) / "isegm" / "model" / "is_deeplab_model.py").is_file():
        pytest.skip("set FCFI_OFFICIAL_REPO to a checkout of veizgyauzgyauz/FCFI to run")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        from fidelity.deeplab import check_fidelity
    finally:
        sys.path.pop(0)
    results = check_fidelity(Path(official), backbone="resnet34", height=56, width=72, batch=2)
    diffs = {k: v for k, v in results.items() if not k.rsplit("/", 1)[1].startswith("_")}
    assert max(diffs.values()) <= 1e-5, diffs


def test_feedback_modules_can_be_switched_off_for_the_ablation():
    from napari_fcfi.model.architectures import build_network

    net = _tiny(use_ffcm=False, use_cffm=False)
    keys = list(net.state_dict())
    assert not any("correction_module" in k or "feedback_fusion" in k for k in keys)
    assert net.config["use_ffcm"] is False and net.config["use_cffm"] is False
    image, points, new_clicks = _inputs(1, 64, 64)
    # A linear ramp survives the align-corners down/up resampling exactly.
    image[:, 3] = torch.linspace(0, 1, 64).view(1, 64)
    with torch.no_grad():
        out = net(image, points, new_clicks, 1.0, is_training=True)
    assert out["instances"].shape == (1, 1, 64, 64)
    # Without FFCM there is no correction window; without CFFM the feedback passes through.
    assert out["valid_masks"] is None
    assert torch.allclose(out["updated_feedback2"], image[:, 3:], atol=1e-5)
    rebuilt = build_network(net.config)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    full_keys = set(_tiny().state_dict())
    assert set(keys) < full_keys
