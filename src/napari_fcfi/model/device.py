"""Choosing the torch device and floating-point precision a model runs with.

Policy (also in ``weights/README.md``):

* ``"auto"`` picks CUDA, then Apple MPS, then the CPU.
* ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a :class:`torch.device` ask for one device;
  asking for a device this machine does not have is an error, never a silent fallback, so that a
  user who expects a GPU learns that torch cannot see it.
* Precision: float32 everywhere by default. float16 is offered on CUDA and MPS only (CPU kernels
  for half-precision convolutions are missing or very slow, so it is refused there). bfloat16 is
  offered on CUDA devices that support it and on the CPU (where it is correct but rarely faster).
"""

from __future__ import annotations

import torch

__all__ = ["DeviceError", "resolve_device", "resolve_dtype", "available_devices"]

_DTYPE_ALIASES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class DeviceError(ValueError):
    """A requested device or precision is unknown or not available on this machine."""


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); None when it cannot be told
    (not Linux). Without it bfloat16 autocast is emulated and runs several times slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next(
                (line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), None
            )
    except OSError:
        return None
    if flags is None:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Devices torch can use here, best first (e.g. ``["cuda:0", "cpu"]``); ``cpu`` is always last."""
    devices: list[str] = []
    if torch.cuda.is_available():
        devices.extend(f"cuda:{index}" for index in range(torch.cuda.device_count()))
    if _mps_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, a device string or a :class:`torch.device` into an available device.

    Raises :class:`DeviceError` for an unknown device string or a device this machine lacks.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device.strip().lower())
        except RuntimeError as error:
            raise DeviceError(
                f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from error
    else:
        raise DeviceError(f"device must be a string or torch.device, got {type(device).__name__}")

    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(resolved)!r} requested but torch cannot use CUDA here "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                "use device='auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(
                f"device {str(resolved)!r} requested but only {count} CUDA device(s) are visible "
                f"(cuda:0..cuda:{count - 1})"
            )
        return resolved
    if resolved.type == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'")
        return resolved
    raise DeviceError(f"device type {resolved.type!r} is not supported: use 'auto', 'cpu', 'cuda' or 'mps'")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Check a requested precision against the device; ``None`` means float32.

    Raises :class:`DeviceError` for float16 on the CPU, bfloat16 where the device lacks it, or an
    unknown name.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key not in _DTYPE_ALIASES:
            raise DeviceError(f"unknown dtype {dtype!r}: use one of {sorted(_DTYPE_ALIASES)}")
        resolved = _DTYPE_ALIASES[key]
    elif isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        raise DeviceError(f"dtype must be a string or torch.dtype, got {type(dtype).__name__}")

    if resolved not in (torch.float32, torch.float16, torch.bfloat16):
        raise DeviceError(f"dtype {resolved} is not supported: use float32, float16 or bfloat16")
    if resolved == torch.float16 and device.type == "cpu":
        raise DeviceError(
            "float16 is only supported on CUDA or MPS devices (CPU half-precision convolutions are "
            "missing or very slow); use dtype=None (float32) or 'bfloat16' on the CPU"
        )
    if resolved == torch.bfloat16:
        if device.type == "mps":
            raise DeviceError("bfloat16 is not supported on MPS here; use 'float16' or float32")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError(f"this CUDA device ({device}) does not support bfloat16; use 'float16'")
    return resolved
