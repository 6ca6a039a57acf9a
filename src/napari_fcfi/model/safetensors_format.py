"""Our own weights format: a safetensors file whose metadata says how to rebuild the network.

The safetensors metadata (a str -> str map) holds ``format`` ("napari-fcfi"), ``format_version``,
``config`` (JSON of ``net.config``) and optionally ``name``, ``description``, ``input_size``,
``training`` (JSON), ``adaptation`` (JSON, written for models adapted with
``napari_fcfi.finetune``) and any further string entries. Files are written by :func:`save_model` (and by
``fcfi convert``); safetensors holds tensors only, so reading one can never run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from napari_fcfi.model.checkpoint_io import build_network_checked, existing_file, load_state_dict_strictly
from napari_fcfi.model.errors import CheckpointError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_metadata", "load_safetensors_model", "save_model"]

FORMAT_NAME = "napari-fcfi"
FORMAT_VERSION = 1
_RESERVED_METADATA = ("format", "format_version", "config")
_JSON_METADATA = (
    "input_size",
    "training",
    "converted_from",
    "adaptation",
    "propagation",
    "segment_all",
    "line",
)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a napari-fcfi safetensors file, JSON entries decoded (``config`` is a dict).

    Raises :class:`CheckpointError` when the file is not safetensors or lacks our metadata.
    """
    from safetensors import safe_open

    path = existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as error:  # SafetensorError for corrupt headers
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if raw.get("format") != FORMAT_NAME or "config" not in raw:
        raise CheckpointError(
            f"{path}: safetensors file without napari-fcfi metadata (need format={FORMAT_NAME!r} and "
            f"'config'; found keys {sorted(raw)}). Only files written by napari_fcfi.save_model or "
            "`fcfi convert` can be loaded, because the architecture is read from that metadata."
        )
    try:
        version = int(raw.get("format_version", "0"))
    except ValueError:
        raise CheckpointError(
            f"{path}: format_version {raw.get('format_version')!r} is not an integer"
        ) from None
    if version < 1 or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is not supported by this napari-fcfi "
            f"(reads 1..{FORMAT_VERSION}); upgrade napari-fcfi"
        )
    metadata: dict[str, Any] = dict(raw)
    metadata["format_version"] = version
    for key in ("config", *_JSON_METADATA):
        if key in metadata:
            try:
                metadata[key] = json.loads(metadata[key])
            except json.JSONDecodeError as error:
                raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON ({error})") from error
    if not isinstance(metadata["config"], dict) or "arch" not in metadata["config"]:
        raise CheckpointError(f"{path}: metadata 'config' must be a JSON object with an 'arch' entry")
    return metadata


def load_safetensors_model(path: str | os.PathLike[str]) -> nn.Module:
    """Build the network described in a napari-fcfi safetensors file and load it strictly (CPU)."""
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    source = str(Path(path).expanduser())
    net = build_network_checked(metadata["config"], source)
    try:
        state_dict = load_file(source, device="cpu")
    except Exception as error:
        raise CheckpointError(f"{source}: cannot read the tensors ({error})") from error
    load_state_dict_strictly(net, state_dict, source)
    metadata["path"] = source
    net.fcfi_metadata = metadata
    return net


def _network_config(net: nn.Module) -> dict[str, Any]:
    config = getattr(net, "config", None)
    if not isinstance(config, dict) or "arch" not in config:
        raise ValueError(
            f"{type(net).__name__} has no .config dict with an 'arch' entry; only napari-fcfi networks "
            "(built with build_network) can be saved"
        )
    return config


def save_model(
    net: nn.Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``net`` as a napari-fcfi safetensors file; returns the path.

    ``metadata`` may hold ``name``, ``description`` (strings), ``input_size`` and ``training``
    (JSON-serialisable) and any further entries (strings are stored as is, other values as JSON).
    ``format``, ``format_version`` and ``config`` are written by this function and may not be given.
    The file is written to a temporary name and moved into place, so a failure never leaves a
    half-written file or destroys an existing one.
    """
    from safetensors.torch import save_file

    config = _network_config(net)
    entries: dict[str, str] = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config, sort_keys=True),
    }
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise ValueError(f"metadata keys must be strings, got {key!r}")
        if key in _RESERVED_METADATA:
            raise ValueError(f"metadata key {key!r} is written by save_model itself and cannot be set")
        if isinstance(value, str) and key not in _JSON_METADATA:
            entries[key] = value
        else:
            try:
                entries[key] = json.dumps(value, sort_keys=True)
            except TypeError as error:
                raise ValueError(f"metadata {key!r} is not JSON-serialisable: {error}") from error

    # Own contiguous CPU copies: safetensors refuses shared or strided storage.
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in net.state_dict().items()}
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=entries)
        # mkstemp makes the file private (0600); a weights file is as readable as any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o644 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
