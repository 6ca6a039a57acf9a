"""Reading and writing model weights: official FCFI ``.pth`` files and our safetensors files.

Two formats are understood, told apart by their content, not their file name:

* **Official FCFI checkpoints** (``torch.save`` of ``{"state_dict": ..., "config": ...}``, see
  ``docs/official_checkpoints``). They are read with ``torch.load(..., weights_only=True)`` only, so
  no code stored in a file is ever run. The recorded constructor parameters are translated into our
  network's config; any option our networks do not implement is refused by name, and the weights must
  map one to one (no missing, unexpected or mis-shaped entries).
* **napari-fcfi safetensors files**, written by :func:`save_model`. The safetensors metadata (a
  str -> str map) holds ``format`` ("napari-fcfi"), ``format_version``, ``config`` (JSON of
  ``net.config``) and optionally ``name``, ``description``, ``input_size``, ``training`` (JSON) and
  any further string entries.

A ``module.`` prefix (left by ``nn.DataParallel`` when someone saves a wrapped model) is never written
by the official trainer. It is accepted only when *every* key carries it: the prefix is then removed
with a warning. A mixture of prefixed and plain keys is refused.

Every problem with a file's content raises :class:`CheckpointError` (a ``ValueError``) or one of its
subclasses; a path that does not exist raises ``FileNotFoundError``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_fcfi.model import registry
from napari_fcfi.model.device import resolve_device, resolve_dtype

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "UnsupportedCheckpointError",
    "StateDictMismatchError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OFFICIAL_CLASSES",
    "OfficialCheckpoint",
    "read_official_checkpoint",
    "official_config_to_network_config",
    "load_official_checkpoint",
    "read_metadata",
    "load_safetensors_model",
    "save_model",
    "load_model",
    "convert_official_checkpoint",
]

FORMAT_NAME = "napari-fcfi"
FORMAT_VERSION = 1
_RESERVED_METADATA = ("format", "format_version", "config")
_JSON_METADATA = ("input_size", "training", "converted_from")

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
        "width ocr_width small mid_ch update_num expansion_ratio use_leaky_relu with_aux_output "
        "norm_radius with_prev_mask use_disks use_rgb_conv binary_prev_mask conv_extend clicks_groups "
        "cpu_dist_maps backbone_lr_mult norm_layer norm_mean_std num_classes".split()
    ),
    "deeplab": frozenset(
        "backbone deeplab_ch mid_ch aspp_dropout update_num expansion_ratio use_leaky_relu use_rgb_conv "
        "use_disks norm_radius with_prev_mask backbone_norm_layer backbone_lr_mult norm_layer "
        "with_aux_output cpu_dist_maps clicks_groups binary_prev_mask conv_extend norm_mean_std "
        "num_classes".split()
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


class CheckpointError(ValueError):
    """A file is not a usable checkpoint; the message names the file and the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects the restricted loader refuses (it may try to run code)."""


class UnsupportedCheckpointError(CheckpointError):
    """The checkpoint asks for a model class or option napari-fcfi does not implement.

    ``param`` names the offending constructor parameter (None for an unknown class/format).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StateDictMismatchError(CheckpointError):
    """The stored weights do not map one to one onto the network.

    ``missing``: keys the network needs but the file lacks; ``unexpected``: keys in the file the
    network does not have; ``mismatched``: ``(key, shape in file, shape in network)``.
    """

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) {_first(unexpected)}")
        if mismatched:
            shown = [f"{key}: file {list(a)} vs network {list(b)}" for key, a, b in mismatched]
            parts.append(f"{len(mismatched)} shape mismatch(es) {_first(shown)}")
        super().__init__(f"{source}: the weights do not match the network: " + "; ".join(parts))


def _first(items: list[str], count: int = 5) -> str:
    shown = ", ".join(items[:count])
    more = f", ... ({len(items) - count} more)" if len(items) > count else ""
    return f"[{shown}{more}]"


# --------------------------------------------------------------------------------------------------
# network construction (networks.py is the only place that knows the classes)


def _build_network(config: dict[str, Any]) -> nn.Module:
    from napari_fcfi.model.networks import build_network

    return build_network(config)


def _network_class(arch: str) -> type[nn.Module]:
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


def _build_checked(config: dict[str, Any], source: str) -> nn.Module:
    try:
        return _build_network(config)
    except (TypeError, ValueError, KeyError, NotImplementedError) as error:
        raise UnsupportedCheckpointError(
            f"{source}: cannot build a network from config {json.dumps(config)}: {error}"
        ) from error


# --------------------------------------------------------------------------------------------------
# reading files


