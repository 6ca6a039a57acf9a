"""Steps every weights file goes through, whatever its format.

Checking the path, telling the format from the first bytes (never from the file name), building the
network a config describes, and copying weights in strictly (no missing, unexpected or mis-shaped
entries). The official reader (:mod:`~napari_fcfi.model.official`), our safetensors format
(:mod:`~napari_fcfi.model.safetensors_format`) and :func:`~napari_fcfi.model.loading.load_model`
share them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from napari_fcfi.model.errors import (
    CheckpointError,
    StateDictMismatchError,
    UnsupportedCheckpointError,
    abbreviated_list,
)

__all__ = ["existing_file", "sniff_format", "build_network_checked", "load_state_dict_strictly"]

FileFormat = Literal["torch", "safetensors", "html", "unknown"]


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; FileNotFoundError when absent, CheckpointError when it is not a file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    return path


def sniff_format(path: Path) -> FileFormat:
    """'torch', 'safetensors', 'html' or 'unknown', from the first bytes of the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
    # safetensors: 8-byte little-endian header length, then a JSON header that fits in the file. Checked
    # before the pickle test: a header length of 128 + 256 k starts with the byte 0x80 too.
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 8 + header_len <= size:
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip archive / legacy pickle
        return "torch"
    stripped = head.lstrip().lower()
    # Google Drive and proxies answer failed downloads with a web page saved under the model's name.
    if stripped.startswith((b"<!doctype", b"<html")):
        return "html"
    return "unknown"


def build_network_checked(config: dict[str, Any], source: str) -> nn.Module:
    """``build_network(config)``; a config our networks cannot take becomes UnsupportedCheckpointError."""
    # Imported here, not at module level: listing or naming models must not load the network code.
    from napari_fcfi.model.architectures import build_network

    try:
        return build_network(config)
    except (TypeError, ValueError, KeyError, NotImplementedError) as error:
        raise UnsupportedCheckpointError(
            f"{source}: cannot build a network from config {json.dumps(config)}: {error}"
        ) from error


def load_state_dict_strictly(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``net``; every key must match in name and shape, both ways."""
    expected = net.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        (key, tuple(state_dict[key].shape), tuple(expected[key].shape))
        for key in expected
        if key in state_dict and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(source, missing, unexpected, mismatched)
    # load_state_dict would silently cast e.g. a float num_batches_tracked; a kind change means a wrong file.
    wrong_kind = [
        key
        for key, value in state_dict.items()
        if value.is_floating_point() != expected[key].is_floating_point()
    ]
    if wrong_kind:
        raise CheckpointError(f"{source}: integer/float type mismatch for {abbreviated_list(wrong_kind)}")
    net.load_state_dict(state_dict, strict=True)
