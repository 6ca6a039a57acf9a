"""``fcfi bench``: per-click latency, peak memory, FFCM+CFFM cost and engine overhead.

What is measured (every section can be switched off with ``--sections``):

* ``latency``: one network forward per click (the network call contract of
  ``docs/architecture.md``, later-click inputs: a previous mask, 2 positive and 1 negative click,
  gate 1) for every requested model at every input size (square ``S x S``), on the CPU (float32, and
  bfloat16 autocast on request) and, when CUDA is available, in float32, float16 and bfloat16
  autocast. Median / p95 over ``--repeats`` timed runs after ``--warmup`` runs. Peak memory: the
  process RSS (sampled every few ms by a background thread) minus the RSS just before the timed
  runs, and ``torch.cuda.max_memory_allocated`` on CUDA.
* ``modules``: the cost of FFCM+CFFM over the same backbone and head, measured twice: (a) the full
  network against a copy whose FFCM and CFFM are replaced by pass-throughs (difference of two
  end-to-end medians), (b) forward hooks timing the two modules inside the full network.
* ``engine``: :class:`napari_fcfi.engine.InteractiveSegmenter` (microscopy preset) on synthetic
  uint16 nucleus images of 512x512 and 8192x8192: per click, the engine's own time (reading and
  normalising the crop, resizing, pasting, post-processing) against the network time, from the
  segmenter's ``last_timing`` breakdown.

The end-to-end napari measurement (click event to preview layer updated) is a separate script,
``benchmarks/napari_e2e.py``, because it needs a display (``xvfb-run -a``).

Models (``--models``): ``default`` (the bundled weights; when the file is absent, the architecture
named by ``--bundled-preset`` with random weights), any name of
:data:`napari_fcfi.model.networks.NETWORK_PRESETS` (random weights; ``hrnet18s-ocr48`` is the
official HRNet-18s configuration), ``deeplab-r101`` (the official ResNet-101 DeepLabV3+
configuration, random weights), a registry name or a checkpoint path (via ``load_model``).
Random weights time exactly like trained ones: the work per pixel does not depend on the values.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

DEFAULT_MODELS = ("default", "hrnet18s-ocr48", "deeplab-r101")
DEFAULT_SIZES = (256, 400, 512, 700)
DEFAULT_BUNDLED_PRESET = "hrnet8-small-tiny"  # the architecture of the bundled model (docs/model_card.md)
SECTIONS = ("latency", "modules", "engine")
CUDA_PRECISIONS = ("fp32", "fp16", "bf16")
_AUTOCAST = {"fp16": "float16", "bf16": "bfloat16"}

#: Engine goals from the issues (engine adds < 10 %; an 8192^2 click costs <= 2x a 512^2 click).
ENGINE_OVERHEAD_TARGET = 0.10
LARGE_IMAGE_RATIO_TARGET = 2.0
#: Goal for the bundled model on the 2-core CPU at its working resolution (ms per click).
BUNDLED_CPU_TARGET_MS = 150.0


# ----------------------------------------------------------------------------------------------
# statistics and machine description


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


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    """Human CPU name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    """Machine, library versions, threads, date and load average (for the report header)."""
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "napari_fcfi": _version("napari-fcfi"),
        "napari": _version("napari"),
        "git_commit": _git_commit(),
        "cuda_available": bool(torch.cuda.is_available()),
        "load_average": load_average(),
        # Thread settings change CPU timings a lot on a shared machine (see docs/benchmarks.md).
        "thread_env": {
            name: os.environ[name]
            for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
            if name in os.environ
        },
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


# ----------------------------------------------------------------------------------------------
# memory


def current_rss_bytes() -> int:
    """Resident set size of this process."""
    import psutil

    return int(psutil.Process().memory_info().rss)


