"""Evaluate a state of the training line against the bundled model, and draw the learning curve.

    python scripts/line_report.py evaluate [--model training/line/model.safetensors] [--stacks] [--record]
    python scripts/line_report.py curve      # docs/images/training_line.png + the markdown table
    python scripts/line_report.py calibrate --model M  # the model's own propagation stop threshold
    python scripts/line_report.py ship --model M       # M becomes the bundled default, the old one default-v<N>

``evaluate`` runs the shipping protocol (docs/training.md, "The training line"): ``fcfi eval`` on the DSB
validation split (200 objects) and mnfinder ``val/`` (94 objects), 20 clicks, stop at IoU 0.9, one
thread; with ``--stacks`` the uncorrected one-step propagation IoU at distance 1 on the dsb-deformed and
mnfinder-deformed stacks; then the paired comparison with the base model's results
(:mod:`napari_fcfi.evaluation.compare`, results of the base are computed once into ``--base``), and
both models' segment-all F1 on the tuning images as ``calibrate`` stored it (proposals are part of what
a ship changes).
``--record`` appends the numbers to the line's ``history.jsonl`` (one point of the learning curve).

``calibrate`` measures where the model's confidence puts the propagation stopping rule
(``scripts/measure_stop_features.py``, :func:`suggest_stop_confidence`) and segment-all's proposal
mask cut and score threshold (best F1@0.5 on training images, ``tune_proposals``) and writes them into the model
file's metadata (``propagation``, ``segment_all``); run it on a candidate before ``evaluate --stacks``, since
the stacks use the stopping rule. ``ship`` writes the candidate as the bundled default (metadata: name,
the line's step and hours) and keeps the previous default, bundled model v<N>, as
``fcfi_default_v<N>.safetensors`` (registry name ``default-v<N>``, loadable for one release).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from measure_stop_features import CALIBRATION_FALSE_STOPS, suggest_stop_confidence

from napari_fcfi.evaluation.compare import compare, format_comparison
from napari_fcfi.evaluation.results import EvalResult
from napari_fcfi.evaluation.segment_all_eval import evaluation_sets, tune_proposals
from napari_fcfi.model import load_model, save_model
from napari_fcfi.training.line import append_history, read_history, read_state

DSB = [
    "--data",
    "../shared/data/dsb2018_train",
    "--split",
    "val",
    "--limit",
    "40",
    "--max-objects",
    "5",
    "--min-area",
    "30",
]
MNFINDER = ["--data", "../shared/data/mnfinder_nuclei/val", "--max-objects", "40"]
DSB_FOLDER, MNFINDER_FOLDER = "../shared/data/dsb2018_train", "../shared/data/mnfinder_nuclei"
#: Training images per set on which ``calibrate`` chooses segment-all's min_score.
SEGMENT_ALL_TUNE_IMAGES = 30
PROTOCOL = ["--max-clicks", "20", "--stop-iou", "0.9", "--threads", "1", "--no-progress"]
STACKS = [
    "--stacks",
    "dsb-deformed",
    "--stacks",
    "mnfinder-deformed",
    "--stack-count",
    "3",
    "--stack-objects",
    "4",
    "--threads",
    "1",
    "--no-progress",
]


def _eval(model: str, data: list[str], out: Path) -> EvalResult:
    if not any(out.glob("*.json")) or not (out / "summary.json").is_file():
        subprocess.run(["fcfi", "eval", *data, "--model", model, *PROTOCOL, "--out", str(out)], check=True)
    return EvalResult.load_json(next(p for p in sorted(out.glob("*.json")) if p.name != "summary.json"))


def _one_step_iou(model: str, out: Path) -> dict[str, float]:
    if not (out / "stacks_summary.json").is_file():
        subprocess.run(["fcfi", "eval", *STACKS, "--model", model, "--out", str(out)], check=True)
    results = json.loads((out / "stacks_summary.json").read_text())["results"]
    return {name: entry["iou_by_distance"].get("1") for name, entry in results.items()}


def _segment_all_f1(model: str) -> float | None:
    """The segment-all F1 that ``calibrate`` measured at the model's chosen cuts (None: not calibrated)."""
    calibration = load_model(model, device="cpu").fcfi_metadata.get("segment_all")
    if not isinstance(calibration, dict) or not isinstance(calibration.get("train_f1"), dict):
        return None
    cut = float(calibration.get("proposal_threshold", 0.4))
    key = f"{cut:.2f}/{float(calibration['min_score']):.2f}"
    value = calibration["train_f1"].get(
        key, calibration["train_f1"].get(f"{float(calibration['min_score']):.2f}")
    )
    return None if value is None else float(value)


