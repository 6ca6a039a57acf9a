"""The networks a benchmark times: ``--models`` entries turned into eval-mode CPU networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from napari_fcfi.engine.settings import resolve_settings
from napari_fcfi.model import load_model, registry
from napari_fcfi.model.deeplab import FCFIDeepLab
from napari_fcfi.model.networks import NETWORK_PRESETS, build_preset

DEFAULT_BUNDLED_PRESET = "hrnet8-small-tiny"  # stand-in architecture when the bundled weights file is absent
#: ``--models`` names of the official ResNet-101 DeepLabV3+ configuration.
DEEPLAB_R101_NAMES = ("deeplab-r101", "resnet101-deeplab")


def bundled_weights_path() -> Path:
    """Where the bundled weights live (read at call time, so tests can point it elsewhere)."""
    return registry.BUNDLED_WEIGHTS


def build_benchmark_model(
    spec: str, bundled_preset: str = DEFAULT_BUNDLED_PRESET
) -> tuple[Any, dict[str, Any]]:
    """Network (eval, no grad, CPU float32) and a description dict for a ``--models`` entry."""
    torch.manual_seed(0)  # random weights, but the same ones on every run
    info: dict[str, Any] = {"model": spec}
    if spec == "default":
        path = bundled_weights_path()
        if path.is_file():
            net = load_model("default", device="cpu")
            info.update(weights="bundled", source=str(path))
        else:
            net = build_preset(bundled_preset)
            info.update(
                weights="random",
                source=f"preset {bundled_preset} (bundled weights absent: {path.name})",
                model=f"default[{bundled_preset}]",
            )
    elif spec in NETWORK_PRESETS:
        net = build_preset(spec)
        info.update(weights="random", source=f"preset {spec}")
    elif spec in DEEPLAB_R101_NAMES:
        net = FCFIDeepLab(backbone="resnet101")
        info.update(weights="random", source="official ResNet-101 DeepLabV3+ config")
    else:
        try:
            net = load_model(spec, device="cpu")
        except FileNotFoundError as error:
            raise ValueError(
                f"--models entry {spec!r} is not 'default', 'deeplab-r101', a preset "
                f"({', '.join(sorted(NETWORK_PRESETS))}), a registry name or an existing file: {error}"
            ) from error
        info.update(weights="file", source=str(spec))
    net.eval()
    net.requires_grad_(False)
    config = dict(getattr(net, "config", {}) or {})
    info["arch"] = config.get("arch", type(net).__name__)
    info["config"] = config
    info["parameters"] = int(sum(p.numel() for p in net.parameters()))
    info["parameter_mb"] = round(sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20, 2)
    metadata = getattr(net, "fcfi_metadata", None)
    if isinstance(metadata, dict) and metadata.get("input_size") is not None:
        info["input_size"] = metadata["input_size"]
    return net, info


def working_size(net: Any, default: int = 256) -> int:
    """The engine's working size for ``net`` (microscopy preset; model metadata wins)."""
    try:
        return int(resolve_settings(net).input_size)
    except Exception:  # noqa: BLE001 - odd metadata: fall back to the preset default
        return default
