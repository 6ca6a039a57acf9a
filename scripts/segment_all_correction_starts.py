"""What a correction of a segment-all proposal costs from different starts (robot clicks to IoU 0.85).

For every matched proposal below IoU 0.85 on the first images of a DSB fluorescence split: robot
clicks from the proposal as it is (``as_is``), from the proposal eroded by 1 px (``eroded``), from a
fresh session whose first, free click is the proposal's innermost pixel (``seeded``), and from
scratch; plus how many clicks the network ignored (its own pixel kept the wrong label). One JSON line
per proposal, then the totals.

    python scripts/segment_all_correction_starts.py --split train --images 6
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_fcfi.annotation.proposals import segment_all
from napari_fcfi.engine.session import InteractiveSegmenter
from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.robot import RobotUser
from napari_fcfi.evaluation.segment_all_eval import GOOD_IOU, evaluation_sets, match_instances
from napari_fcfi.model import load_model


def robot_clicks(
    model: object,
    image: np.ndarray,
    obj: np.ndarray,
    initial: np.ndarray | None,
    seed: tuple[int, int] | None,
) -> tuple[int, int]:
    """(clicks to ``GOOD_IOU``, at most 20 and at least 1; clicks whose own pixel kept the wrong label)."""
    session = InteractiveSegmenter(model)
    session.set_image(image, initial_mask=initial)
    pred = np.zeros(obj.shape, bool) if initial is None else initial.copy()
    if seed is not None:
        session.add_click(*seed, True)
        pred = session.mask
    robot, clicks, ignored = RobotUser(obj, None), 0, 0
    while metrics.iou(pred, obj, None) < GOOD_IOU and clicks < 20:
        click = robot.next_click(pred)
        if click is None:
            break
        session.add_click(click.row, click.col, click.positive)
        pred = session.mask
        clicks += 1
        ignored += int(bool(pred[click.row, click.col]) != click.positive)
    return max(1, clicks), ignored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--model", default="default")
    parser.add_argument("--dsb-data", default="../shared/data/dsb2018_train")
    parser.add_argument("--mnfinder-data", default="../shared/data/mnfinder_nuclei")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    images = evaluation_sets(args.dsb_data, args.mnfinder_data, args.split, args.images)["DSB fluorescence"]
    totals = {"as_is": 0, "eroded": 0, "seeded": 0, "scratch": 0, "ignored_as_is": 0, "ignored_scratch": 0}
    for image_id, image, gt in images:
        proposals = segment_all(model, image)
        for g, p, iou in match_instances(gt, proposals):
            if iou >= GOOD_IOU:
                continue
            obj, proposal = gt == g, proposals == p
            inner = ndi.distance_transform_edt(proposal)
            seed = tuple(int(v) for v in np.unravel_index(np.argmax(inner), inner.shape))
            eroded = ndi.binary_erosion(proposal)
            row = {
                "image": image_id,
                "object": int(g),
                "area": int(obj.sum()),
                "proposal_area": int(proposal.sum()),
            }
            row["iou"] = iou
            row["as_is"], row["ignored_as_is"] = robot_clicks(model, image, obj, proposal, None)
            row["eroded"] = robot_clicks(model, image, obj, eroded, None)[0] if eroded.any() else 20
            row["seeded"] = robot_clicks(model, image, obj, None, seed)[0]
            row["scratch"], row["ignored_scratch"] = robot_clicks(model, image, obj, None, None)
            print(json.dumps(row), flush=True)
            for key in totals:
                totals[key] += row[key]
    print(json.dumps({"totals": totals}))


if __name__ == "__main__":
    main()
