"""Engine overhead per click: the segmenter's own time against the network's, on uint16 images."""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

import torch

from napari_fcfi.bench.machine import load_average
from napari_fcfi.bench.memory import PeakRssSampler, release_free_memory
from napari_fcfi.bench.synthetic import engine_click_plan, synthetic_nuclei_image
from napari_fcfi.bench.timing import median_ms, module_timers, summarize_ms
from napari_fcfi.engine import InteractiveSegmenter


def measure_engine(
    net: Any,
    image_size: int,
    clicks_per_object: int = 5,
    objects: int = 4,
    preset: str = "microscopy",
    seed: int = 0,
) -> dict[str, Any]:
    """Engine time vs network time per click on a synthetic uint16 image.

    Wall times come from the segmenter's ``last_timing``; CPU times (robust on a loaded machine)
    from ``time.process_time`` around ``add_click`` and a forward hook on the network.
    """
    image, nuclei = synthetic_nuclei_image(image_size, seed=seed)
    plans = engine_click_plan(nuclei, clicks_per_object, objects)
    segmenter = InteractiveSegmenter(net, preset=preset)
    # One untimed click first: lazy allocations and first-call kernel selection.
    segmenter.set_image(image)
    segmenter.add_click(*plans[0][0])
    totals, networks, engines, runs, set_image_s = [], [], [], [], []
    first_total, later_total = [], []
    cpu_totals, cpu_networks = [], []
    release_free_memory()
    load_before = load_average()
    device = next(itertools.chain(net.parameters(), net.buffers()), torch.empty(0)).device
    with PeakRssSampler() as rss, module_timers(segmenter.network, [""], device) as hooks:
        for plan in plans:
            start = time.perf_counter()
            segmenter.set_image(image)
            set_image_s.append(time.perf_counter() - start)
            for index, (row, col, positive) in enumerate(plan):
                calls_before = len(hooks[""]["cpu"])
                cpu_start = time.process_time()
                segmenter.add_click(row, col, positive)
                cpu_totals.append(time.process_time() - cpu_start)
                cpu_networks.append(sum(hooks[""]["cpu"][calls_before:]))
                timing = segmenter.last_timing
                totals.append(timing["total_s"])
                networks.append(timing["network_s"])
                engines.append(timing["engine_s"])
                runs.append(timing["network_runs"])
                (first_total if index == 0 else later_total).append(timing["total_s"])
    engine_sum, network_sum = sum(engines), sum(networks)
    cpu_engine = [t - n for t, n in zip(cpu_totals, cpu_networks)]
    per_click_fraction = [e / n for e, n in zip(engines, networks) if n > 0]
    return {
        "image": f"{image_size}x{image_size} uint16",
        "image_size": image_size,
        "preset": preset,
        "input_size": int(segmenter.settings.input_size),
        "threads": torch.get_num_threads(),
        "clicks": len(totals),
        "network_runs": int(sum(runs)),
        "set_image_median_ms": median_ms(set_image_s),
        "total": summarize_ms(totals),
        "network": summarize_ms(networks),
        "engine": summarize_ms(engines),
        "first_click_total_median_ms": median_ms(first_total) if first_total else None,
        "later_click_total_median_ms": median_ms(later_total) if later_total else None,
        "overhead_pct": 100.0 * engine_sum / network_sum if network_sum > 0 else None,
        "overhead_pct_median_click": 100.0 * statistics.median(per_click_fraction)
        if per_click_fraction
        else None,
        "cpu_total": summarize_ms(cpu_totals),
        "cpu_network": summarize_ms(cpu_networks),
        "cpu_engine": summarize_ms(cpu_engine),
        "cpu_overhead_pct": 100.0 * sum(cpu_engine) / sum(cpu_networks) if sum(cpu_networks) > 0 else None,
        "rss_increase_mb": rss.increase_mb,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
