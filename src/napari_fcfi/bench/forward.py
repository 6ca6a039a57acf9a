"""Per-click network latency and peak memory: one forward of a later click at ``S x S``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from napari_fcfi.bench.machine import load_average
from napari_fcfi.bench.memory import PeakRssSampler, release_free_memory
from napari_fcfi.bench.synthetic import synthetic_network_input_on
from napari_fcfi.bench.timing import summarize_ms, time_calls

CUDA_PRECISIONS = ("fp32", "fp16", "bf16")
CPU_PRECISIONS = ("fp32", "bf16")
#: Reduced precisions run under autocast (the weights stay float32).
AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@contextlib.contextmanager
def precision_context(device: Any, precision: str) -> Iterator[None]:
    """Autocast to ``precision`` on ``device``'s type; nothing for ``fp32``."""
    if precision == "fp32":
        yield
        return
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    with torch.autocast(device_type=device_type, dtype=AUTOCAST_DTYPES[precision]):
        yield


def measure_forward(
    net: Any,
    size: int,
    device: Any,
    precision: str = "fp32",
    warmup: int = 3,
    repeats: int = 20,
    slow_seconds: float | None = None,
    repeats_slow: int | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Latency and peak memory of one network forward at ``size x size`` (later-click input)."""
    image, points, new_clicks, gate = synthetic_network_input_on(size, device, channels_last)
    is_cuda = str(device).startswith("cuda")

    def call() -> Any:
        with torch.inference_mode(), precision_context(device, precision):
            return net(image, points, new_clicks, gate, is_training=False)["instances"]

    if is_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    release_free_memory()
    load_before = load_average()
    with PeakRssSampler() as rss:
        timings = time_calls(call, device, warmup, repeats, slow_seconds, repeats_slow)
    cpu = summarize_ms(timings.cpu)
    return {
        "size": size,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        "warmup": timings.warmup,
        **summarize_ms(timings.wall),
        "cpu_median_ms": cpu["median_ms"],
        "cpu_p95_ms": cpu["p95_ms"],
        "rss_peak_mb": round(rss.peak_bytes / 2**20, 1),
        "rss_increase_mb": rss.increase_mb,
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if is_cuda else None,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
