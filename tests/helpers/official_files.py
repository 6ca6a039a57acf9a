"""Official-format checkpoint files built from our own tiny networks (the official layout around our
state dict, whose keys equal the official ones), for the checkpoint and registry tests."""

from __future__ import annotations

from pathlib import Path

import torch

HRNET_CLASS = "isegm.model.is_hrnet_model.HRNetModel"
DEEPLAB_CLASS = "isegm.model.is_deeplab_model.DeeplabModel"
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

TINY_HRNET = dict(width=4, ocr_width=4, small=True, mid_ch=4)


def record(value, specified=True, kind="builtin"):
    return {"type": kind, "value": value, "specified": specified}


def official_hrnet_params(**overrides) -> dict:
    """HRNetModel params as the official trainer records them (explicit args, then defaults)."""
    values = dict(
        width=4,
        ocr_width=4,
        mid_ch=4,
        with_aux_output=True,
        use_leaky_relu=True,
        update_num=1,
        expansion_ratio=0.3,
        use_rgb_conv=False,
        use_disks=True,
        norm_radius=5,
        with_prev_mask=True,
    )
    defaults = dict(
        small=True,
        num_classes=1,
        backbone_lr_mult=0.1,
        cpu_dist_maps=False,
        clicks_groups=None,
        binary_prev_mask=False,
        conv_extend=False,
        norm_mean_std=(list(IMAGENET[0]), list(IMAGENET[1])),
    )
    params = {name: record(value) for name, value in values.items()}
    params.update({name: record(value, specified=False) for name, value in defaults.items()})
    params["norm_layer"] = record("torch.nn.modules.batchnorm.BatchNorm2d", False, "class")
    for name, value in overrides.items():
        if value is DROP:
            params.pop(name)
        else:
            params[name] = value if isinstance(value, dict) and "type" in value else record(value)
    return params


DROP = object()


def perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """Give BatchNorm statistics non-default values so that a lost buffer would show."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buffer.fill_(7)
    return net.eval()


def write_official(path: Path, state_dict, params=None, cls=HRNET_CLASS) -> Path:
    torch.save({"state_dict": dict(state_dict), "config": {"class": cls, "params": params}}, path)
    return path


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key].cpu(), sb[key].cpu()), key
