"""The cost of FFCM+CFFM: the full network against itself with both modules switched off.

The variant without the modules is built the one way the project switches them off: the network
config flags ``use_ffcm=False`` / ``use_cffm=False`` (parameter-free pass-throughs), loaded with
the full network's weights, so backbone, click encoding and head are the very same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from napari_fcfi.bench.machine import load_average
from napari_fcfi.bench.synthetic import synthetic_network_input_on
from napari_fcfi.bench.timing import Timings, median_ms, module_timers, time_calls
from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.fcfi_modules import CollaborativeFeedbackFusion, FocusedFeedbackCorrection


def feedback_module_names(net: nn.Module) -> tuple[list[str], list[str]]:
    """Qualified names of the FFCM and of the CFFM sub-modules of ``net``."""
    ffcm = [name for name, m in net.named_modules() if isinstance(m, FocusedFeedbackCorrection)]
    cffm = [name for name, m in net.named_modules() if isinstance(m, CollaborativeFeedbackFusion)]
    return ffcm, cffm


def _uses_channels_last(net: nn.Module) -> bool:
    # A 1x1 kernel is contiguous in both layouts, so only a tensor that is channels_last and not
    # plain contiguous tells the layout.
    return any(
        p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in net.parameters()
    )


def network_without_feedback_modules(net: nn.Module) -> nn.Module:
    """``net`` rebuilt with ``use_ffcm=False, use_cffm=False`` and loaded with ``net``'s weights.

    The result has ``net``'s device, floating dtype, memory format and train/eval mode. Raises
    ValueError when ``net`` has neither module or no ``config`` to rebuild it from, and
    RuntimeError when any key other than FFCM/CFFM ones does not load.
    """
    ffcm, cffm = feedback_module_names(net)
    if not ffcm and not cffm:
        raise ValueError(f"{type(net).__name__} has no FFCM/CFFM module to switch off")
    config = getattr(net, "config", None)
    if not isinstance(config, Mapping) or "arch" not in config:
        raise ValueError(f"{type(net).__name__} has no network config to rebuild it without FFCM/CFFM")
    # The variant's random initialisation is overwritten at once; keep the caller's RNG stream as is.
    with torch.random.fork_rng(devices=[]):
        variant = build_network({**config, "use_ffcm": False, "use_cffm": False})
    loaded = variant.load_state_dict(net.state_dict(), strict=False)
    feedback_prefixes = tuple(f"{name}." for name in ffcm + cffm)
    not_loaded = list(loaded.missing_keys)
    unexpected = [key for key in loaded.unexpected_keys if not key.startswith(feedback_prefixes)]
    if not_loaded or unexpected:
        raise RuntimeError(
            f"{type(net).__name__} without FFCM/CFFM: only FFCM/CFFM weights may be left out; "
            f"missing in the full network: {not_loaded}, unknown to the variant: {unexpected}"
        )
    reference = next((p for p in net.parameters() if p.is_floating_point()), None)
    if reference is not None:
        variant = variant.to(device=reference.device, dtype=reference.dtype)
    if _uses_channels_last(net):
        variant = variant.to(memory_format=torch.channels_last)
    variant.train(net.training)
    variant.requires_grad_(False)
    return variant


def measure_feedback_modules(
    net: Any,
    size: int,
    device: Any,
    warmup: int = 2,
    repeats: int = 20,
    slow_seconds: float | None = None,
    repeats_slow: int | None = None,
) -> dict[str, Any]:
    """Cost of FFCM+CFFM at ``size``: full vs switched-off network, plus per-module hook timings.

    Full and switched-off runs alternate so that load changes hit both alike; wall and CPU medians
    are reported (the CPU difference is the reliable one on a shared machine). Result keys
    ``without_*`` describe the network without FFCM+CFFM.
    """
    ffcm, cffm = feedback_module_names(net)
    without_modules = network_without_feedback_modules(net)
    image, points, new_clicks, gate = synthetic_network_input_on(size, device)

    def runner(model: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return model(image, points, new_clicks, gate, is_training=False)["instances"]

        return call

    first = time_calls(runner(net), device, max(1, warmup), 1, slow_seconds, repeats_slow)
    if slow_seconds is not None and repeats_slow is not None and first.wall[0] > slow_seconds:
        repeats = min(repeats, repeats_slow)
    time_calls(runner(without_modules), device, 1, 0)
    full = Timings([], [], 0)
    without = Timings([], [], 0)
    for _ in range(repeats):
        for model, bucket in ((net, full), (without_modules, without)):
            one = time_calls(runner(model), device, 0, 1)
            bucket.wall.extend(one.wall)
            bucket.cpu.extend(one.cpu)
    with module_timers(net, ffcm + cffm, device) as hooks:
        hooked = time_calls(runner(net), device, 0, repeats)

    record: dict[str, Any] = {"size": size, "device": str(device), "threads": torch.get_num_threads()}
    record["repeats"] = repeats
    for clock in ("wall", "cpu"):
        prefix = "" if clock == "wall" else "cpu_"
        full_ms = median_ms(getattr(full, clock))
        without_ms = median_ms(getattr(without, clock))
        hooked_ms = median_ms(getattr(hooked, clock))
        ffcm_ms = sum(median_ms(hooks[n][clock]) for n in ffcm)
        cffm_ms = sum(median_ms(hooks[n][clock]) for n in cffm)
        record.update(
            {
                f"{prefix}full_median_ms": full_ms,
                f"{prefix}without_median_ms": without_ms,
                f"{prefix}cost_ms": full_ms - without_ms,
                f"{prefix}cost_pct_of_full": 100.0 * (full_ms - without_ms) / full_ms,
                f"{prefix}hooked_full_median_ms": hooked_ms,
                f"{prefix}ffcm_hook_ms": ffcm_ms,
                f"{prefix}cffm_hook_ms": cffm_ms,
                f"{prefix}hook_pct_of_full": 100.0 * (ffcm_ms + cffm_ms) / hooked_ms,
            }
        )
    record["load_average"] = load_average()
    return record