class PeakRssSampler:
    """Context manager sampling this process's RSS every ``interval_s`` in a background thread.

    ``peak_bytes`` is the highest value seen (including the value at entry and exit). Sampling
    cannot see a spike shorter than the interval; the network's activations live for a whole
    forward pass, so a few milliseconds are enough.
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        import psutil

        self._process = psutil.Process()
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakRssSampler:  # noqa: PYI034 - no typing_extensions dependency
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


# ----------------------------------------------------------------------------------------------
# models


def _bundled_weights_path() -> Path:
    from napari_fcfi.model.registry import BUNDLED_WEIGHTS

    return BUNDLED_WEIGHTS


def build_benchmark_model(
    spec: str, bundled_preset: str = DEFAULT_BUNDLED_PRESET
) -> tuple[Any, dict[str, Any]]:
    """Network (eval, no grad, CPU float32) and a description dict for a ``--models`` entry."""
    from napari_fcfi.model.networks import NETWORK_PRESETS, build_preset

    torch.manual_seed(0)  # random weights, but the same ones on every run
    info: dict[str, Any] = {"model": spec}
    if spec == "default":
        path = _bundled_weights_path()
        if path.is_file():
            from napari_fcfi.model import load_model

            net = load_model("default", device="cpu")
            info.update(weights="bundled", source=str(path))
        else:
            net = build_preset(bundled_preset)
            info.update(
                weights="random",
                source=f"preset {bundled_preset} (bundled weights absent: {path.name})",
                model=f"default[{bundled_preset}]",
            )
    elif spec in NETWORK_PRESETS:
        net = build_preset(spec)
        info.update(weights="random", source=f"preset {spec}")
    elif spec in ("deeplab-r101", "resnet101-deeplab"):
        from napari_fcfi.model.deeplab import FCFIDeepLab

        net = FCFIDeepLab(backbone="resnet101")
        info.update(weights="random", source="official ResNet-101 DeepLabV3+ config")
    else:
        from napari_fcfi.model import load_model

        try:
            net = load_model(spec, device="cpu")
        except FileNotFoundError as error:
            raise ValueError(
                f"--models entry {spec!r} is not 'default', 'deeplab-r101', a preset "
                f"({', '.join(sorted(NETWORK_PRESETS))}), a registry name or an existing file: {error}"
            ) from error
        info.update(weights="file", source=str(spec))
    net.eval()
    net.requires_grad_(False)
    config = dict(getattr(net, "config", {}) or {})
    info["arch"] = config.get("arch", type(net).__name__)
    info["config"] = config
    info["parameters"] = int(sum(p.numel() for p in net.parameters()))
    info["parameter_mb"] = round(sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20, 2)
    metadata = getattr(net, "fcfi_metadata", None)
    if isinstance(metadata, dict) and metadata.get("input_size") is not None:
        info["input_size"] = metadata["input_size"]
    return net, info


def working_size(net: Any, default: int = 256) -> int:
    """The engine's working size for ``net`` (microscopy preset; model metadata wins)."""
    from napari_fcfi.engine.settings import resolve_settings

    try:
        return int(resolve_settings(net).input_size)
    except Exception:  # noqa: BLE001 - odd metadata: fall back to the preset default
        return default


# ----------------------------------------------------------------------------------------------
# network inputs and timing


def click_sequence(size: int) -> list[tuple[float, float, bool]]:
    """Two positive clicks and one negative click inside a ``size x size`` input."""
    centre = size / 2
    return [
        (centre, centre, True),
        (centre + size * 0.08, centre - size * 0.05, True),
        (centre - size * 0.2, centre + size * 0.15, False),
    ]


