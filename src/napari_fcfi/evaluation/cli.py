"""``fcfi eval``: robot-user evaluation of models and classical baselines on a dataset.

Writes, under ``--out``: one ``<segmenter>.json`` per segmenter (summary and per-object IoU/click
logs), ``summary.json`` (all summaries), ``results.txt`` (the table printed to the terminal) and
``iou_vs_clicks.png`` (mean IoU after k clicks, one curve per segmenter).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from napari_fcfi.evaluation.baselines import BASELINES
from napari_fcfi.evaluation.datasets import DATASET_TYPES, open_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (or a <name>_image.tif stack)")
    parser.add_argument(
        "--dataset-type",
        default="auto",
        choices=("auto", *DATASET_TYPES),
        help="dataset layout (default: detected from the folder)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="SOURCE",
        help="model to evaluate: 'default', a registered name or a .safetensors/.pth path (repeatable)",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=sorted(BASELINES),
        help="classical baseline to evaluate (repeatable)",
    )
    parser.add_argument("--max-clicks", type=int, default=20, help="clicks per object (default 20)")
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (entries)")
    parser.add_argument(
        "--max-objects", type=int, default=None, help="at most K objects per image (instance datasets)"
    )
    parser.add_argument(
        "--min-area", type=int, default=1, help="smallest object area in pixels (instance datasets)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the object sampling (default 0)")
    parser.add_argument(
        "--split",
        default="all",
        choices=("all", "train", "val"),
        help="instance folders: evaluate the deterministic train or validation split (split_instance_folder)",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.15, help="validation fraction of --split (0.15)"
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of --split (default 0)")
    parser.add_argument(
        "--preset",
        default=None,
        choices=("microscopy", "paper"),
        help="engine protocol for models (default: the engine's default, microscopy)",
    )
    parser.add_argument("--device", default="auto", help="device for models: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--stop-iou",
        type=float,
        default=None,
        help="stop an object's clicks once this IoU is reached (faster; curves become lower bounds)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads for models (0: leave torch's default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "segmenter"


def run(args: argparse.Namespace) -> int:
    from napari_fcfi.evaluation.plots import plot_iou_curves
    from napari_fcfi.evaluation.runner import evaluate, format_table, resolve_segmenter

    specs: list[tuple[str, str]] = [("model", m) for m in args.model] + [
        ("baseline", b) for b in args.baseline
    ]
    if not specs:
        print("fcfi eval: give at least one --model or --baseline", file=sys.stderr)
        return 2
    if args.max_clicks < 1:
        print(f"fcfi eval: --max-clicks must be >= 1, got {args.max_clicks}", file=sys.stderr)
        return 2
    try:
        dataset = open_dataset(
            args.data,
            args.dataset_type,
            seed=args.seed,
            min_area=args.min_area,
            max_objects=args.max_objects,
            split=args.split,
            val_fraction=args.val_fraction,
            split_seed=args.split_seed,
        )
    except ValueError as exc:
        print(f"fcfi eval: {exc}", file=sys.stderr)
        return 2

    if args.threads < 0:
        print(f"fcfi eval: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    if args.threads and args.model:
        import torch

        torch.set_num_threads(args.threads)  # SPC comparable across runs (the machine is shared)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    used_names: set[str] = set()
    for kind, spec in specs:
        try:
            if kind == "model":
                label, factory = resolve_segmenter(spec, preset=args.preset, device=args.device)
            else:
                label, factory = resolve_segmenter(spec)
        except (ValueError, FileNotFoundError) as exc:
            print(f"fcfi eval: cannot load {kind} {spec!r}: {exc}", file=sys.stderr)
            return 2
        base = label
        n = 2
        while label in used_names:  # two models with the same file stem
            label = f"{base}-{n}"
            n += 1
        used_names.add(label)
        result = evaluate(
            factory,
            dataset,
            args.max_clicks,
            name=label,
            limit=args.limit,
            stop_iou=args.stop_iou,
            progress=not args.no_progress,
        )
        result.settings.update(
            {
                "source": spec,
                "kind": kind,
                "preset": args.preset if kind == "model" else None,
                "data": str(args.data),
                "split": args.split,
                "seed": args.seed,
                "max_objects": args.max_objects,
                "min_area": args.min_area,
            }
        )
        result.save_json(out / f"{_safe_name(label)}.json")
        results.append(result)

    table = format_table(results)
    header = (
        f"dataset: {dataset.name} ({len(dataset.limit(args.limit))} images), max clicks {args.max_clicks}"
    )
    print(header)
    print(table)
    (out / "results.txt").write_text(header + "\n" + table + "\n")
    summaries = {r.segmenter: {k: v for k, v in r.summary.items() if k != "iou_curve"} for r in results}
    (out / "summary.json").write_text(json.dumps({"dataset": dataset.name, "results": summaries}, indent=1))
    plot_path = plot_iou_curves(results, out / "iou_vs_clicks.png")
    print(f"wrote {len(results)} result file(s), {out / 'summary.json'} and {plot_path}")
    return 0
