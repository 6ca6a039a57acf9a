"""``fcfi eval --segment-all``: segment-all vs the classical baseline on the DSB and mnfinder val splits.

Writes ``segment_all.json`` (per image rows), ``segment_all.md`` (the summary table) and
``segment_all.png`` (one image per set: image, ground truth, segment-all, classical) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run_segment_all(args: argparse.Namespace) -> int:
    # Imported here: ``fcfi --help`` must not pay for torch and the engine.
    from napari_fcfi.evaluation.segment_all_eval import run_evaluation, summary_table
    from napari_fcfi.model import load_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    source = args.model[0] if args.model else "default"
    try:
        model = load_model(source, device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fcfi eval: cannot load model {source!r}: {exc}", file=sys.stderr)
        return 2
    report = run_evaluation(
        model,
        args.dsb_data,
        args.mnfinder_data,
        limit=args.limit,
        max_clicks=args.max_clicks,
        effort=not args.no_effort,
        sets=args.segment_all_set or None,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "segment_all.json").write_text(json.dumps(report, indent=1))
    table = summary_table(report)
    (out / "segment_all.md").write_text(table + "\n")
    print(table)
    return 0
