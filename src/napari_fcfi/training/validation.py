"""Validation during training on the protocol users get.

Each validation object is an :class:`~napari_fcfi.evaluation.datasets.Sample` (raw image, ground
truth), and :func:`engine_validate` runs the evaluation toolkit's robot user
(:func:`napari_fcfi.evaluation.runner.evaluate`) through the real engine
(:class:`~napari_fcfi.engine.InteractiveSegmenter`, microscopy protocol, the engine's own
normalisation) with the settings the trained model will ship with. The numbers are therefore the
ones ``fcfi eval`` reports for the exported model, on fewer objects and clicks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.runner import evaluate
from napari_fcfi.evaluation.samples import Sample
from napari_fcfi.training.data import LabeledImage


def pick_validation_samples(
    items: Sequence[LabeledImage], count: int = 30, seed: int = 0, min_area: int = 30, source: str = ""
) -> list[Sample]:
    """``count`` fixed objects from as many different images as possible (seeded), as raw samples."""
    rng = np.random.default_rng([seed, 424242])
    order = rng.permutation(len(items))
    chosen: list[Sample] = []
    for _ in range(20):
        for index in order:
            item = items[int(index)]
            areas = np.bincount(item.labels.ravel(), minlength=int(item.labels.max()) + 1)
            candidates = [i for i in item.object_ids if areas[i] >= min_area]
            if not candidates:
                continue
            object_id = int(candidates[int(rng.integers(len(candidates)))])
            name = f"{source}{item.name}#{object_id}"
            chosen.append(Sample(item.image, item.labels == object_id, None, name))
            if len(chosen) == count:
                return chosen
    return chosen


def engine_validate(
    net: torch.nn.Module,
    samples: Sequence[Sample],
    engine_settings: dict[str, Any] | None = None,
    max_clicks: int = 10,
) -> dict[str, float]:
    """NoC@85/90 (capped at ``max_clicks``), NoF@90 and mean IoU after 1 and 3 clicks.

    Sessions stop once an object reaches IoU 0.9 (NoC@85/90 are unchanged by that; IoU@3 is then
    a lower bound). The network is put in eval mode for the run and restored afterwards.
    """
    was_training = net.training
    net.eval()
    try:
        result = evaluate(
            net, list(samples), max_clicks, stop_iou=0.9, engine_settings=dict(engine_settings or {})
        )
    finally:
        net.train(was_training)
    ious = result.all_ious
    if not ious:
        return {"noc85": math.nan, "noc90": math.nan, "nof90": math.nan, "iou1": math.nan, "iou3": math.nan}
    curve = metrics.mean_iou_curve(ious, max_clicks)
    return {
        "noc85": result.noc(0.85),
        "noc90": result.noc(0.90),
        "nof90": result.nof(0.90) / len(ious),
        "iou1": float(curve[0]),
        "iou3": float(curve[min(2, len(curve) - 1)]),
    }
