"""Reading official FCFI checkpoints: safe unpickling, config translation, strict weight mapping.

Official files are ``torch.save`` of ``{"state_dict": ..., "config": ...}`` (see
``docs/official_checkpoints``). They are read with ``torch.load(..., weights_only=True)`` only, so
no code stored in a file is ever run. The recorded constructor parameters are translated into our
network's config; any option our networks do not implement is refused by name, and the weights must
map one to one (no missing, unexpected or mis-shaped entries).

A ``module.`` prefix (left by ``nn.DataParallel`` when someone saves a wrapped model) is never written
by the official trainer. It is accepted only when *every* key carries it: the prefix is then removed
with a warning. A mixture of prefixed and plain keys is refused.

:func:`convert_official_checkpoint` turns such a file into our safetensors format
(:mod:`~napari_fcfi.model.safetensors_format`).
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_fcfi.model.checkpoint_io import (
    build_network_checked,
    existing_file,
    load_state_dict_strictly,
    sniff_format,
)
from napari_fcfi.model.errors import (
    CheckpointError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    abbreviated_list,
)
from napari_fcfi.model.safetensors_format import load_safetensors_model, save_model

__all__ = [
    "OFFICIAL_CLASSES",
    "OfficialCheckpoint",
    "read_official_checkpoint",
    "official_config_to_network_config",
    "load_official_checkpoint",
    "convert_official_checkpoint",
]


#: Official model classes (dotted paths as stored in ``config['class']``) -> our architecture name.
OFFICIAL_CLASSES: dict[str, str] = {
    "isegm.model.is_hrnet_model.HRNetModel": "hrnet",
    "isegm.model.is_deeplab_model.DeeplabModel": "deeplab",
}

_BATCHNORM_PATHS = ("torch.nn.modules.batchnorm.BatchNorm2d", "torch.nn.BatchNorm2d")
_IMAGENET_MEAN_STD = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

# Official constructor parameters per class. Anything else in a config is refused as unknown.
_OFFICIAL_PARAMS: dict[str, frozenset[str]] = {
    "hrnet": frozenset(
        [
            "width",
            "ocr_width",
            "small",
            "mid_ch",
            "update_num",
            "expansion_ratio",
            "use_leaky_relu",
            "with_aux_output",
            "norm_radius",
            "with_prev_mask",
            "use_disks",
            "use_rgb_conv",
            "binary_prev_mask",
            "conv_extend",
            "clicks_groups",
            "cpu_dist_maps",
            "backbone_lr_mult",
            "norm_layer",
            "norm_mean_std",
            "num_classes",
        ]
    ),
    "deeplab": frozenset(
        [
            "backbone",
            "deeplab_ch",
            "mid_ch",
            "aspp_dropout",
            "update_num",
            "expansion_ratio",
            "use_leaky_relu",
            "use_rgb_conv",
            "use_disks",
            "norm_radius",
            "with_prev_mask",
            "backbone_norm_layer",
            "backbone_lr_mult",
            "norm_layer",
            "with_aux_output",
            "cpu_dist_maps",
            "clicks_groups",
            "binary_prev_mask",
            "conv_extend",
            "norm_mean_std",
            "num_classes",
        ]
    ),
}

# Options that only steer training (learning-rate multipliers, where click maps are computed).
_TRAINING_ONLY_PARAMS = frozenset({"backbone_lr_mult", "cpu_dist_maps"})
_KEPT_TRAINING_PARAMS = frozenset({"backbone_lr_mult"})

# Official options our networks implement in one way only: the value they must have. A checkpoint
# asking for anything else is refused, whatever our constructor accepts.
_FIXED_OPTIONS: dict[str, Any] = {
    "use_rgb_conv": False,  # no RGB+maps 1x1 fusion conv; the maps go through maps_transform
    "use_disks": True,  # binary disks, not distance maps
    "clicks_groups": None,  # one group of clicks
    "binary_prev_mask": False,  # the previous mask is a probability
    "conv_extend": False,
    "norm_layer": "torch.nn.modules.batchnorm.BatchNorm2d",
    "backbone_norm_layer": None,  # i.e. the same BatchNorm2d as the rest
}

# What our networks do for official parameters their constructor may not take as an argument.
# When our constructor has the argument, the checkpoint's value is passed; otherwise it must equal this.
_IMPLIED_BEHAVIOUR: dict[str, Any] = {
    "small": False,
    "num_classes": 1,
    "with_prev_mask": True,
    "use_leaky_relu": True,
    "norm_radius": 5,
    "norm_mean_std": _IMAGENET_MEAN_STD,
}
_IMPLIED_AUX = {"hrnet": True, "deeplab": False}  # with_aux_output, per architecture
_MISSING = object()


def _torch_load_restricted(path: Path) -> Any:
    """``torch.load`` with the restricted unpickler; errors become :class:`CheckpointError`."""
    try:
        # weights_only=True: only tensors and plain containers are rebuilt, nothing is imported/run.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, IndexError, ...
        text = str(error)
        # A refused GLOBAL means the pickle asked to import something (a class, a function to call).
        refused_global = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), None)
        if "Weights only load failed" in text and refused_global:
            detail = refused_global
            raise UnsafeCheckpointError(
                f"{path}: refused: the file contains objects the safe loader does not allow ({detail}). "
                "napari-fcfi never runs code stored in a checkpoint; official FCFI checkpoints contain "
                "only tensors and plain values, so this file is not one."
            ) from error
        first_line = text.strip().splitlines()[0] if text.strip() else ""
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {first_line})"
        ) from error


@dataclass
class OfficialCheckpoint:
    """The validated content of an official FCFI checkpoint."""

    path: Path
    official_class: str
    arch: str
    params: dict[str, Any]  # official constructor parameter -> plain value
    state_dict: dict[str, torch.Tensor]
    warnings: list[str] = field(default_factory=list)


def _plain_value(value: Any) -> Any:
    """Tuples to lists, recursively, so values compare and serialise as JSON would."""
    if isinstance(value, (list, tuple)):
        return [_plain_value(item) for item in value]
    return value


def _validate_official_structure(path: Path, content: Any) -> OfficialCheckpoint:
    notes: list[str] = []
    if isinstance(content, list):
        if not content or not isinstance(content[0], dict):
            raise CheckpointError(
                f"{path}: a list checkpoint must hold checkpoint dicts; got {content!r:.80}"
            )
        note = (
            f"{path}: the file holds a list of {len(content)} checkpoints (per-click model schedule); "
            "only the first one is used"
        )
        warnings.warn(note, UserWarning, stacklevel=4)
        notes.append(note)
        content = content[0]
    if not isinstance(content, dict):
        raise CheckpointError(
            f"{path}: not an FCFI checkpoint: expected a dict with 'state_dict' and 'config', "
            f"got {type(content).__name__}"
        )
    missing = [key for key in ("state_dict", "config") if key not in content]
    if missing:
        raise CheckpointError(
            f"{path}: not an FCFI checkpoint: missing top-level entr{'y' if len(missing) == 1 else 'ies'} "
            f"{missing} (found {sorted(map(str, content))[:8]}). Official FCFI/RITM checkpoints store "
            "'state_dict' and 'config'; a bare state_dict cannot be loaded because the architecture is unknown."
        )
    config = content["config"]
    if not isinstance(config, dict) or "class" not in config or "params" not in config:
        raise CheckpointError(f"{path}: 'config' must be a dict with 'class' and 'params'")
    official_class = config["class"]
    if official_class not in OFFICIAL_CLASSES:
        raise UnsupportedCheckpointError(
            f"{path}: unknown model class {official_class!r}; napari-fcfi reads {', '.join(OFFICIAL_CLASSES)}"
        )
    arch = OFFICIAL_CLASSES[official_class]
    records = config["params"]
    if not isinstance(records, dict):
        raise CheckpointError(f"{path}: config['params'] must be a dict, got {type(records).__name__}")
    params: dict[str, Any] = {}
    for name, record in records.items():
        if (
            not isinstance(record, dict)
            or "value" not in record
            or record.get("type") not in ("builtin", "class")
        ):
            raise CheckpointError(
                f"{path}: config param {name!r} is not a {{'type': 'builtin'|'class', 'value': ...}} record: "
                f"{record!r:.120}"
            )
        if record["type"] == "class" and name != "norm_layer":
            raise UnsupportedCheckpointError(
                f"{path}: config param {name!r} names a class ({record['value']!r}); only norm_layer may",
                name,
            )
        params[str(name)] = _plain_value(record["value"])

    state_dict = content["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict, got {type(state_dict).__name__}")
    not_tensors = [str(key) for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path}: state_dict entries that are not tensors: {abbreviated_list(not_tensors)}"
        )
    state_dict = _strip_module_prefix(dict(state_dict), path, notes)
    return OfficialCheckpoint(path, official_class, arch, params, state_dict, notes)


def _strip_module_prefix(state_dict: dict[str, torch.Tensor], source: Any, notes: list[str]) -> dict:
    prefixed = [key for key in state_dict if key.startswith("module.")]
    if not prefixed:
        return state_dict
    if len(prefixed) != len(state_dict):
        plain = [key for key in state_dict if not key.startswith("module.")]
        raise CheckpointError(
            f"{source}: some keys start with 'module.' ({abbreviated_list(prefixed, 3)}) and some do not "
            f"({abbreviated_list(plain, 3)}); save the unwrapped model (model.module.state_dict())"
        )
    note = f"{source}: removed the 'module.' prefix (nn.DataParallel wrapper) from all {len(prefixed)} keys"
    warnings.warn(note, UserWarning, stacklevel=5)
    notes.append(note)
    return {key[len("module.") :]: value for key, value in state_dict.items()}


def read_official_checkpoint(path: str | os.PathLike[str]) -> OfficialCheckpoint:
    """Read and validate an official FCFI checkpoint (safe loader, structure checks, known class)."""
    path = existing_file(path)
    kind = sniff_format(path)
    if kind == "safetensors":
        raise CheckpointError(f"{path}: this is a safetensors file, not an official .pth checkpoint")
    if kind == "html":
        raise CheckpointError(f"{path}: this is an HTML page, not a checkpoint (a failed download?)")
    if kind == "unknown":
        raise CheckpointError(f"{path}: not a recognised checkpoint (neither a PyTorch file nor safetensors)")
    return _validate_official_structure(path, _torch_load_restricted(path))


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _network_class(arch: str) -> type[nn.Module]:
    """Our network class for ``arch``; its constructor signature says which parameters it takes."""
    names = {"hrnet": "FCFIHRNet", "deeplab": "FCFIDeepLab", "mobile": "FCFIMobile"}
    if arch not in names:
        raise UnsupportedCheckpointError(f"unknown architecture {arch!r}; known: {sorted(names)}")
    module_names = ["napari_fcfi.model.networks"]
    if arch == "deeplab":
        module_names.append("napari_fcfi.model.deeplab")
    if arch == "mobile":
        module_names.append("napari_fcfi.model.mobile")
    cls = None
    for module_name in module_names:
        try:
            cls = getattr(import_module(module_name), names[arch], None)
        except ImportError:
            continue
        if cls is not None:
            break
    if cls is None:
        raise UnsupportedCheckpointError(f"this napari-fcfi build has no {names[arch]} network")
    return cls


def official_config_to_network_config(
    arch: str,
    params: Mapping[str, Any],
    source: str = "checkpoint",
    network_class: type[nn.Module] | None = None,
) -> dict[str, Any]:
    """Translate official constructor parameters into our ``build_network`` config.

    Raises :class:`UnsupportedCheckpointError` (with ``.param``) for an unknown parameter or an option
    our networks do not implement. Training-only parameters are accepted (dropped unless our trainer
    reads them). Parameters that are not official but that our constructor takes (napari-fcfi
    extensions such as ``base_width``) are passed on.
    """
    if arch not in _OFFICIAL_PARAMS:
        raise UnsupportedCheckpointError(f"{source}: unknown architecture {arch!r}")
    cls = network_class if network_class is not None else _network_class(arch)
    accepted = {
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    config: dict[str, Any] = {"arch": arch}
    for name, value in params.items():
        if name not in _OFFICIAL_PARAMS[arch] and name not in accepted:
            raise UnsupportedCheckpointError(
                f"{source}: unknown parameter {name!r} for {arch} (value {value!r}); napari-fcfi cannot "
                "tell what it changes, so the checkpoint is refused",
                name,
            )
        if name in _TRAINING_ONLY_PARAMS:
            # No effect on the forward pass; kept in our config only where our trainer reads it.
            if name in accepted and name in _KEPT_TRAINING_PARAMS:
                config[name] = value
            continue
        if name in _FIXED_OPTIONS:
            expected = _FIXED_OPTIONS[name]
            ok = value in _BATCHNORM_PATHS if name == "norm_layer" else _values_equal(value, expected)
            if not ok:
                raise UnsupportedCheckpointError(
                    f"{source}: unsupported option {name}={value!r}: napari-fcfi networks only implement "
                    f"{name}={expected!r}",
                    name,
                )
            continue
        if name in accepted:
            config[name] = value
            continue
        implied = _IMPLIED_AUX[arch] if name == "with_aux_output" else _IMPLIED_BEHAVIOUR.get(name, _MISSING)
        if implied is _MISSING:
            raise UnsupportedCheckpointError(
                f"{source}: parameter {name}={value!r} has no counterpart in {cls.__name__}", name
            )
        if not _values_equal(value, implied):
            raise UnsupportedCheckpointError(
                f"{source}: unsupported option {name}={value!r}: {cls.__name__} always uses {name}={implied!r}",
                name,
            )
    return config


def _official_to_own_keys(net: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key layout -> ours. Networks that name modules differently provide the mapping."""
    convert: Callable[[dict], dict] | None = getattr(net, "convert_official_state_dict", None)
    return dict(convert(state_dict)) if convert is not None else state_dict


