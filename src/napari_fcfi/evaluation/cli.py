"""``fcfi eval``: robot-user evaluation of models and classical baselines on a dataset.

Writes, under ``--out``: one ``<segmenter>.json`` per segmenter (summary and per-object IoU/click
logs), ``summary.json`` (all summaries), ``results.txt`` (the table printed to the terminal) and
``iou_vs_clicks.png`` (mean IoU after k clicks, one curve per segmenter).

Stack mode (``--stacks SET``, see :mod:`.stacks` and :mod:`.stack_data`) writes ``stacks_<set>.json``,
``stacks_summary.json``, ``stacks_results.txt`` and ``stacks_propagation.png`` instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from napari_fcfi.evaluation.baselines import BASELINES
from napari_fcfi.evaluation.datasets import DATASET_TYPES, open_dataset
from napari_fcfi.evaluation.result_json import write_json
from napari_fcfi.evaluation.results import format_table
from napari_fcfi.evaluation.runner import evaluate
from napari_fcfi.evaluation.segment_all_cli import run_segment_all
from napari_fcfi.evaluation.segmenters import resolve_segmenter
from napari_fcfi.evaluation.stack_data import DEFAULT_DSB, DEFAULT_MNFINDER, STACK_SETS, stack_set
from napari_fcfi.evaluation.stacks import evaluate_stacks, format_stack_table, stack_session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default=None, help="dataset folder (or a <name>_image.tif stack); not with --stacks"
    )
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
    stacks = parser.add_argument_group(
        "stack mode", "propagation through stacks vs annotating every slice (napari_fcfi.evaluation.stacks)"
    )
    stacks.add_argument(
        "--stacks",
        action="append",
        default=[],
        choices=STACK_SETS,
        help="evaluate propagation on this stack set instead of --data (repeatable; one --model)",
    )
    stacks.add_argument(
        "--stack-count",
        type=int,
        default=None,
        help="stacks per set (default: 4 procedural, 4 dsb-deformed, 3 mnfinder-deformed; sample has one)",
    )
    stacks.add_argument("--stack-depth", type=int, default=None, help="slices of generated stacks (15 / 11)")
    stacks.add_argument("--stack-size", type=int, default=128, help="side of procedural stacks (128)")
    stacks.add_argument("--stack-objects", type=int, default=None, help="at most K objects per stack")
    stacks.add_argument(
        "--stack-min-area",
        type=int,
        default=20,
        help="a slice holds the object when it has at least this many pixels of it (20)",
    )
    stacks.add_argument(
        "--correction",
        default="initial-mask",
        choices=("initial-mask", "continue"),
        help="correcting a propagated slice: set_image(initial_mask=propagated) then clicks (the widget's "
        "way, default), or clicks on in the propagation's session (its automatic click kept)",
    )
    stacks.add_argument("--target-iou", type=float, default=0.85, help="IoU each slice must reach (0.85)")
    stacks.add_argument(
        "--fill-every",
        type=int,
        default=None,
        metavar="K",
        help="also measure fill between: every K-th slice annotated, the rest filled and corrected",
    )
    stacks.add_argument(
        "--fill-anchors",
        choices=("scratch", "propagated"),
        default="scratch",
        help="fill between: the annotated slices from scratch (every K-th from the object's first; "
        "default), or K, 2K, ... from the start slice each way, propagated from the previous one and corrected",
    )
    stacks.add_argument(
        "--dsb-data", default=str(DEFAULT_DSB), help="DSB 2018 instance folder (val split used)"
    )
    stacks.add_argument("--mnfinder-data", default=str(DEFAULT_MNFINDER), help="mnfinder folder (val/ used)")
    parser.add_argument(
        "--segment-all",
        action="store_true",
        help="evaluate segment-all and the classical baseline on --dsb-data and --mnfinder-data (val splits)",
    )
    parser.add_argument("--no-effort", action="store_true", help="--segment-all: F1 and IoU only (no robot)")
    parser.add_argument(
        "--segment-all-set",
        action="append",
        default=[],
        choices=("DSB fluorescence", "mnfinder"),
        help="--segment-all: only this set (repeatable; default both)",
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "segmenter"


def run(args: argparse.Namespace) -> int:
    from napari_fcfi.evaluation.plots import plot_iou_curves  # matplotlib: only when plotting

    specs: list[tuple[str, str]] = [("model", m) for m in args.model] + [
        ("baseline", b) for b in args.baseline
    ]
    if args.limit is not None and args.limit < 1:  # was: a traceback (-1), a table of NaN (0)
        print(f"fcfi eval: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    if args.segment_all:
        return run_segment_all(args)
    if not specs:
        print("fcfi eval: give at least one --model or --baseline", file=sys.stderr)
        return 2
    if args.max_clicks < 1:
        print(f"fcfi eval: --max-clicks must be >= 1, got {args.max_clicks}", file=sys.stderr)
        return 2
    if args.threads < 0:
        print(f"fcfi eval: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    if args.stacks:
        return run_stacks(args)
    if args.data is None:
        print("fcfi eval: give --data (or --stacks)", file=sys.stderr)
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
    write_json(out / "summary.json", {"dataset": dataset.name, "results": summaries})
    plot_path = plot_iou_curves(results, out / "iou_vs_clicks.png")
    print(f"wrote {len(results)} result file(s), {out / 'summary.json'} and {plot_path}")
    written = {f"{_safe_name(r.segmenter)}.json" for r in results} | {"summary.json"}
    older = sorted(
        p.name for p in out.glob("*.json") if p.name not in written and not p.name.startswith("stacks_")
    )
    if older:  # a glob over --out (e.g. `compare --candidate OUT/*.json`) would take them too
        print(f"note: {out} also holds result files of an earlier run: {', '.join(older)}")
    return 0


def run_stacks(args: argparse.Namespace) -> int:
    """``fcfi eval --stacks SET ... --model M``: the stack robot on each set; table, JSON and plot."""
    from napari_fcfi.evaluation.plots import plot_stack_results  # matplotlib: only when plotting

    if args.baseline or len(args.model) != 1 or args.data is not None:
        print(
            "fcfi eval: --stacks needs exactly one --model (no --baseline, no --data): propagation runs "
            "through the engine",
            file=sys.stderr,
        )
        return 2
    try:
        name, session = stack_session(args.model[0], preset=args.preset, device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fcfi eval: cannot load model {args.model[0]!r}: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for set_name in dict.fromkeys(args.stacks):
        try:
            stacks = stack_set(
                set_name,
                count=args.stack_count,
                depth=args.stack_depth,
                size=args.stack_size,
                seed=args.seed,
                dsb_path=args.dsb_data,
                mnfinder_path=args.mnfinder_data,
            )
        except (ValueError, OSError) as exc:
            print(f"fcfi eval: cannot build stack set {set_name!r}: {exc}", file=sys.stderr)
            return 2
        result = evaluate_stacks(
            session,
            stacks,
            stack_set=set_name,
            max_clicks=args.max_clicks,
            target_iou=args.target_iou,
            max_objects=args.stack_objects,
            min_area=args.stack_min_area,
            seed=args.seed,
            name=name,
            correction=args.correction,
            fill_every=args.fill_every,
            fill_anchors=args.fill_anchors,
            progress=not args.no_progress,
        )
        result.settings.update(
            {
                "source": args.model[0],
                "preset": args.preset,
                "count": args.stack_count,
                "depth": args.stack_depth,
                "size": args.stack_size,
            }
        )
        result.save_json(out / f"stacks_{_safe_name(set_name)}.json")
        results.append(result)
    table = format_stack_table(results)
    header = (
        f"stacks: model {name}, target IoU {args.target_iou}, max clicks {args.max_clicks} per slice "
        f"(table 1: clicks per slice with propagation vs from scratch; table 2: details)"
    )
    print(header)
    print(table)
    (out / "stacks_results.txt").write_text(header + "\n" + table + "\n")
    summaries = {r.stack_set: r.summary for r in results}
    write_json(out / "stacks_summary.json", {"model": name, "results": summaries})
    plot_path = plot_stack_results(results, out / "stacks_propagation.png")
    print(f"wrote {len(results)} stack result file(s), {out / 'stacks_summary.json'} and {plot_path}")
    return 0
