"""Run a segmenter against the robot user on a dataset: :func:`evaluate` → :class:`~.results.EvalResult`.

Segmenters and the specs that make one: :mod:`.segmenters`; :func:`run_object` is one object's
session (also used by the stack evaluation and the adaptation check).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.datasets import open_dataset
from napari_fcfi.evaluation.results import EvalResult, ObjectResult
from napari_fcfi.evaluation.robot import RobotUser
from napari_fcfi.evaluation.samples import EvalDataset, Sample, SampleList
from napari_fcfi.evaluation.segmenters import resolve_segmenter


def _as_dataset(dataset: Any) -> EvalDataset:
    if isinstance(dataset, EvalDataset):
        return dataset
    if isinstance(dataset, (str, Path)):
        return open_dataset(dataset)
    if isinstance(dataset, Sample):
        return SampleList([dataset])
    if isinstance(dataset, Iterable):
        return SampleList(dataset)
    raise ValueError(f"cannot evaluate on {type(dataset).__name__}: expected a dataset, a path or samples")


def _to_mask(output: Any, threshold: float, shape: tuple[int, int]) -> np.ndarray:
    output = np.asarray(output)
    if output.shape != shape:
        raise ValueError(f"segmenter returned shape {output.shape}, expected {shape}")
    return output if output.dtype == bool else output > threshold


def run_object(
    segmenter: Any,
    sample: Sample,
    max_clicks: int = 20,
    stop_iou: float | None = None,
    initial_mask: np.ndarray | None = None,
) -> ObjectResult:
    """One robot session: up to ``max_clicks`` clicks on ``sample`` with ``segmenter``.

    The session stops early when no error is left or, if given, when the IoU reaches ``stop_iou``
    (the metrics then carry the last IoU forward). ``initial_mask`` (bool (H, W)) starts the session
    from an existing mask (e.g. a propagated one): it is passed to ``segmenter.start`` (an
    :class:`EngineSegmenter` makes it the engine's initial mask) and the robot's first click corrects it.
    """
    robot = RobotUser(sample.gt_mask, sample.ignore_mask)
    shape = sample.gt_mask.shape
    if initial_mask is None:
        segmenter.start(sample.image, sample.ignore_mask)
        pred = np.zeros(shape, dtype=bool)
    else:
        pred = np.asarray(initial_mask, dtype=bool)
        if pred.shape != shape:
            raise ValueError(f"initial_mask has shape {pred.shape}, the object is {shape}")
        segmenter.start(sample.image, sample.ignore_mask, initial_mask=pred)
    threshold = float(getattr(segmenter, "threshold", DEFAULT_THRESHOLD))
    result = ObjectResult(sample.sample_id, [], [])
    for _ in range(max_clicks):
        click = robot.next_click(pred)
        if click is None:
            break
        t0 = time.perf_counter()
        output = segmenter.add_click(click.row, click.col, click.positive)
        result.times.append(time.perf_counter() - t0)
        pred = _to_mask(output, threshold, shape)
        result.ious.append(metrics.iou(pred, sample.gt_mask, sample.ignore_mask))
        result.clicks.append((click.row, click.col, click.positive))
        if stop_iou is not None and result.ious[-1] >= stop_iou:
            break
    return result


def evaluate(
    segmenter: Any,
    dataset: Any,
    max_clicks: int = 20,
    *,
    name: str | None = None,
    preset: str | None = None,
    device: str | None = None,
    limit: int | None = None,
    stop_iou: float | None = None,
    progress: bool = False,
    engine_settings: dict | None = None,
) -> EvalResult:
    """Evaluate ``segmenter`` (see :func:`resolve_segmenter`) with the robot user on ``dataset``.

    ``dataset``: an :class:`~napari_fcfi.evaluation.datasets.EvalDataset`, a path (type detected),
    or an iterable of :class:`~napari_fcfi.evaluation.datasets.Sample`. ``limit`` keeps the first N
    images (entries). ``stop_iou`` (e.g. 0.9 for fast validation during training) stops an object's
    session once reached; NoC at or below that threshold is unchanged, the IoU curve is then a lower
    bound. ``engine_settings`` go to the engine when a model is evaluated. Objects whose ground
    truth is empty outside the ignore region are skipped (listed in ``EvalResult.skipped``).
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    label, factory = resolve_segmenter(
        segmenter, preset=preset, device=device, name=name, engine_settings=engine_settings
    )
    data = _as_dataset(dataset).limit(limit)
    seg = factory()
    objects: list[ObjectResult] = []
    skipped: list[str] = []
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    with tqdm(total=len(data), desc=f"eval {label}", unit="img", disable=not progress, leave=False) as bar:
        for index in range(len(data)):
            for sample in data.samples(index):
                if not (sample.gt_mask & (True if sample.ignore_mask is None else ~sample.ignore_mask)).any():
                    skipped.append(sample.sample_id)
                    continue
                objects.append(run_object(seg, sample, max_clicks, stop_iou))
            bar.update(1)
            if objects:
                bar.set_postfix(
                    objects=len(objects),
                    noc90=f"{metrics.noc([o.ious for o in objects], 0.9, max_clicks):.2f}",
                )
    settings = {"preset": preset, "stop_iou": stop_iou, "limit": limit, "engine_settings": engine_settings}
    return EvalResult(label, data.name, max_clicks, objects, skipped, time.perf_counter() - t_start, settings)
