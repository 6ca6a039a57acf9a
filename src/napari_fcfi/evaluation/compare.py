"""Paired comparison of two models on the same objects: the shipping rule of the bundled model.

Both models are evaluated by ``fcfi eval`` on the same validation objects (same data, split, seed and
limits, so the object ids match). Per object the number of clicks to reach an IoU (NoC, capped at the
click budget) is paired, and a bootstrap over objects gives a 95 % interval of the mean difference
(candidate - base; negative = fewer clicks).

Shipping rule: the candidate replaces the base when its NoC@90 over all sets together is lower with the
whole 95 % interval below zero (a gain, not luck), and on no single set the interval lies wholly above
zero (no set measurably worse).

    python -m napari_fcfi.evaluation.compare --base results/ship/base_dsb/default.json \\
        results/ship/base_mnf/default.json --candidate results/ship/cand_dsb/*.json results/ship/cand_mnf/*.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.results import EvalResult


@dataclass
class PairedDifference:
    """Mean per-object difference (candidate - base) of one metric with its bootstrap interval."""

    name: str
    objects: int
    base: float
    candidate: float
    difference: float
    low: float
    high: float

    @property
    def better(self) -> bool:
        return self.high < 0

    @property
    def worse(self) -> bool:
        return self.low > 0


def clicks_per_object(result: EvalResult, threshold: float) -> dict[str, int]:
    """NoC at ``threshold`` (IoU) per object id, capped at the result's click budget."""
    return {
        o.sample_id: metrics.clicks_to_reach(o.ious, threshold, result.max_clicks) for o in result.objects
    }


def paired_difference(
    name: str, base: dict[str, float], candidate: dict[str, float], *, resamples: int = 10_000, seed: int = 0
) -> PairedDifference:
    """Bootstrap (over objects, seeded) 95 % interval of the mean of ``candidate - base``."""
    if set(base) != set(candidate):
        missing = sorted(set(base) ^ set(candidate))[:5]
        raise ValueError(f"{name}: the two results are not on the same objects (e.g. {missing})")
    ids = sorted(base)
    if not ids:
        raise ValueError(f"{name}: no objects to compare")
    b = np.array([base[i] for i in ids], float)
    c = np.array([candidate[i] for i in ids], float)
    diff = c - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDifference(
        name, len(ids), float(b.mean()), float(c.mean()), float(diff.mean()), float(low), float(high)
    )


def compare(base: Sequence[EvalResult], candidate: Sequence[EvalResult], *, seed: int = 0) -> dict:
    """Per-set and combined paired differences of NoC@85 and NoC@90, and the shipping decision."""
    if len(base) != len(candidate):
        raise ValueError("give one candidate result per base result (same order)")
    rows: list[PairedDifference] = []
    combined: dict[float, tuple[dict, dict]] = {0.85: ({}, {}), 0.90: ({}, {})}
    for b, c in zip(base, candidate):
        for threshold in (0.85, 0.90):
            base_clicks, cand_clicks = clicks_per_object(b, threshold), clicks_per_object(c, threshold)
            rows.append(
                paired_difference(
                    f"{b.dataset} NoC@{round(threshold * 100)}", base_clicks, cand_clicks, seed=seed
                )
            )
            combined[threshold][0].update({f"{b.dataset}/{k}": v for k, v in base_clicks.items()})
            combined[threshold][1].update({f"{c.dataset}/{k}": v for k, v in cand_clicks.items()})
    totals = [paired_difference(f"all NoC@{round(t * 100)}", *combined[t], seed=seed) for t in (0.85, 0.90)]
    per_set_90 = [row for row in rows if row.name.endswith("NoC@90")]
    ship = totals[1].better and not any(row.worse for row in per_set_90)
    return {
        "rows": [asdict(r) for r in rows + totals],
        "ship": ship,
        "rule": "combined NoC@90 interval below 0 and no set's NoC@90 interval above 0",
    }


def format_comparison(report: dict) -> str:
    lines = [
        "| metric | objects | base | candidate | difference | 95 % interval |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['name']} | {row['objects']} | {row['base']:.2f} | {row['candidate']:.2f} | "
            f"{row['difference']:+.2f} | [{row['low']:+.2f}, {row['high']:+.2f}] |"
        )
    lines.append(f"\nship: {'yes' if report['ship'] else 'no'} ({report['rule']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--base", nargs="+", type=Path, required=True, help="fcfi eval result JSONs of the base model"
    )
    parser.add_argument(
        "--candidate",
        nargs="+",
        type=Path,
        required=True,
        help="the candidate's result JSONs, same sets in the same order",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    report = compare(
        [EvalResult.load_json(p) for p in args.base], [EvalResult.load_json(p) for p in args.candidate]
    )
    print(format_comparison(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
