#!/usr/bin/env python
"""Annotate, then adapt: the protocol of docs/evaluation.md ("Adapting to the user's data") on one modality.

The objects of the first half of the images are the user's committed labels (25 % held back for the
keep-or-revert check), the model is adapted on the rest for ``--minutes``, and the robot user's
NoC@85/90 on objects of the second half is compared for the base and the adapted model
(:func:`napari_fcfi.training.adaptation_protocol.run_protocol`). Writes ``<out>/report.json`` (and the
adapted model with its card when ``--save-model``).

Modalities::

    membrane     fresh procedural membrane/EM-like images (training/synthetic.py compartments, new seeds)
    dsb-colour   stained tissue of the DSB validation split (image_modality == "colour")
    grabcut      GrabCut photos (../shared/data/grabcut)
    nuclei       control: fluorescence nuclei of the DSB validation split (image_modality == "dark background")

Example::

    python scripts/run_adaptation.py --modality membrane --minutes 3 --threads 1 --out results/adaptation/membrane
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from napari_fcfi.model import load_model
from napari_fcfi.training import adaptation_protocol
from napari_fcfi.training.finetune import save_adapted

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def entries_for(modality: str, data: Path | None):
    if modality == "membrane":
        return adaptation_protocol.membrane_entries()
    if modality == "dsb-colour":
        return adaptation_protocol.dsb_entries(data or SHARED / "dsb2018_train", "colour")
    if modality == "nuclei":
        return adaptation_protocol.dsb_entries(data or SHARED / "dsb2018_train", "dark background")
    if modality == "grabcut":
        return adaptation_protocol.grabcut_entries(data or SHARED / "grabcut")
    raise ValueError(modality)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modality", required=True, choices=("membrane", "dsb-colour", "grabcut", "nuclei"))
    parser.add_argument(
        "--data", type=Path, default=None, help="dataset folder (default: ../shared/data/...)"
    )
    parser.add_argument("--base", default="default")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-objects", type=int, default=60)
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="use only the first N images (a user-sized number of committed objects)",
    )
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--save-model", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        print(line, flush=True)
        with open(args.out / "log.txt", "a") as log:
            log.write(line + "\n")

    base = load_model(args.base, device="cpu")
    entries = entries_for(args.modality, args.data)[: args.images]
    say(
        f"{args.modality}: {len(entries)} images, base {args.base}, {args.minutes} min, {args.threads} thread(s)"
    )
    report, adapted = adaptation_protocol.run_protocol(
        base,
        entries,
        name=args.modality,
        time_budget_s=args.minutes * 60,
        steps=args.steps,
        seed=args.seed,
        max_clicks=args.max_clicks,
        eval_objects=args.eval_objects,
        say=say,
    )
    report["command"] = (
        "python scripts/run_adaptation.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if v is not None and v is not False and k not in ("out", "save_model")
        )
        + f" --out {args.out}"
    )
    report["threads"] = args.threads
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    if args.save_model:
        save_adapted(adapted, args.out / "adapted.safetensors")
    b, a = report["base"], report["adapted"]
    say(
        f"{args.modality}: NoC@85 {b['noc85']:.2f} -> {a['noc85']:.2f} ({report['change_percent']['noc85']:+.1f} %), "
        f"NoC@90 {b['noc90']:.2f} -> {a['noc90']:.2f} ({report['change_percent']['noc90']:+.1f} %), "
        f"kept: {report['kept']}, {report['adaptation']['steps']} steps, "
        f"peak extra memory {report['peak_extra_memory_mib']:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
