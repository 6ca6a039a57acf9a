"""Model room: FCFI networks, official checkpoint reading, our safetensors format, named models.

Imports torch only (never napari or Qt). The main entry points::

    from napari_fcfi.model import load_model, save_model, list_models
    net = load_model("default", device="auto")          # bundled model
    net = load_model("fcfi-hrnet18s-cocolvis")          # official release (downloaded once)
    net = load_model("/path/to/official.pth")           # official checkpoint file
    save_model(net, "my_model.safetensors", metadata={"name": "my-model"})
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from napari_fcfi.model.device import DeviceError, available_devices, resolve_device, resolve_dtype
from napari_fcfi.model.errors import (
    CheckpointError,
    StateDictMismatchError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
)
from napari_fcfi.model.loading import load_model
from napari_fcfi.model.official import convert_official_checkpoint
from napari_fcfi.model.registry import ModelDownloadError, list_models
from napari_fcfi.model.safetensors_format import read_metadata, save_model

# Network classes are imported on first use: their modules are larger and not needed to list models.
_LAZY_EXPORTS = {
    "build_network": "napari_fcfi.model.architectures",
    "FCFIHRNet": "napari_fcfi.model.networks",
    "FCFIDeepLab": "napari_fcfi.model.deeplab",
    "FCFIMobile": "napari_fcfi.model.mobile",
}

__all__ = [
    "load_model",
    "save_model",
    "list_models",
    "read_metadata",
    "convert_official_checkpoint",
    "resolve_device",
    "resolve_dtype",
    "available_devices",
    "CheckpointError",
    "UnsafeCheckpointError",
    "UnsupportedCheckpointError",
    "StateDictMismatchError",
    "ModelDownloadError",
    "DeviceError",
    "build_network",
    "FCFIHRNet",
    "FCFIDeepLab",
    "FCFIMobile",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'napari_fcfi.model' has no attribute {name!r}")
    module = import_module(module_name)
    value = getattr(module, name)
    globals()[name] = value
    return value
