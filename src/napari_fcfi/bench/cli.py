"""``fcfi bench`` command line: ``add_arguments`` and ``run`` (see :mod:`napari_fcfi.bench`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from napari_fcfi.bench.engine_overhead import measure_engine
from napari_fcfi.bench.feedback_modules import measure_feedback_modules
from napari_fcfi.bench.forward import CPU_PRECISIONS, CUDA_PRECISIONS, measure_forward
from napari_fcfi.bench.image_driven_outputs import ImageDrivenOutputs
from napari_fcfi.bench.machine import load_average, machine_info
from napari_fcfi.bench.memory import current_rss_bytes
from napari_fcfi.bench.models import DEFAULT_BUNDLED_PRESET, build_benchmark_model, working_size
from napari_fcfi.bench.report import format_cell, format_markdown, format_tables
from napari_fcfi.bench.targets import evaluate_targets

DEFAULT_MODELS = ("default", "hrnet18s-ocr48", "deeplab-r101")
DEFAULT_SIZES = (256, 400, 512, 700)
SECTIONS = ("latency", "modules", "engine")


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
        choices=CPU_PRECISIONS,
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


def resolve_devices(requested: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """``--devices`` as device names to measure, plus why a requested device is not measured."""
    devices: list[str] = []
    not_measured: list[dict[str, str]] = []
    for name in requested:
        wanted = ["cpu", "cuda"] if name == "auto" else [name]
        for device in wanted:
            if device == "cuda" and not torch.cuda.is_available():
                reason = (
                    f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                    f"CUDA build: {torch.version.cuda or 'no'})"
                )
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
    print(line, flush=True)  # flushed: long runs are watched live, often through a pipe


class _ModelCache:
    """The benchmark models, built on first use and described in ``results["models"]``.

    Only one model stays in memory at a time, which keeps the RSS numbers comparable.
    """

    def __init__(self, bundled_preset: str, results: dict[str, Any]) -> None:
        self.bundled_preset = bundled_preset
        self.results = results
        self._entries: dict[str, tuple[Any, dict[str, Any]]] = {}

    def get(self, spec: str) -> tuple[Any, dict[str, Any]]:
        if spec not in self._entries:
            self._entries.clear()
            net, info = build_benchmark_model(spec, self.bundled_preset)
            self._entries[spec] = (net, info)
            self.results["models"][info["model"]] = {k: v for k, v in info.items() if k != "model"}
            if spec == "default":
                self.results["bundled_weights"] = info["weights"]
                self.results["bundled_working_size"] = working_size(net)
        return self._entries[spec]

    def back_to_cpu(self, spec: str, net: Any) -> None:
        """Keep ``net`` (moved back to the CPU) as the cached model of ``spec``."""
        self._entries[spec] = (net.to("cpu"), self._entries[spec][1])


def _repeats_for_slow_configurations(args: argparse.Namespace) -> int:
    return args.repeats_large if args.repeats_large is not None else args.repeats


def _run_latency(
    args: argparse.Namespace, devices: list[str], models: _ModelCache, results: dict[str, Any]
) -> None:
    for spec in args.models:
        net, info = models.get(spec)
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
                        _repeats_for_slow_configurations(args),
                        args.channels_last,
                    )
                    described = {"model": info["model"], "arch": info["arch"], "weights": info["weights"]}
                    record = {**described, **record}
                    results["latency"].append(record)
                    _print(
                        f"latency {info['model']:<26} {device:<5} {precision:<5} {size:>4}px  "
                        f"median {record['median_ms']:8.1f} ms  p95 {record['p95_ms']:8.1f} ms  "
                        f"n={record['n']:<3} RSS +{record['rss_increase_mb']:.0f} MB  "
                        f"load {record['load_average_before']}"
                    )
            models.back_to_cpu(spec, net)


def _run_feedback_modules(
    args: argparse.Namespace, devices: list[str], models: _ModelCache, results: dict[str, Any]
) -> None:
    for spec in args.module_models or args.models:
        net, info = models.get(spec)
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
                    _repeats_for_slow_configurations(args),
                )
                results["feedback_modules"].append({"model": info["model"], **record})
                _print(
                    f"FFCM+CFFM {info['model']:<24} {device:<5} {size:>4}px  "
                    f"full {record['full_median_ms']:.1f} ms"
                    f"  without {record['without_median_ms']:.1f} ms  cost {record['cost_pct_of_full']:.1f} %"
                    f"  (hooks: FFCM {record['ffcm_hook_ms']:.1f} ms, CFFM {record['cffm_hook_ms']:.1f} ms)"
                )
            models.back_to_cpu(spec, net)


def _run_engine(args: argparse.Namespace, models: _ModelCache, results: dict[str, Any]) -> None:
    net, info = models.get(args.engine_model)
    outputs = args.engine_outputs
    if outputs == "auto":
        outputs = "image" if info["weights"] == "random" else "model"
    engine_net = (ImageDrivenOutputs(net) if outputs == "image" else net).to(args.engine_device)
    for size in args.engine_sizes:
        record = measure_engine(engine_net, size, args.engine_clicks, args.engine_objects)
        described = {"model": info["model"], "outputs": outputs, "device": args.engine_device}
        results["engine"].append({**described, **record})
        _print(
            f"engine {info['model']:<24} {record['image']:<17} total {record['total']['median_ms']:.1f} ms  "
            f"network {record['network']['median_ms']:.1f} ms  "
            f"engine {record['engine']['median_ms']:.1f} ms  "
            f"overhead {format_cell(record['overhead_pct'])} %"
        )
    models.back_to_cpu(args.engine_model, net)


def _write_reports(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        _print(f"\nwrote {args.out}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_markdown(results) + "\n")
        _print(f"wrote {args.markdown}")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fcfi bench``."""
    try:
        _validate(args)
    except ValueError as error:
        print(f"fcfi bench: {error}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices, not_measured = resolve_devices(args.devices)
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
    models = _ModelCache(args.bundled_preset, results)
    try:
        if "latency" in args.sections:
            _run_latency(args, devices, models, results)
        if "modules" in args.sections:
            _run_feedback_modules(args, devices, models, results)
        if "engine" in args.sections:
            _run_engine(args, models, results)
    except ValueError as error:
        print(f"fcfi bench: {error}", file=sys.stderr)
        return 2
    results["machine"]["load_average_end"] = load_average()
    results["targets"] = evaluate_targets(results)
    _print()
    _print(format_tables(results))
    _write_reports(args, results)
    return 0
