"""Split `fcfi eval` results on an instance folder by imaging modality (model card tables).

Each object's image is classed by ``napari_fcfi.training.data.image_modality`` (stained tissue =
colour; otherwise dark or light background), then NoC@85/90, NoF@90 and IoU after 1 and 3 clicks
are computed per class from the per-object IoU curves stored in the JSON files::

    python scripts/per_modality.py --data ../shared/data/dsb2018_train results/default.json \
        results/random-walker.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from napari_fcfi.engine.io import read_image
from napari_fcfi.evaluation.metrics import summarize
from napari_fcfi.evaluation.runner import EvalResult
from napari_fcfi.training.data import image_modality, make_labeled_image


def modality_of_images(folder: Path, image_ids: set[str]) -> dict[str, str]:
    """``image id -> modality`` for the ``<id>_image.*`` / ``<id>_labels.*`` pairs in ``folder``."""
    found = {}
    for image_id in sorted(image_ids):
        image = read_image(next(folder.glob(f"{image_id}_image.*")))
        labels = read_image(next(folder.glob(f"{image_id}_labels.*")))
        item = make_labeled_image(image[..., :3] if image.ndim == 3 else image, labels, name=image_id)
        found[image_id] = image_modality(item)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the instance folder that was evaluated")
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by fcfi eval")
    args = parser.parse_args(argv)
    results = [EvalResult.load_json(path) for path in args.results]
    image_ids = {obj.sample_id.split("#")[0] for result in results for obj in result.objects}
    modality = modality_of_images(args.data, image_ids)
    print("| modality | segmenter | objects | NoC@85 | NoC@90 | NoF@90 | IoU@1 | IoU@3 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in sorted(set(modality.values())):
        for result in results:
            groups: dict[str, list] = defaultdict(list)
            for obj in result.objects:
                groups[modality[obj.sample_id.split("#")[0]]].append(obj.ious)
            ious = groups.get(name)
            if not ious:
                continue
            s = summarize(ious, [], result.max_clicks)
            print(f"| {name} | {result.segmenter} | {s['objects']} | {s['noc@85']:.2f} | {s['noc@90']:.2f} | "
                  f"{s['nof@90']} | {s['iou@1']:.3f} | {s['iou@3']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