def synthetic_network_input(size: int, seed: int = 0) -> tuple[Any, Any, Any, float]:
    """``(image, points, new_clicks, gate)`` of a later click on a ``size x size`` input (CPU float32).

    The image is smooth noise in [0, 1] plus a previous-mask disk; the points follow the contract:
    positives then negatives padded with ``(-1, -1, -1)``, third field the click index.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(4, size // 16), max(4, size // 16), generator=generator)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    rows = torch.arange(size, dtype=torch.float32).view(size, 1)
    cols = torch.arange(size, dtype=torch.float32).view(1, size)
    disk = (((rows - size / 2) ** 2 + (cols - size / 2) ** 2) < (0.15 * size) ** 2).float()
    image = torch.cat([rgb, disk.view(1, 1, size, size)], dim=1).contiguous()
    clicks = click_sequence(size)
    positives = [(r, c, float(i)) for i, (r, c, p) in enumerate(clicks) if p]
    negatives = [(r, c, float(i)) for i, (r, c, p) in enumerate(clicks) if not p]
    n = max(len(positives), len(negatives))
    pad = [(-1.0, -1.0, -1.0)]
    rows_list = positives + pad * (n - len(positives)) + negatives + pad * (n - len(negatives))
    points = torch.tensor([rows_list], dtype=torch.float32)
    newest = clicks[-1]
    new_clicks = torch.tensor([[[int(newest[0]), int(newest[1]), int(newest[2])]]], dtype=torch.long)
    return image, points, new_clicks, 1.0


def _synchronize(device: Any) -> None:
    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _precision_context(device: Any, precision: str) -> Iterator[None]:
    if precision == "fp32":
        yield
        return
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    with torch.autocast(device_type=device_type, dtype=getattr(torch, _AUTOCAST[precision])):
        yield


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
        _synchronize(device)
        done += 1
        too_slow = slow_seconds is not None and time.perf_counter() - start > slow_seconds
        if index == 0 and too_slow and repeats_slow is not None:
            repeats = min(repeats, repeats_slow)
            break
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_start, start = time.process_time(), time.perf_counter()
        call()
        _synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return Timings(wall, cpu, done)


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc), so RSS increases of one run are not hidden
    by memory an earlier, larger run left in the allocator."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


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
    image, points, new_clicks, gate = synthetic_network_input(size)
    image, points, new_clicks = image.to(device), points.to(device), new_clicks.to(device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    is_cuda = str(device).startswith("cuda")

    def call() -> Any:
        with torch.inference_mode(), _precision_context(device, precision):
            return net(image, points, new_clicks, gate, is_training=False)["instances"]

    if is_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    release_free_memory()
    load_before = load_average()
    with PeakRssSampler() as rss:
        timings = time_calls(call, device, warmup, repeats, slow_seconds, repeats_slow)
    cpu = summarize_ms(timings.cpu)
    record: dict[str, Any] = {
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
        "rss_increase_mb": round((rss.peak_bytes - rss.start_bytes) / 2**20, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if is_cuda else None,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    return record


# ----------------------------------------------------------------------------------------------
# FFCM + CFFM cost


def _feedback_module_names(net: Any) -> tuple[list[str], list[str]]:
    from napari_fcfi.model.fcfi_modules import CollaborativeFeedbackFusion, FocusedFeedbackCorrection

    ffcm = [name for name, m in net.named_modules() if isinstance(m, FocusedFeedbackCorrection)]
    cffm = [name for name, m in net.named_modules() if isinstance(m, CollaborativeFeedbackFusion)]
    return ffcm, cffm


def strip_feedback_modules(net: Any) -> Any:
    """A deep copy of ``net`` whose FFCM and CFFM are pass-throughs (same backbone and head).

    Raises ValueError when the network has neither module.
    """
    from napari_fcfi.model.fcfi_modules import CorrectionOff, FusionOff

    ffcm, cffm = _feedback_module_names(net)
    if not ffcm and not cffm:
        raise ValueError(f"{type(net).__name__} has no FFCM/CFFM module to strip")
    stripped = copy.deepcopy(net)
    for names, replacement in ((ffcm, CorrectionOff), (cffm, FusionOff)):
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = stripped.get_submodule(parent_name) if parent_name else stripped
            setattr(parent, child, replacement())
    return stripped


@contextlib.contextmanager
def module_timers(net: Any, names: Sequence[str], device: Any) -> Iterator[dict[str, dict[str, list[float]]]]:
    """Forward hooks recording wall and CPU seconds per call of each named sub-module.

    Yields ``{name: {"wall": [...], "cpu": [...]}}``, one entry per forward call.
    """
    timings: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in names}
    starts: dict[str, tuple[float, float]] = {}
    handles = []
    for name in names:
        module = net.get_submodule(name)

        def pre_hook(_module: Any, _inputs: Any, name: str = name) -> None:
            _synchronize(device)
            starts[name] = (time.perf_counter(), time.process_time())

        def post_hook(_module: Any, _inputs: Any, _output: Any, name: str = name) -> None:
            _synchronize(device)
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


def measure_feedback_modules(
    net: Any,
    size: int,
    device: Any,
    warmup: int = 2,
    repeats: int = 20,
    slow_seconds: float | None = None,
    repeats_slow: int | None = None,
) -> dict[str, Any]:
    """Cost of FFCM+CFFM at ``size``: full vs stripped network, plus per-module hook timings.

    Full and stripped runs alternate so that load changes hit both alike; wall and CPU medians
    are reported (the CPU difference is the reliable one on a shared machine).
    """
    ffcm, cffm = _feedback_module_names(net)
    stripped = strip_feedback_modules(net).to(device)
    image, points, new_clicks, gate = synthetic_network_input(size)
    image, points, new_clicks = image.to(device), points.to(device), new_clicks.to(device)

    def runner(model: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return model(image, points, new_clicks, gate, is_training=False)["instances"]

        return call

    first = time_calls(runner(net), device, max(1, warmup), 1, slow_seconds, repeats_slow)
    if slow_seconds is not None and repeats_slow is not None and first.wall[0] > slow_seconds:
        repeats = min(repeats, repeats_slow)
    time_calls(runner(stripped), device, 1, 0)
    full = Timings([], [], 0)
    without = Timings([], [], 0)
    for _ in range(repeats):
        for model, bucket in ((net, full), (stripped, without)):
            one = time_calls(runner(model), device, 0, 1)
            bucket.wall.extend(one.wall)
            bucket.cpu.extend(one.cpu)
    with module_timers(net, ffcm + cffm, device) as hooks:
        hooked = time_calls(runner(net), device, 0, repeats)

    def median_ms(values: Sequence[float]) -> float:
        return statistics.median(values) * 1000.0

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


# ----------------------------------------------------------------------------------------------
# engine overhead


def synthetic_nuclei_image(
    size: int, seed: int = 0, count: int | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A ``size x size`` uint16 image of bright elliptic "nuclei" on a noisy background.

    Returns the image and the nuclei ``(row, col, radius)``. Built tile by tile in place so an
    8192x8192 image needs no float copy of the whole image.
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(180, 260, size=(size, size), dtype=np.uint16)
    # About 4-5 % of the pixels are nuclear at every size, so the percentile normalisation sees the
    # same intensity distribution on a 512^2 and an 8192^2 image.
    count = count if count is not None else max(4, size * size // 16384)
    nuclei = []
    margin = 40
    for _ in range(count):
        radius = int(rng.integers(10, 24))
        row = int(rng.integers(margin, size - margin))
        col = int(rng.integers(margin, size - margin))
        r0, r1, c0, c1 = row - radius, row + radius + 1, col - radius, col + radius + 1
        yy, xx = np.ogrid[r0:r1, c0:c1]
        inside = ((yy - row) / radius) ** 2 + ((xx - col) / (radius * 0.8)) ** 2 <= 1.0
        tile = image[r0:r1, c0:c1]
        tile[inside] = np.maximum(
            tile[inside], rng.integers(1800, 2400, size=int(inside.sum()), dtype=np.uint16)
        )
        nuclei.append((row, col, radius))
    return image, nuclei


def engine_click_plan(
    nuclei: Sequence[tuple[int, int, int]], clicks_per_object: int, objects: int
) -> list[list[tuple[int, int, bool]]]:
    """Per object: a centre click, then alternating clicks just inside / just outside the border."""
    plans = []
    for row, col, radius in list(nuclei)[:objects]:
        plan = [(row, col, True)]
        for k in range(1, clicks_per_object):
            angle = 2.0 * np.pi * k / max(1, clicks_per_object - 1)
            inside = k % 2 == 1
            distance = radius * (0.5 if inside else 1.6)
            plan.append((int(row + distance * np.sin(angle)), int(col + distance * np.cos(angle)), inside))
        plans.append(plan)
    return plans


class ImageDrivenOutputs(nn.Module):
    """Runs the wrapped network (its full cost), then replaces its prediction by a plausible one.

    A network with random weights predicts noise, which makes the engine's zoom-in windows grow to
    the whole image; that is not what a click on a nucleus costs. This stand-in keeps every
    millisecond of the network but predicts "bright pixels" (normalised intensity > 0.6) as the
    object, like a trained model on :func:`synthetic_nuclei_image`; the engine then works on
    nucleus-sized windows. Used by the engine and napari benchmarks for random-weight models.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.config = dict(getattr(net, "config", {}) or {})
        metadata = getattr(net, "fcfi_metadata", None)
        if isinstance(metadata, dict):
            self.fcfi_metadata = dict(metadata)
        self.train(net.training)  # a fresh Module is in training mode; the engine would toggle it per click

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        new_clicks: torch.Tensor,
        gate: float,
        is_training: bool = False,
    ) -> dict[str, torch.Tensor]:
        outputs = dict(self.net(image, points, new_clicks, gate, is_training=is_training))
        brightness = image[:, :3].float().mean(dim=1, keepdim=True)
        logits = torch.where(brightness > 0.6, 6.0, -6.0).to(outputs["instances"].dtype)
        outputs["instances"] = logits
        if "instances_aux" in outputs:
            outputs["instances_aux"] = logits
        for key in ("updated_feedback1", "updated_feedback2"):
            if key in outputs:
                size = tuple(outputs[key].shape[-2:])
                outputs[key] = torch.nn.functional.interpolate(
                    torch.sigmoid(logits), size=size, mode="bilinear"
                )
        return outputs


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
    from napari_fcfi.engine import InteractiveSegmenter

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
    with PeakRssSampler() as rss, module_timers(net, [""], device) as hooks:
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
        "set_image_median_ms": statistics.median(set_image_s) * 1000,
        "total": summarize_ms(totals),
        "network": summarize_ms(networks),
        "engine": summarize_ms(engines),
        "first_click_total_median_ms": statistics.median(first_total) * 1000 if first_total else None,
        "later_click_total_median_ms": statistics.median(later_total) * 1000 if later_total else None,
        "overhead_pct": 100.0 * engine_sum / network_sum if network_sum > 0 else None,
        "overhead_pct_median_click": 100.0 * statistics.median(per_click_fraction)
        if per_click_fraction
        else None,
        "cpu_total": summarize_ms(cpu_totals),
        "cpu_network": summarize_ms(cpu_networks),
        "cpu_engine": summarize_ms(cpu_engine),
        "cpu_overhead_pct": 100.0 * sum(cpu_engine) / sum(cpu_networks) if sum(cpu_networks) > 0 else None,
        "rss_increase_mb": round((rss.peak_bytes - rss.start_bytes) / 2**20, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


# ----------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fcfi bench``."""
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        metavar="MODEL",
        help="models to time: 'default' (bundled; its architecture with random weights when the file is "
        "absent), a preset name (e.g. hrnet18s-ocr48, hrnet12-small-cpu), 'deeplab-r101', a registry name "
        f"or a checkpoint path (default: {' '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=list(DEFAULT_SIZES),
        metavar="PX",
        help="square input sizes in pixels (default: 256 400 512 700)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed clicks per configuration (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed clicks first (default 3)")
    parser.add_argument(
        "--repeats-large",
        type=int,
        default=None,
        metavar="N",
        help="timed clicks for slow configurations (first warm-up click slower than --slow-seconds); "
        "default: same as --repeats",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=2.0,
        help="a configuration is slow when one click takes longer than this (default 2.0)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's default for this machine)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        default=["auto"],
        choices=["auto", "cpu", "cuda"],
        help="'auto' = the CPU plus CUDA when available (default)",
    )
    parser.add_argument(
        "--cuda-precisions",
        nargs="+",
        default=list(CUDA_PRECISIONS),
        choices=CUDA_PRECISIONS,
        help="CUDA precisions (fp16/bf16 via autocast; default: all three)",
    )
    parser.add_argument(
        "--cpu-precisions",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16"],
        help="CPU precisions (default fp32; bf16 autocast on request)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="run the networks in channels_last layout"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=SECTIONS,
        help="what to measure (default: all)",
    )
    parser.add_argument(
        "--module-sizes",
        nargs="+",
        type=int,
        default=[400],
        metavar="PX",
        help="input sizes for the FFCM+CFFM cost (default 400)",
    )
    parser.add_argument(
        "--module-models",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="models for the FFCM+CFFM cost (default: the --models list)",
    )
    parser.add_argument(
        "--engine-model", default="default", help="model for the engine overhead (default: default)"
    )
    parser.add_argument(
        "--engine-sizes",
        nargs="+",
        type=int,
        default=[512, 8192],
        metavar="PX",
        help="synthetic uint16 image sizes for the engine overhead (default: 512 8192)",
    )
    parser.add_argument(
        "--engine-outputs",
        choices=["auto", "model", "image"],
        default="auto",
        help="engine benchmark predictions: 'model' = the network's own, 'image' = the network runs but "
        "its prediction is replaced by the bright nucleus under the click (ImageDrivenOutputs), 'auto' = "
        "'image' for random weights, else 'model' (default)",
    )
    parser.add_argument(
        "--engine-device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="device of the network in the engine benchmark (default cpu)",
    )
    parser.add_argument("--engine-objects", type=int, default=4, help="objects per image (default 4)")
    parser.add_argument("--engine-clicks", type=int, default=5, help="clicks per object (default 5)")
    parser.add_argument(
        "--bundled-preset",
        default=DEFAULT_BUNDLED_PRESET,
        help=f"architecture timed for 'default' when the bundled weights are absent "
        f"(default {DEFAULT_BUNDLED_PRESET})",
    )
    parser.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown here")


