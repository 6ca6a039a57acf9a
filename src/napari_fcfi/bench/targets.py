"""The issue's performance goals and whether a results dict meets them."""

from __future__ import annotations

from typing import Any

#: Engine goals from the issues (engine adds < 10 %; an 8192^2 click costs <= 2x a 512^2 click).
ENGINE_OVERHEAD_TARGET = 0.10
LARGE_IMAGE_RATIO_TARGET = 2.0
#: Goal for the bundled model on the 2-core CPU at its working resolution (ms per click).
BUNDLED_CPU_TARGET_MS = 150.0
#: Goal for the official HRNet-18s at 400 px on a CUDA device (ms per click).
HRNET18S_CUDA_TARGET_MS = 10.0


def _engine_targets(engine: list[dict[str, Any]]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    worst = max(r["overhead_pct"] for r in engine if r["overhead_pct"] is not None)
    worst_cpu = max((r.get("cpu_overhead_pct") or 0.0) for r in engine)
    targets["engine_overhead_below_10pct"] = {
        "worst_pct": round(worst, 2),
        "worst_cpu_pct": round(worst_cpu, 2),
        "met": max(worst, worst_cpu) < 100 * ENGINE_OVERHEAD_TARGET,
    }
    by_size = {r["image_size"]: r for r in engine}
    if 512 in by_size and 8192 in by_size:
        ratio = by_size[8192]["total"]["median_ms"] / by_size[512]["total"]["median_ms"]
        cpu_ratio = by_size[8192]["cpu_total"]["median_ms"] / by_size[512]["cpu_total"]["median_ms"]
        targets["click_8192_at_most_2x_512"] = {
            "ratio": round(ratio, 2),
            "cpu_ratio": round(cpu_ratio, 2),
            "met": max(ratio, cpu_ratio) <= LARGE_IMAGE_RATIO_TARGET,
        }
    return targets


def evaluate_targets(results: dict[str, Any]) -> dict[str, Any]:
    """Which of the issue's targets the results meet (None where not measured)."""
    engine = results.get("engine") or []
    targets: dict[str, Any] = _engine_targets(engine) if engine else {}
    latency = results.get("latency", [])
    bundled = [
        r
        for r in latency
        if r["model"].startswith("default") and r["device"] == "cpu" and r["precision"] == "fp32"
    ]
    size = results.get("bundled_working_size")
    at_size = [r for r in bundled if r["size"] == size]
    if at_size:
        median = at_size[0]["median_ms"]
        cpu_median = at_size[0].get("cpu_median_ms")
        targets["bundled_cpu_at_most_150ms"] = {
            "size": size,
            "median_ms": round(median, 1),
            "cpu_median_ms": None if cpu_median is None else round(cpu_median, 1),
            "threads": at_size[0]["threads"],
            "met": median <= BUNDLED_CPU_TARGET_MS,
            "weights": results.get("bundled_weights"),
        }
    cuda = [
        r
        for r in latency
        if r["device"].startswith("cuda") and r["size"] == 400 and r["model"] == "hrnet18s-ocr48"
    ]
    if cuda:
        best = min(r["median_ms"] for r in cuda)
        targets["hrnet18s_400px_cuda_at_most_10ms"] = {
            "best_median_ms": round(best, 2),
            "met": best <= HRNET18S_CUDA_TARGET_MS,
        }
    else:
        targets["hrnet18s_400px_cuda_at_most_10ms"] = {"met": None, "reason": "no CUDA device measured"}
    return targets
