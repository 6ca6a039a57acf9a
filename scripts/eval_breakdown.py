"""Split `fcfi eval` results by imaging modality and by object size (model comparison tables).

Each object's image is classed by ``napari_fcfi.training.data.image_modality`` (stained tissue =
colour; otherwise dark background = fluorescence or light background = brightfield) and each object
by its area (small < 150 px, medium 150-600 px, large > 600 px). NoC@85/90, NoF@90, IoU after 1 and 3
clicks and the median seconds per click come from the per-object results stored in the JSON files::

    fcfi eval --data ../shared/data/dsb2018_train --split val --limit 40 --max-objects 5 --min-area 30 \\
        --model runs/a.safetensors --out results/dsb
    python scripts/eval_breakdown.py --data ../shared/data/dsb2018_train results/dsb/*.json --markdown
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_fcfi.engine.io import read_image
from napari_fcfi.evaluation.metrics import summarize
from napari_fcfi.evaluation.results import EvalResult
from napari_fcfi.training.data import image_modality, make_labeled_image

SIZE_BUCKETS = (
    (0, 150, "small (< 150 px)"),
    (150, 600, "medium (150-600 px)"),
    (600, 10**12, "large (> 600 px)"),
)


def object_facts(folder: Path, sample_ids: set[str]) -> dict[str, tuple[str, str]]:
    """``sample id -> (modality, size bucket)`` for the ``<image id>#<label>`` objects of an instance folder."""
    facts = {}
    by_image: dict[str, list[str]] = defaultdict(list)
    for sample_id in sample_ids:
        by_image[sample_id.split("#")[0]].append(sample_id)
    for image_id, ids in sorted(by_image.items()):
        image = read_image(next(folder.glob(f"{image_id}_image.*")), lazy=False)
        labels = np.asarray(read_image(next(folder.glob(f"{image_id}_labels.*")), lazy=False))
        item = make_labeled_image(image[..., :3] if image.ndim == 3 else image, labels, name=image_id)
        modality = image_modality(item)
        for sample_id in ids:
            area = int((labels == int(sample_id.split("#")[1])).sum())
            size = next(name for low, high, name in SIZE_BUCKETS if low <= area < high)
            facts[sample_id] = (modality, size)
    return facts


def rows(results: list[EvalResult], facts: dict[str, tuple[str, str]]) -> list[tuple[str, str, dict]]:
    """(group, segmenter, summary) for all objects, each modality and each size bucket."""
    out = []
    for result in results:
        out.append(
            ("all", result.segmenter, summarize(result.all_ious, result.click_times, result.max_clicks))
        )
    for index, kind in ((0, "modality"), (1, "size")):
        names = sorted({f[index] for f in facts.values()})
        for name in names:
            for result in results:
                chosen = [o for o in result.objects if facts[o.sample_id][index] == name]
                if chosen:
                    times = [t for o in chosen for t in o.times]
                    out.append(
                        (
                            f"{kind}: {name}",
                            result.segmenter,
                            summarize([o.ious for o in chosen], times, result.max_clicks),
                        )
                    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the instance folder that was evaluated")
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by fcfi eval")
    args = parser.parse_args(argv)
    results = [EvalResult.load_json(path) for path in args.results]
    facts = object_facts(args.data, {o.sample_id for r in results for o in r.objects})
    print("| group | segmenter | objects | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@3 | ms/click (median) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for group, segmenter, s in rows(results, facts):
        print(
            f"| {group} | {segmenter} | {s['objects']} | {s['noc@85']:.2f} | {s['noc@90']:.2f} | {s['nof@90']} | "
            f"{s['iou@1']:.3f} | {s['iou@3']:.3f} | {1000 * s['spc_median']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