def _numbers(result: EvalResult) -> dict[str, float]:
    summary = result.summary
    return {
        "noc85": summary["noc@85"],
        "noc90": summary["noc@90"],
        "nof90": summary["nof@90"],
        "iou1": summary["iou@1"],
        "ms_per_click": 1000 * summary["spc_median"],
    }


def evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    # The base's results are cached per base model (its name in the metadata): a ship changes "default".
    base_name = load_model(args.base_model, device="cpu").fcfi_metadata.get("name", "model")
    base_dir = Path(args.base) / f"base-{base_name}"
    base = [
        _eval(args.base_model, DSB, base_dir / "dsb"),
        _eval(args.base_model, MNFINDER, base_dir / "mnf"),
    ]
    candidate = [_eval(args.model, DSB, out / "dsb"), _eval(args.model, MNFINDER, out / "mnf")]
    report = compare(base, candidate)
    print(format_comparison(report))
    record = {
        "event": "evaluation",
        "model": args.model,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dsb": _numbers(candidate[0]),
        "mnfinder": _numbers(candidate[1]),
        "ship": report["ship"],
        "comparison": report["rows"],
    }
    if args.stacks:
        record["one_step_iou_d1"] = _one_step_iou(args.model, out / "stacks")
        record["base_one_step_iou_d1"] = _one_step_iou(args.base_model, base_dir / "stacks")
        print(
            "one-step propagation IoU at d=1:",
            record["one_step_iou_d1"],
            "base:",
            record["base_one_step_iou_d1"],
        )
    record["segment_all_train_f1"] = _segment_all_f1(args.model)
    record["base_segment_all_train_f1"] = _segment_all_f1(args.base_model)
    print(
        "segment-all F1@0.5 on the tuning images (calibrate):",
        record["segment_all_train_f1"],
        "base:",
        record["base_segment_all_train_f1"],
    )
    (out / "report.json").write_text(json.dumps(record, indent=1))
    if args.record:
        step, hours = _training_point(args.model, args.line)
        append_history(args.line, {**record, "step": step, "hours": hours})
        print(f"recorded in {args.line}/history.jsonl at step {step}")
    return 0


def _training_point(model_path: str, line: str) -> tuple[int, float]:
    """Step and training hours of the evaluated weights: the model file's own (a copy of an earlier
    state of the line says where it was), else the line's current state."""
    state = read_state(line)
    training = load_model(model_path, device="cpu").fcfi_metadata.get("training") or {}
    if training.get("line") == state["line_id"] and training.get("step") is not None:
        return int(training["step"]), float(training["train_seconds_total"]) / 3600
    return int(state["step"]), float(state["train_seconds"]) / 3600


#: Metadata entries save_model writes itself or that describe where a loaded file came from.
_NOT_COPIED = ("format", "format_version", "config", "path", "registry_name")
WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "napari_fcfi" / "weights"


def _rewrite(model_path: Path, target: Path, **entries: object) -> None:
    net = load_model(str(model_path), device="cpu")
    metadata = {k: v for k, v in net.fcfi_metadata.items() if k not in _NOT_COPIED}
    metadata.update(entries)
    save_model(net, target, metadata)


