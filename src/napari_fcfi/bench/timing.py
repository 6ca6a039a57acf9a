"""Clocks and statistics: timing calls and sub-modules (wall and process CPU time), medians."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p95 (nearest rank), mean, min and max of ``seconds``, in milliseconds."""
    if not seconds:
        raise ValueError("summarize_ms: no timings to summarise")
    ms = sorted(1000.0 * s for s in seconds)
    rank = max(0, min(len(ms) - 1, int(np.ceil(0.95 * len(ms))) - 1))
    return {
        "median_ms": statistics.median(ms),
        "p95_ms": ms[rank],
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "n": len(ms),
    }


def median_ms(seconds: Sequence[float]) -> float:
    """Median of ``seconds`` in milliseconds."""
    return statistics.median(seconds) * 1000.0


def synchronize(device: Any) -> None:
    """Wait for queued CUDA work, so a clock read afterwards includes it (no-op on the CPU)."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


class Timings(NamedTuple):
    """Per timed call: wall seconds and process CPU seconds (all threads), plus warm-up count."""

    wall: list[float]
    cpu: list[float]
    warmup: int


def time_calls(
    call: Callable[[], Any],
    device: Any,
    warmup: int,
    repeats: int,
    slow_seconds: float | None = None,
    repeats_slow: int | None = None,
) -> Timings:
    """Run ``call`` ``warmup`` times, then time ``repeats`` calls (wall and CPU time).

    When the first warm-up call takes longer than ``slow_seconds``, only that one warm-up run is
    kept and ``repeats_slow`` calls are timed (keeps very slow configurations short). CPU time
    (``time.process_time``) hardly changes when other processes compete for the cores, so it is
    the better number on a loaded machine; with one thread it equals the wall time of an idle one.
    """
    done = 0
    for index in range(max(1, warmup)):
        start = time.perf_counter()
        call()
        synchronize(device)
        done += 1
        too_slow = slow_seconds is not None and time.perf_counter() - start > slow_seconds
        if index == 0 and too_slow and repeats_slow is not None:
            repeats = min(repeats, repeats_slow)
            break
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_start, start = time.process_time(), time.perf_counter()
        call()
        synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return Timings(wall, cpu, done)


@contextlib.contextmanager
def module_timers(
    net: torch.nn.Module, names: Sequence[str], device: Any
) -> Iterator[dict[str, dict[str, list[float]]]]:
    """Forward hooks recording wall and CPU seconds per call of each named sub-module.

    Yields ``{name: {"wall": [...], "cpu": [...]}}``, one entry per forward call; the name ``""``
    is the network itself.
    """
    timings: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in names}
    starts: dict[str, tuple[float, float]] = {}
    handles = []
    for name in names:
        module = net.get_submodule(name)

        def pre_hook(_module: Any, _inputs: Any, name: str = name) -> None:
            synchronize(device)
            starts[name] = (time.perf_counter(), time.process_time())

        def post_hook(_module: Any, _inputs: Any, _output: Any, name: str = name) -> None:
            synchronize(device)
            wall, cpu = starts.pop(name)
            timings[name]["wall"].append(time.perf_counter() - wall)
            timings[name]["cpu"].append(time.process_time() - cpu)

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    try:
        yield timings
    finally:
        for handle in handles:
            handle.remove()