def load_official_checkpoint(path: str | os.PathLike[str]) -> nn.Module:
    """Build our network from an official FCFI checkpoint and load its weights strictly (on the CPU)."""
    return _network_from_official(read_official_checkpoint(path))


def _network_from_official(checkpoint: OfficialCheckpoint) -> nn.Module:
    source = str(checkpoint.path)
    config = official_config_to_network_config(checkpoint.arch, checkpoint.params, source)
    net = build_network_checked(config, source)
    load_state_dict_strictly(net, _official_to_own_keys(net, checkpoint.state_dict), source)
    net.fcfi_metadata = {
        "format": "official-fcfi",
        "official_class": checkpoint.official_class,
        "path": source,
        "name": checkpoint.path.stem,
    }
    return net


def convert_official_checkpoint(
    official_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert an official FCFI ``.pth`` checkpoint into a napari-fcfi safetensors file.

    The official file is read strictly, written as safetensors, read back and compared tensor by
    tensor. Returns a summary dict (arch, config, parameter and key counts, sizes, paths).
    """
    official_path = Path(official_path).expanduser()
    output_path = Path(output_path).expanduser()
    if output_path.exists() and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass overwrite=True (--force) to replace it")
    if output_path.suffix != ".safetensors":
        raise ValueError(f"output file must end in .safetensors, got {output_path.name!r}")
    checkpoint = read_official_checkpoint(official_path)
    net = _network_from_official(checkpoint)
    metadata = {
        "name": name or official_path.stem,
        "description": description or f"converted from the official FCFI checkpoint {official_path.name}",
        "converted_from": {"file": official_path.name, "class": checkpoint.official_class},
    }
    save_model(net, output_path, metadata)

    reloaded = load_safetensors_model(output_path)
    original, copy = net.state_dict(), reloaded.state_dict()
    differing = [key for key in original if not torch.equal(original[key], copy[key])]
    if differing or reloaded.config != net.config:
        output_path.unlink(missing_ok=True)
        raise CheckpointError(
            f"round-trip check failed for {abbreviated_list(differing)}; nothing was written"
        )
    return {
        "official_class": checkpoint.official_class,
        "arch": net.config["arch"],
        "config": net.config,
        "parameters": sum(parameter.numel() for parameter in net.parameters()),
        "state_dict_keys": len(original),
        "input_bytes": official_path.stat().st_size,
        "output_bytes": output_path.stat().st_size,
        "output": str(output_path),
        "warnings": checkpoint.warnings,
    }