def _resolve_devices(requested: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    devices: list[str] = []
    not_measured: list[dict[str, str]] = []
    for name in requested:
        wanted = ["cpu", "cuda"] if name == "auto" else [name]
        for device in wanted:
            if device == "cuda" and not torch.cuda.is_available():
                reason = f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
                if not any(n["device"] == "cuda" for n in not_measured):
                    not_measured.append({"device": "cuda", "reason": reason})
                continue
            if device not in devices:
                devices.append(device)
    return devices, not_measured


def _validate(args: argparse.Namespace) -> None:
    for name in ("repeats", "warmup"):
        if getattr(args, name) < (1 if name == "repeats" else 0):
            raise ValueError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.repeats_large is not None and args.repeats_large < 1:
        raise ValueError(f"--repeats-large must be >= 1, got {args.repeats_large}")
    if getattr(args, "engine_device", "cpu") == "cuda" and not torch.cuda.is_available():
        raise ValueError("--engine-device cuda: torch cannot use CUDA here")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    for option in ("sizes", "module_sizes", "engine_sizes"):
        bad = [s for s in getattr(args, option) if s < 32]
        if bad:
            raise ValueError(f"--{option.replace('_', '-')}: sizes must be >= 32 pixels, got {bad}")


def _print(line: str = "") -> None:
    print(line, flush=True)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_tables(results: dict[str, Any]) -> str:
    """Plain-text tables of a results dict (wall-clock medians, plus CPU-time medians)."""
    lines: list[str] = []
    machine = results.get("machine", {})
    lines.append(
        f"machine: {machine.get('cpu')} ({machine.get('logical_cpus')} logical CPUs), torch {machine.get('torch')}, "
        f"threads {machine.get('torch_threads')}, load average {machine.get('load_average')}"
    )
    if results.get("latency"):
        lines.append("")
        lines.append("per-click network latency (ms; wall median/p95, CPU = process CPU time median)")
        lines.append(
            f"{'model':<28} {'device':<6} {'prec':<5} {'size':>5} {'median':>9} {'p95':>9} {'CPU':>9} {'n':>4} "
            f"{'RSS+MB':>8} {'CUDA MB':>8} {'load1':>6}"
        )
        for r in results["latency"]:
            load = (r.get("load_average_before") or [None])[0]
            lines.append(
                f"{r['model']:<28} {r['device']:<6} {r['precision']:<5} {r['size']:>5} {r['median_ms']:>9.1f} "
                f"{r['p95_ms']:>9.1f} {_fmt(r.get('cpu_median_ms')):>9} {r['n']:>4} {_fmt(r['rss_increase_mb']):>8} "
                f"{_fmt(r['cuda_peak_mb']):>8} {_fmt(load, 2):>6}"
            )
    for item in results.get("not_measured", []):
        lines.append(f"not measured: {item['device']}: {item['reason']}")
    if results.get("feedback_modules"):
        lines.append("")
        lines.append("FFCM+CFFM cost over the same backbone and head (ms; wall / CPU time medians)")
        lines.append(
            f"{'model':<28} {'size':>5} {'full':>15} {'without':>15} {'cost %':>13} "
            f"{'FFCM hook':>13} {'CFFM hook':>13} {'hook %':>11}"
        )
        for r in results["feedback_modules"]:

            def pair(key: str, digits: int = 1, r: dict[str, Any] = r) -> str:
                return f"{_fmt(r.get(key), digits)}/{_fmt(r.get('cpu_' + key), digits)}"

            lines.append(
                f"{r['model']:<28} {r['size']:>5} {pair('full_median_ms'):>15} {pair('without_median_ms'):>15} "
                f"{pair('cost_pct_of_full'):>13} {pair('ffcm_hook_ms'):>13} {pair('cffm_hook_ms'):>13} "
                f"{pair('hook_pct_of_full'):>11}"
            )
    if results.get("engine"):
        lines.append("")
        lines.append("engine overhead per click, microscopy preset (ms, medians; wall / CPU time)")
        lines.append(
            f"{'model':<28} {'image':<18} {'clicks':>6} {'total':>15} {'network':>15} {'engine':>13} "
            f"{'engine %':>11} {'set_image':>9}"
        )
        for r in results["engine"]:

            def both(key: str, r: dict[str, Any] = r) -> str:
                cpu = r.get("cpu_" + key)
                return f"{r[key]['median_ms']:.1f}/{_fmt(cpu['median_ms'] if cpu else None)}"

            lines.append(
                f"{r['model']:<28} {r['image']:<18} {r['clicks']:>6} {both('total'):>15} {both('network'):>15} "
                f"{both('engine'):>13} {_fmt(r['overhead_pct']) + '/' + _fmt(r.get('cpu_overhead_pct')):>11} "
                f"{r['set_image_median_ms']:>9.1f}"
            )
    if results.get("targets"):
        lines.append("")
        lines.append("targets")
        for name, target in results["targets"].items():
            lines.append(f"  {name}: {target}")
    return "\n".join(lines)


def format_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of a results dict (what ``docs/benchmarks.md`` shows)."""
    machine = results.get("machine", {})
    out = [
        (
            f"Machine: {machine.get('cpu')}, {machine.get('logical_cpus')} logical CPUs; torch {machine.get('torch')}, "
            f"{machine.get('torch_threads')} torch thread(s); Python {machine.get('python')}; napari-fcfi "
            f"{machine.get('napari_fcfi')} (git {machine.get('git_commit')}); {machine.get('date_utc')}; "
            f"load average at start {machine.get('load_average')}, at end {machine.get('load_average_end')}."
        ),
        "",
    ]
    if results.get("command"):
        out += [f"Command: `{results['command']}`", ""]
    if results.get("latency"):
        out += [
            "| model | weights | device | precision | input | median ms | p95 ms | CPU ms | n | RSS + MB | CUDA MB |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["latency"]:
            out.append(
                f"| {r['model']} | {r['weights']} | {r['device']} | {r['precision']} | {r['size']} | "
                f"{r['median_ms']:.0f} | {r['p95_ms']:.0f} | {_fmt(r.get('cpu_median_ms'), 0)} | {r['n']} | "
                f"{_fmt(r['rss_increase_mb'], 0)} | {_fmt(r['cuda_peak_mb'], 0)} |"
            )
        out.append("")
    for item in results.get("not_measured", []):
        out += [f"Not measured: **{item['device']}** ({item['reason']}).", ""]
    if results.get("feedback_modules"):
        out += [
            (
                "| model | input | full ms (wall / CPU) | without FFCM+CFFM | cost % (wall / CPU) "
                "| FFCM hook ms (CPU) | CFFM hook ms (CPU) | hooks % of full (CPU) |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["feedback_modules"]:
            out.append(
                f"| {r['model']} | {r['size']} | {r['full_median_ms']:.0f} / {_fmt(r.get('cpu_full_median_ms'), 0)} | "
                f"{r['without_median_ms']:.0f} / {_fmt(r.get('cpu_without_median_ms'), 0)} | "
                f"{r['cost_pct_of_full']:.1f} / {_fmt(r.get('cpu_cost_pct_of_full'))} | "
                f"{_fmt(r.get('cpu_ffcm_hook_ms'))} | {_fmt(r.get('cpu_cffm_hook_ms'))} | "
                f"{_fmt(r.get('cpu_hook_pct_of_full'))} |"
            )
        out.append("")
    if results.get("engine"):
        out += [
            (
                "| model | image | clicks | network runs | total ms (wall / CPU) | network ms (wall / CPU) "
                "| engine ms (wall / CPU) | engine % of network (wall / CPU) | set_image ms |"
            ),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["engine"]:

            def both(key: str, r: dict[str, Any] = r) -> str:
                cpu = r.get("cpu_" + key)
                return f"{r[key]['median_ms']:.0f} / {_fmt(cpu['median_ms'] if cpu else None, 0)}"

            out.append(
                f"| {r['model']} | {r['image']} | {r['clicks']} | {r['network_runs']} | {both('total')} | "
                f"{both('network')} | {both('engine')} | {_fmt(r['overhead_pct'])} / "
                f"{_fmt(r.get('cpu_overhead_pct'))} | {r['set_image_median_ms']:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def evaluate_targets(results: dict[str, Any]) -> dict[str, Any]:
    """Which of the issue's targets the results meet (None where not measured)."""
    targets: dict[str, Any] = {}
    engine = results.get("engine") or []
    if engine:
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
    bundled = [
        r
        for r in results.get("latency", [])
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
        for r in results.get("latency", [])
        if r["device"].startswith("cuda") and r["size"] == 400 and r["model"] == "hrnet18s-ocr48"
    ]
    if cuda:
        best = min(r["median_ms"] for r in cuda)
        targets["hrnet18s_400px_cuda_at_most_10ms"] = {"best_median_ms": round(best, 2), "met": best <= 10.0}
    else:
        targets["hrnet18s_400px_cuda_at_most_10ms"] = {"met": None, "reason": "no CUDA device measured"}
    return targets


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fcfi bench``."""
    try:
        _validate(args)
    except ValueError as error:
        print(f"fcfi bench: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    repeats_large = args.repeats_large if args.repeats_large is not None else args.repeats
    devices, not_measured = _resolve_devices(args.devices)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "command": "fcfi bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")
        },
        "baseline_rss_mb": round(current_rss_bytes() / 2**20, 1),
        "models": {},
        "latency": [],
        "not_measured": not_measured,
        "feedback_modules": [],
        "engine": [],
    }
    cache: dict[str, tuple[Any, dict[str, Any]]] = {}

    def get_model(spec: str) -> tuple[Any, dict[str, Any]]:
        if spec not in cache:
            cache.clear()  # one model in memory at a time keeps the RSS numbers comparable
            cache[spec] = build_benchmark_model(spec, args.bundled_preset)
            info = cache[spec][1]
            results["models"][info["model"]] = {k: v for k, v in info.items() if k != "model"}
            if spec == "default":
                results["bundled_weights"] = info["weights"]
                results["bundled_working_size"] = working_size(cache[spec][0])
        return cache[spec]

    try:
        if "latency" in args.sections:
            for spec in args.models:
                net, info = get_model(spec)
                for device in devices:
                    precisions = args.cuda_precisions if device == "cuda" else args.cpu_precisions
                    net = net.to(device)
                    if args.channels_last:
                        net = net.to(memory_format=torch.channels_last)
                    for precision in precisions:
                        for size in args.sizes:
                            record = measure_forward(
                                net,
                                size,
                                torch.device(device),
                                precision,
                                args.warmup,
                                args.repeats,
                                args.slow_seconds,
                                repeats_large,
                                args.channels_last,
                            )
                            record = {
                                "model": info["model"],
                                "arch": info["arch"],
                                "weights": info["weights"],
                                **record,
                            }
                            results["latency"].append(record)
                            _print(
                                f"latency {info['model']:<26} {device:<5} {precision:<5} {size:>4}px  "
                                f"median {record['median_ms']:8.1f} ms  p95 {record['p95_ms']:8.1f} ms  "
                                f"n={record['n']:<3} RSS +{record['rss_increase_mb']:.0f} MB  load {record['load_average_before']}"
                            )
                    cache[spec] = (net.to("cpu"), info)
        if "modules" in args.sections:
            for spec in args.module_models or args.models:
                net, info = get_model(spec)
                for device in devices:
                    net = net.to(device)
                    for size in args.module_sizes:
                        record = measure_feedback_modules(
                            net,
                            size,
                            torch.device(device),
                            min(args.warmup, 2),
                            args.repeats,
                            args.slow_seconds,
                            repeats_large,
                        )
                        results["feedback_modules"].append({"model": info["model"], **record})
                        _print(
                            f"FFCM+CFFM {info['model']:<24} {device:<5} {size:>4}px  full {record['full_median_ms']:.1f} ms"
                            f"  without {record['without_median_ms']:.1f} ms  cost {record['cost_pct_of_full']:.1f} %"
                            f"  (hooks: FFCM {record['ffcm_hook_ms']:.1f} ms, CFFM {record['cffm_hook_ms']:.1f} ms)"
                        )
                    cache[spec] = (net.to("cpu"), info)
        if "engine" in args.sections:
            net, info = get_model(args.engine_model)
            outputs = args.engine_outputs
            if outputs == "auto":
                outputs = "image" if info["weights"] == "random" else "model"
            engine_net = (ImageDrivenOutputs(net) if outputs == "image" else net).to(args.engine_device)
            for size in args.engine_sizes:
                record = measure_engine(engine_net, size, args.engine_clicks, args.engine_objects)
                results["engine"].append(
                    {"model": info["model"], "outputs": outputs, "device": args.engine_device, **record}
                )
                _print(
                    f"engine {info['model']:<24} {record['image']:<17} total {record['total']['median_ms']:.1f} ms  "
                    f"network {record['network']['median_ms']:.1f} ms  engine {record['engine']['median_ms']:.1f} ms  "
                    f"overhead {_fmt(record['overhead_pct'])} %"
                )
            cache[args.engine_model] = (net.to("cpu"), info)
    except ValueError as error:
        print(f"fcfi bench: {error}", file=sys.stderr)
        return 2
    results["machine"]["load_average_end"] = load_average()
    results["targets"] = evaluate_targets(results)
    _print()
    _print(format_tables(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        _print(f"\nwrote {args.out}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_markdown(results) + "\n")
        _print(f"wrote {args.markdown}")
    return 0


__all__ = [
    "ImageDrivenOutputs",
    "add_arguments",
    "build_benchmark_model",
    "evaluate_targets",
    "format_markdown",
    "format_tables",
    "machine_info",
    "measure_engine",
    "measure_feedback_modules",
    "measure_forward",
    "run",
    "strip_feedback_modules",
    "summarize_ms",
    "synthetic_network_input",
    "synthetic_nuclei_image",
]
