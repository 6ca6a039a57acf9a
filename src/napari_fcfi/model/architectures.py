"""Build any of our networks from its config: ``{"arch": "hrnet" | "deeplab" | "mobile", **kwargs}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from napari_fcfi.model.deeplab import FCFIDeepLab
from napari_fcfi.model.mobile import FCFIMobile
from napari_fcfi.model.networks import FCFIHRNet

#: The network class of each ``arch`` a config can name.
ARCHITECTURES: dict[str, type[nn.Module]] = {"hrnet": FCFIHRNet, "deeplab": FCFIDeepLab, "mobile": FCFIMobile}


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a network from its ``config`` (``{"arch": ..., **constructor kwargs}``)."""
    if not isinstance(config, Mapping) or "arch" not in config:
        raise ValueError(f"build_network: config must be a mapping with an 'arch' entry, got {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "arch"}
    arch = config["arch"]
    cls = ARCHITECTURES.get(arch)
    if cls is None:
        raise ValueError(f"build_network: unknown arch {arch!r} (expected 'hrnet', 'deeplab' or 'mobile')")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"build_network: bad constructor arguments for arch {arch!r}: {exc}") from exc
