"""``load_model``: the one front door from a model name or file to a network ready for inference.

It resolves ``"default"`` and registry names to files (downloading official releases once), tells
the format from the file's content, hands the file to the official reader
(:mod:`~napari_fcfi.model.official`) or to our safetensors format
(:mod:`~napari_fcfi.model.safetensors_format`), and places the network on the requested device,
dtype and memory format.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from napari_fcfi.model import registry
from napari_fcfi.model.checkpoint_io import existing_file, sniff_format
from napari_fcfi.model.device import resolve_device, resolve_dtype
from napari_fcfi.model.errors import CheckpointError
from napari_fcfi.model.official import load_official_checkpoint
from napari_fcfi.model.safetensors_format import load_safetensors_model

__all__ = ["load_model"]


def _load_file(path: Path) -> nn.Module:
    kind = sniff_format(path)
    if kind == "safetensors":
        return load_safetensors_model(path)
    if kind == "torch":
        return load_official_checkpoint(path)
    if kind == "html":
        raise CheckpointError(f"{path}: this is an HTML page, not a checkpoint (a failed download?)")
    raise CheckpointError(
        f"{path}: not a recognised checkpoint: expected a napari-fcfi .safetensors file or an official "
        "FCFI .pth file"
    )


def load_model(
    source: str | os.PathLike[str] = "default",
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = None,
    channels_last: bool | None = None,
) -> nn.Module:
    """Load a network ready for inference: eval mode, no gradients, on ``device``.

    ``source``: ``"default"`` (the bundled model), a registry name (see :func:`list_models`;
    official checkpoints are downloaded into the cache once), or a path to a napari-fcfi
    ``.safetensors`` file or an official FCFI ``.pth`` checkpoint. ``device``: ``"auto"`` (CUDA, MPS,
    CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a torch.device. ``dtype``: None (float32),
    ``"float16"`` (CUDA/MPS) or ``"bfloat16"`` (CUDA/CPU). ``channels_last``: store the weights in
    NHWC memory format; None means yes on CPU (faster oneDNN convolutions, outputs equal to ~1e-7,
    not bit for bit), no elsewhere.

    The returned module carries ``fcfi_metadata`` (a dict: format, path, name, ... as stored).
    Raises FileNotFoundError, :class:`CheckpointError` (and subclasses),
    :class:`~napari_fcfi.model.registry.ModelDownloadError` or
    :class:`~napari_fcfi.model.device.DeviceError`.
    """
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target_device)

    name = os.fspath(source)
    if name in registry.REGISTRY:
        path = registry.fetch(name)
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"model source {name!r} is neither a registered model name "
                f"({', '.join(registry.REGISTRY)}) nor an existing file"
            )
        path = existing_file(path)

    net = _load_file(path)
    if name in registry.REGISTRY:
        net.fcfi_metadata.setdefault("registry_name", name)
    net.eval()
    net.requires_grad_(False)
    net = net.to(device=target_device, dtype=target_dtype)
    if channels_last is None:
        channels_last = target_device.type == "cpu"
    if channels_last:
        # oneDNN convolutions run 16-19 % faster in NHWC on CPU with identical outputs
        # (docs/benchmarks.md); inputs stay ordinary NCHW tensors.
        net = net.to(memory_format=torch.channels_last)
    return net