def calibrate(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if args.segment_all_only:
        net = load_model(str(model), device="cpu")
        calibration = net.fcfi_metadata.get("propagation")
        if not isinstance(calibration, dict):
            raise SystemExit(
                f"{model} has no propagation calibration to keep; run calibrate without --segment-all-only"
            )
        threshold = float(calibration["stop_confidence"])
        return _calibrate_segment_all(model, calibration, threshold)
    out = Path(args.out or f"results/ship/stop_{model.stem}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).with_name("measure_stop_features.py")),
        "--model",
        str(model),
        "--count",
        "3",
        "--objects",
        "5",
        "--confidence-only",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    threshold = suggest_stop_confidence(rows)
    calibration = {
        "stop_confidence": threshold,
        "false_stop_share": CALIBRATION_FALSE_STOPS,
        "continuing_steps": sum(1 for r in rows if r["continues"]),
        "command": "python scripts/line_report.py calibrate --model <file>",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    return _calibrate_segment_all(model, calibration, threshold)


def _calibrate_segment_all(model: Path, calibration: dict, threshold: float) -> int:
    net = load_model(str(model), device="cpu")
    train = evaluation_sets(DSB_FOLDER, MNFINDER_FOLDER, "train", SEGMENT_ALL_TUNE_IMAGES)
    images = [(image, gt) for pairs in train.values() for _, image, gt in pairs]
    cut, min_score, f1s = tune_proposals(net, images)
    segment_all = {
        "min_score": min_score,
        "proposal_threshold": cut,
        "train_f1": {f"{t:.2f}/{m:.2f}": round(v, 4) for (t, m), v in f1s.items()},
        "images": f"first {SEGMENT_ALL_TUNE_IMAGES} DSB fluorescence + mnfinder train images",
    }
    _rewrite(model, model, propagation=calibration, segment_all=segment_all)
    print(
        f"{model}: propagation stop_confidence {threshold:.2f}, segment-all proposal_threshold {cut:.2f} "
        f"and min_score {min_score:.2f} (train F1 {f1s[(cut, min_score)]:.3f}) written into its metadata"
    )
    return 0


def bundled_version(name: str) -> int:
    """The version of a bundled model from its metadata name: ``fcfi-microscopy-v<N>``, v1 unnumbered."""
    match = re.fullmatch(r"fcfi-microscopy(?:-v(\d+))?", name)
    if match is None:
        raise ValueError(f"not a bundled model name: {name!r}")
    return int(match.group(1) or 1)


def ship(args: argparse.Namespace) -> int:
    current = WEIGHTS / "fcfi_default.safetensors"
    older = sorted(WEIGHTS.glob("fcfi_default_v*.safetensors"))
    if older:
        print(
            f"{', '.join(p.name for p in older)} exists: remove the release-old model first "
            "(one previous model ships)",
            file=sys.stderr,
        )
        return 1
    try:
        version = bundled_version(str(load_model(str(current), device="cpu").fcfi_metadata.get("name", "")))
        if args.name is not None:
            bundled_version(args.name)  # the next ship reads the version from this name
    except ValueError as error:
        print(f"cannot ship: {error} (expected fcfi-microscopy-v<N>)", file=sys.stderr)
        return 1
    previous = WEIGHTS / f"fcfi_default_v{version}.safetensors"
    state = read_state(args.line)
    shutil.copy2(current, previous)
    _rewrite(
        Path(args.model),
        current,
        name=args.name or f"fcfi-microscopy-v{version + 1}",
        description=f"FCFI trained by napari-fcfi's training line ({state['train_seconds'] / 3600:.2f} h, step {state['step']})",
        line={
            "line_id": state.get("line_id"),
            "step": state["step"],
            "hours": round(state["train_seconds"] / 3600, 2),
        },
    )
    print(
        f"shipped {args.model} as {current} (v{version + 1}); the previous default is {previous} "
        f"(registry: default-v{version})"
    )
    return 0


def curve(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in read_history(args.line) if r.get("event") == "evaluation"]
    if not points:
        print("no evaluation records yet: run `line_report.py evaluate --record` first", file=sys.stderr)
        return 1
    latest = {r["step"]: r for r in points}  # a later evaluation of the same state replaces an earlier one
    points = sorted(latest.values(), key=lambda r: r["hours"])
    hours = [r["hours"] for r in points]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for key, style in (("noc85", "o-"), ("noc90", "s--")):
        for name, colour in (("dsb", "tab:blue"), ("mnfinder", "tab:orange")):
            axes[0].plot(hours, [r[name][key] for r in points], style, color=colour, label=f"{name} {key}")
    axes[0].set(xlabel="training hours (all sessions)", ylabel="clicks", title="NoC (20 clicks)")
    axes[0].legend(fontsize=7)
    axes[1].plot(hours, [r["dsb"]["iou1"] for r in points], "o-", label="DSB")
    axes[1].plot(hours, [r["mnfinder"]["iou1"] for r in points], "o-", label="mnfinder")
    axes[1].set(xlabel="training hours", title="IoU after 1 click")
    axes[1].legend(fontsize=7)
    for name in ("dsb-deformed", "mnfinder-deformed"):
        pairs = [(r["hours"], (r.get("one_step_iou_d1") or {}).get(name)) for r in points]
        pairs = [(h, v) for h, v in pairs if v is not None]
        if pairs:
            axes[2].plot(*zip(*pairs), "o-", label=name)
    axes[2].set(xlabel="training hours", title="one-step propagation IoU (d=1)")
    axes[2].legend(fontsize=7)
    figure.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}\n")
    print(
        "| hours | step | DSB NoC@85 / @90 / NoF@90 | DSB IoU@1 | mnfinder NoC@85 / @90 / NoF@90 | mnfinder IoU@1 | "
        "one-step IoU d=1 (dsb / mnfinder) | shipped |"
    )
    print("|---:|---:|---|---:|---|---:|---|---|")
    for r in points:
        d, m, p = r["dsb"], r["mnfinder"], r.get("one_step_iou_d1") or {}
        prop = " / ".join(
            f"{p[k]:.3f}" if p.get(k) is not None else "-" for k in ("dsb-deformed", "mnfinder-deformed")
        )
        print(
            f"| {r['hours']:.2f} | {r['step']} | {d['noc85']:.2f} / {d['noc90']:.2f} / {d['nof90']} | {d['iou1']:.3f} | "
            f"{m['noc85']:.2f} / {m['noc90']:.2f} / {m['nof90']} | {m['iou1']:.3f} | {prop} | "
            f"{r.get('shipped', 'yes' if r.get('ship') else 'no')} |"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("evaluate", help="shipping protocol for one model against the base model")
    run.add_argument("--model", default="training/line/model.safetensors")
    run.add_argument("--base-model", default="default")
    run.add_argument("--base", default="results/ship", help="folder with (or for) the base model's results")
    run.add_argument("--out", default=None, help="results folder (default results/ship/line-<step>)")
    run.add_argument(
        "--stacks", action="store_true", help="also one-step propagation IoU on the deformed stacks"
    )
    run.add_argument("--record", action="store_true", help="append the numbers to the line's history.jsonl")
    run.add_argument("--line", default="training/line")
    draw = commands.add_parser("curve", help="learning curve plot and table from the line's history")
    draw.add_argument("--line", default="training/line")
    draw.add_argument("--plot", default="docs/images/training_line.png")
    cal = commands.add_parser(
        "calibrate", help="write the model's stop threshold and segment-all cuts into it"
    )
    cal.add_argument("--model", required=True, help="a copy of the line's weights (rewritten in place)")
    cal.add_argument("--out", default=None, help="features JSONL (default results/ship/stop_<stem>.jsonl)")
    cal.add_argument(
        "--segment-all-only",
        action="store_true",
        help="recalibrate segment-all only; keep the model's propagation calibration",
    )
    put = commands.add_parser("ship", help="make a candidate the bundled default (keeps the old as v1)")
    put.add_argument("--model", required=True)
    put.add_argument("--name", default=None, help="metadata name (default: fcfi-microscopy-v<N+1>)")
    put.add_argument("--line", default="training/line")
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        return calibrate(args)
    if args.command == "ship":
        return ship(args)
    if args.command == "evaluate":
        if args.out is None:
            args.out = f"results/ship/line-{_training_point(args.model, args.line)[0]}"
        return evaluate(args)
    return curve(args)


if __name__ == "__main__":
    raise SystemExit(main())