def _sniff_format(path: Path) -> str:
    """'torch', 'safetensors', 'html' or 'unknown', from the first bytes of the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip archive / legacy pickle
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 8 + header_len <= size:
            return "safetensors"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype", b"<html")):
        return "html"
    return "unknown"


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    return path


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
            raise CheckpointError(f"{path}: a list checkpoint must hold checkpoint dicts; got {content!r:.80}")
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
            f"{path}: unknown model class {official_class!r}; napari-fcfi reads "
            f"{', '.join(OFFICIAL_CLASSES)}"
        )
    arch = OFFICIAL_CLASSES[official_class]
    records = config["params"]
    if not isinstance(records, dict):
        raise CheckpointError(f"{path}: config['params'] must be a dict, got {type(records).__name__}")
    params: dict[str, Any] = {}
    for name, record in records.items():
        if not isinstance(record, dict) or "value" not in record or record.get("type") not in ("builtin", "class"):
            raise CheckpointError(
                f"{path}: config param {name!r} is not a {{'type': 'builtin'|'class', 'value': ...}} record: "
                f"{record!r:.120}"
            )
        if record["type"] == "class" and name != "norm_layer":
            raise UnsupportedCheckpointError(
                f"{path}: config param {name!r} names a class ({record['value']!r}); only norm_layer may", name
            )
        params[str(name)] = _plain_value(record["value"])

    state_dict = content["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict, got {type(state_dict).__name__}")
    not_tensors = [str(key) for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {_first(not_tensors)}")
    state_dict = _strip_module_prefix(dict(state_dict), path, notes)
    return OfficialCheckpoint(path, official_class, arch, params, state_dict, notes)


def _strip_module_prefix(state_dict: dict[str, torch.Tensor], source: Any, notes: list[str]) -> dict:
    prefixed = [key for key in state_dict if key.startswith("module.")]
    if not prefixed:
        return state_dict
    if len(prefixed) != len(state_dict):
        plain = [key for key in state_dict if not key.startswith("module.")]
        raise CheckpointError(
            f"{source}: some keys start with 'module.' ({_first(prefixed, 3)}) and some do not "
            f"({_first(plain, 3)}); save the unwrapped model (model.module.state_dict())"
        )
    note = f"{source}: removed the 'module.' prefix (nn.DataParallel wrapper) from all {len(prefixed)} keys"
    warnings.warn(note, UserWarning, stacklevel=5)
    notes.append(note)
    return {key[len("module.") :]: value for key, value in state_dict.items()}


def read_official_checkpoint(path: str | os.PathLike[str]) -> OfficialCheckpoint:
    """Read and validate an official FCFI checkpoint (safe loader, structure checks, known class)."""
    path = _existing_file(path)
    kind = _sniff_format(path)
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


def _load_strict(net: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
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
    wrong_kind = [
        key
        for key, value in state_dict.items()
        if value.is_floating_point() != expected[key].is_floating_point()
    ]
    if wrong_kind:
        raise CheckpointError(f"{source}: integer/float type mismatch for {_first(wrong_kind)}")
    net.load_state_dict(state_dict, strict=True)


def load_official_checkpoint(path: str | os.PathLike[str]) -> nn.Module:
    """Build our network from an official FCFI checkpoint and load its weights strictly (on the CPU)."""
    return _network_from_official(read_official_checkpoint(path))


def _network_from_official(checkpoint: OfficialCheckpoint) -> nn.Module:
    source = str(checkpoint.path)
    config = official_config_to_network_config(checkpoint.arch, checkpoint.params, source)
    net = _build_checked(config, source)
    _load_strict(net, _official_to_own_keys(net, checkpoint.state_dict), source)
    net.fcfi_metadata = {
        "format": "official-fcfi",
        "official_class": checkpoint.official_class,
        "path": source,
        "name": checkpoint.path.stem,
    }
    return net


# --------------------------------------------------------------------------------------------------
# our safetensors format


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a napari-fcfi safetensors file, JSON entries decoded (``config`` is a dict).

    Raises :class:`CheckpointError` when the file is not safetensors or lacks our metadata.
    """
    from safetensors import safe_open

    path = _existing_file(path)
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
        raise CheckpointError(f"{path}: format_version {raw.get('format_version')!r} is not an integer") from None
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
    net = _build_checked(metadata["config"], source)
    try:
        state_dict = load_file(source, device="cpu")
    except Exception as error:
        raise CheckpointError(f"{source}: cannot read the tensors ({error})") from error
    _load_strict(net, state_dict, source)
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


def save_model(net: nn.Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> Path:
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
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------------------------------
# one entry point


def _load_file(path: Path) -> nn.Module:
    kind = _sniff_format(path)
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
        path = _existing_file(path)

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
        raise CheckpointError(f"round-trip check failed for {_first(differing)}; nothing was written")
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
