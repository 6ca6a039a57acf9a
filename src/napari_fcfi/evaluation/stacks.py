"""Robot user for stacks: annotate one slice, propagate slice by slice, correct where needed.

Protocol for each 3D object of a labelled stack (:func:`evaluate_stack_object`):

1. The object's *slices* are those where its ground truth has at least ``min_area`` pixels. The start
   slice is the middle one of them. The 2D robot (:func:`~.runner.run_object`, the clicks of
   :mod:`.robot`) annotates it from scratch until IoU >= ``target_iou`` (at most ``max_clicks``).
2. From there, in each direction, one slice at a time: :func:`~napari_fcfi.annotation.propagation.propagate_slices`
   carries the previous slice's final mask to the next slice with the engine session (the previous
   mask is the session's starting mask, plus the automatic interior click); its IoU is the
   *uncorrected* IoU. Below ``target_iou`` the robot corrects it: ``set_image(slice,
   initial_mask=propagated)`` and robot clicks on top (as in the widget), until ``target_iou`` or
   ``max_clicks``. The next slice is propagated from the corrected mask.
3. The walk stops where the object ends in the ground truth (the first slice without it, or the
   stack's end); present slices beyond a gap are not reached and not counted in either mode. When
   propagation itself stops on a slice that has the object (``ends_object``: mask gone, shrunk or
   not overlapping) the uncorrected IoU is 0 and the robot annotates that slice from scratch (the
   same clicks as the from-scratch mode). Each step looks one slice ahead as the widget does (the
   stopping rule may need two slices: :func:`~napari_fcfi.annotation.propagation.propagation_steps`).
   **Past the end**: one more propagation is run on the first slice without the object; if it still
   predicts an object, that slice needs a deletion, counted as one click in the propagation mode
   (``deletions``; the object's ends inside the stack are counted in ``ends``).

From-scratch mode: the same robot, target and click limit on every reached slice without any mask
(the start slice's clicks are the same in both modes). Clicks per slice = the slice's NoC at
``target_iou`` (``max_clicks`` when never reached: :func:`~.metrics.clicks_to_reach`); the automatic
propagation click is not a user click. Also measured: *chained* propagation from the start slice with
no correction at all (the widget's one-shot propagate), IoU per distance (0 where it stopped early),
the slices it runs past the object's end (overrun) and the directions where it ended before the
object did (chained stops).

Fill-between mode (``fill_every=k``): the robot annotates every ``k``-th reached slice and the last
one from scratch (the same clicks as the from-scratch mode), :func:`~napari_fcfi.annotation.filling.fill_slices`
fills the slices between each pair, and the robot corrects every filled slice below ``target_iou``.
With ``fill_anchors="propagated"`` the annotated slices are those ``k``, ``2k``, ... slices from the
start slice in each direction and each end, and each is reached as a user would in the widget: the
start slice annotated from scratch, then Propagate from the previous annotated slice (its stopping
rule; the slices between are filled afterwards) and the robot's corrections on the propagated mask
(from scratch where propagation stopped before it).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.annotation.filling import fill_slices
from napari_fcfi.annotation.propagation import (
    PropagatedSlice,
    PropagationStop,
    propagate_slices,
    propagate_step,
    propagation_order,
    propagation_steps,
)
from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.runner import run_object
from napari_fcfi.evaluation.samples import Sample, sample_object_labels
from napari_fcfi.evaluation.segmenters import EngineSegmenter
from napari_fcfi.evaluation.stack_data import Stack
from napari_fcfi.evaluation.stack_tables import DISTANCES, format_stack_table

TARGET_IOU = 0.85
CORRECTIONS = ("initial-mask", "continue")
#: How fill-between mode reaches its annotated slices (module docstring).
FILL_ANCHORS = ("scratch", "propagated")


@dataclass
class SliceRecord:
    """One reached slice of one object: both modes' clicks and the propagation's quality."""

    z: int
    distance: int  # from the start slice (0: the start slice)
    clicks_propagation: int  # start slice: annotation from scratch; others: correction clicks
    clicks_scratch: int
    reached_propagation: bool  # target reached within max_clicks in propagation mode
    reached_scratch: bool
    propagated_iou: float | None = None  # uncorrected one-step propagation (None on the start slice)
    propagation_stopped: bool = False  # propagation ended the object on this slice although it is there
    rejected_iou: float | None = None  # IoU of the mask that the stopping rule rejected
    chained_iou: float | None = None  # chained propagation from the start slice, no corrections
    stop_reason: str | None = None  # why propagation stopped here (propagation_stopped)
    clicks_fill: int | None = None  # fill-between mode: anchor clicks, or correction clicks of a filled slice
    fill_iou: float | None = None  # fill-between mode: IoU of the filled mask (None on anchors)
    fill_review: bool = False  # fill-between mode: the two sides disagreed (marked for review)


@dataclass
class ObjectStackResult:
    """The stack robot's session on one 3D object."""

    stack: str
    label: int
    start_z: int
    slices: list[SliceRecord]
    deletions: list[int] = field(default_factory=list)  # slices past the end the propagation filled
    chained_overrun: list[int] = field(default_factory=list)  # same, for chained propagation
    unreached: int = 0  # slices with the object beyond a gap (not evaluated)
    ends: int = 0  # directions in which the object ends inside the stack (a deletion is possible)
    chained_stops: int = 0  # directions in which chained propagation ended before the object did

    @property
    def clicks_propagation(self) -> int:
        return sum(s.clicks_propagation for s in self.slices) + len(self.deletions)

    @property
    def clicks_scratch(self) -> int:
        return sum(s.clicks_scratch for s in self.slices)

    @property
    def clicks_fill(self) -> int | None:
        if any(s.clicks_fill is None for s in self.slices):
            return None
        return sum(s.clicks_fill for s in self.slices)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def summarize_stacks(objects: Sequence[ObjectStackResult], target_iou: float = TARGET_IOU) -> dict:
    """Headline numbers of a set of objects (pooled over slices, JSON-ready)."""
    slices = [s for o in objects for s in o.slices]
    propagated = [s for s in slices if s.distance > 0]
    n_slices = len(slices)
    prop_total = sum(o.clicks_propagation for o in objects)
    scratch_total = sum(o.clicks_scratch for o in objects)
    distances = sorted({s.distance for s in propagated})
    ends = sum(o.ends for o in objects)
    fills = [o.clicks_fill for o in objects]
    fill_total = sum(fills) if fills and all(f is not None for f in fills) else None
    filled = [s for s in slices if s.fill_iou is not None]
    summary = {
        "objects": len(objects),
        "slices": n_slices,
        "propagated_slices": len(propagated),
        "clicks_propagation": prop_total,
        "clicks_scratch": scratch_total,
        "clicks_per_slice_propagation": prop_total / n_slices if n_slices else float("nan"),
        "clicks_per_slice_scratch": scratch_total / n_slices if n_slices else float("nan"),
        "ratio": prop_total / scratch_total if scratch_total else float("nan"),
        "correction_clicks_per_propagated_slice": _mean(s.clicks_propagation for s in propagated),
        "no_correction_fraction": _mean(float(s.propagated_iou >= target_iou) for s in propagated),
        "propagation_stops": sum(s.propagation_stopped for s in propagated),
        "false_stop_rate": _mean(float(s.propagation_stopped) for s in propagated) if propagated else None,
        "ends": ends,
        "deletions": sum(len(o.deletions) for o in objects),
        "chained_overrun_slices": sum(len(o.chained_overrun) for o in objects),
        "mean_overrun": sum(len(o.chained_overrun) for o in objects) / ends if ends else None,
        "chained_stops": sum(o.chained_stops for o in objects),
        "chained_stop_rate": sum(o.chained_stops for o in objects) / (2 * len(objects)) if objects else None,
        "clicks_fill": fill_total,
        "clicks_per_slice_fill": fill_total / n_slices if fill_total is not None and n_slices else None,
        "ratio_fill": fill_total / scratch_total if fill_total is not None and scratch_total else None,
        "filled_slices": len(filled),
        "fill_no_correction_fraction": _mean(float(s.fill_iou >= target_iou) for s in filled)
        if filled
        else None,
        "fill_review_slices": sum(s.fill_review for s in filled),
        "failures_propagation": sum(not s.reached_propagation for s in slices),
        "failures_scratch": sum(not s.reached_scratch for s in slices),
        "unreached_slices": sum(o.unreached for o in objects),
        "iou_by_distance": {
            d: _mean(s.propagated_iou for s in propagated if s.distance == d) for d in distances
        },
        "chained_iou_by_distance": {
            d: _mean(s.chained_iou for s in propagated if s.distance == d and s.chained_iou is not None)
            for d in distances
        },
        "slices_by_distance": {d: sum(s.distance == d for s in propagated) for d in distances},
    }
    return summary


@dataclass
class StackEvalResult:
    """All objects of one stack set evaluated with one segmenter."""

    segmenter: str
    stack_set: str
    max_clicks: int
    target_iou: float
    objects: list[ObjectStackResult]
    stacks: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def summary(self) -> dict:
        return summarize_stacks(self.objects, self.target_iou)

    def to_dict(self) -> dict:
        return {
            "segmenter": self.segmenter,
            "stack_set": self.stack_set,
            "max_clicks": self.max_clicks,
            "target_iou": self.target_iou,
            "stacks": self.stacks,
            "elapsed_s": self.elapsed_s,
            "settings": self.settings,
            "summary": self.summary,
            "objects": [asdict(o) for o in self.objects],
        }

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> StackEvalResult:
        data = json.loads(Path(path).read_text())
        objects = [
            ObjectStackResult(**{**o, "slices": [SliceRecord(**s) for s in o["slices"]]})
            for o in data["objects"]
        ]
        return cls(
            data["segmenter"],
            data["stack_set"],
            data["max_clicks"],
            data["target_iou"],
            objects,
            data.get("stacks", []),
            data.get("elapsed_s", 0.0),
            data.get("settings", {}),
        )


# ------------------------------------------------------------------------------------------ protocol
class _Continuing:
    """An engine session seen as a segmenter whose ``start`` keeps the session's current state."""

    def __init__(self, session: Any):
        self.session = session
        self.threshold = float(getattr(session, "threshold", DEFAULT_THRESHOLD))

    def start(self, image: np.ndarray, gt_ignore: np.ndarray | None = None, initial_mask=None) -> None:
        pass

    def add_click(self, row: int, col: int, positive: bool) -> np.ndarray:
        return self.session.add_click(row, col, positive)

    @property
    def mask(self) -> np.ndarray:
        return self.session.mask


def _robot(
    session: Any,
    image: np.ndarray,
    gt: np.ndarray,
    max_clicks: int,
    target: float,
    initial: np.ndarray | None = None,
) -> tuple[int, bool, np.ndarray]:
    """The 2D robot on one slice (from ``initial`` when given): (clicks to target, reached, final mask).

    ``session`` is an engine session (each robot run starts it anew) or a :class:`_Continuing` one.
    """
    # A fresh wrapper per run: EngineSegmenter's image cache must not outlive a propagation step.
    segmenter = session if isinstance(session, _Continuing) else EngineSegmenter.from_session(session)
    result = run_object(
        segmenter, Sample(image, gt, None, ""), max_clicks, stop_iou=target, initial_mask=initial
    )
    if not result.ious:  # no error to click on: only with a perfect initial mask
        return 0, True, np.asarray(initial, bool).copy()
    reached = metrics.reached(result.ious, target, max_clicks)
    return metrics.clicks_to_reach(result.ious, target, max_clicks), reached, np.array(session.mask, bool)


def _propagate_one(
    session: Any, read, previous: np.ndarray, z: int, step: int, depth: int
) -> tuple[np.ndarray | None, PropagationStop | None]:
    """One propagation step from slice ``z - step`` onto slice ``z`` with the widget's stopping rule,
    looking one slice further when the rule needs it: (mask, None), or (None, the stop)."""
    if not previous.any():
        return None, PropagationStop(z, "nothing to propagate")
    order = [[z, z + step]] if 0 <= z + step < depth else [[z]]
    for item in propagation_steps(session, read, previous, order, start_index=z - step):
        if isinstance(item, PropagationStop):
            return None, item
        if isinstance(item, PropagatedSlice) and item.index == z:
            return item.mask, None
    return None, PropagationStop(z, "no mask")


def evaluate_stack_object(
    session: Any,
    stack: Stack,
    label: int,
    *,
    max_clicks: int = 20,
    target_iou: float = TARGET_IOU,
    min_area: int = 20,
    chained: bool = True,
    correction: str = "initial-mask",
    fill_every: int | None = None,
    fill_anchors: str = "scratch",
) -> ObjectStackResult:
    """The protocol of the module docstring for object ``label`` of ``stack`` with an engine session.

    ``session`` is an engine session (``set_image(image, channel_axis=, initial_mask=)``,
    ``add_click``, ``mask``, ``threshold``), e.g. :class:`~napari_fcfi.engine.InteractiveSegmenter`.
    ``correction``: ``"initial-mask"`` (the protocol: ``set_image(slice, initial_mask=propagated)``,
    then the robot's clicks) or ``"continue"`` (the robot clicks on in the propagation's own session,
    i.e. on top of the propagated mask *and* its automatic interior click). ``fill_every``: also run
    the fill-between mode with an annotated slice every ``fill_every`` slices, annotated from scratch
    or (``fill_anchors="propagated"``) propagated from the previous one and corrected.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    if fill_anchors not in FILL_ANCHORS:
        raise ValueError(f"fill_anchors must be one of {FILL_ANCHORS}, got {fill_anchors!r}")
    depth = stack.labels.shape[0]

    def read(z: int) -> np.ndarray:
        return stack.image[z]

    def gt(z: int) -> np.ndarray:
        return stack.labels[z] == label

    def present(z: int) -> bool:
        return 0 <= z < depth and int(gt(z).sum()) >= min_area

    zs = [z for z in range(depth) if present(z)]
    if not zs:
        raise ValueError(f"{stack.name}: object {label} has no slice with {min_area} pixels or more")
    start = zs[len(zs) // 2]
    clicks, reached, start_mask = _robot(session, read(start), gt(start), max_clicks, target_iou)
    records = [SliceRecord(start, 0, clicks, clicks, reached, reached)]
    result = ObjectStackResult(stack.name, int(label), start, records)
    scratch_masks = {start: start_mask}
    for step in (1, -1):
        previous, z = start_mask, start + step
        while present(z):
            propagated, stop = _propagate_one(session, read, previous, z, step, depth)
            record = SliceRecord(z, abs(z - start), 0, 0, True, True, propagated_iou=0.0)
            if propagated is not None:
                record.propagated_iou = metrics.iou(propagated, gt(z))
                if correction == "continue" and 0 <= z + step < depth:  # the look-ahead moved the session on
                    propagate_step(session, read(z), previous)
                previous = propagated
                if record.propagated_iou < target_iou:
                    # "continue": the session still holds the propagation (initial mask + its click)
                    corrector = _Continuing(session) if correction == "continue" else session
                    record.clicks_propagation, record.reached_propagation, previous = _robot(
                        corrector, read(z), gt(z), max_clicks, target_iou, initial=propagated
                    )
            scratch, record.reached_scratch, scratch_mask = _robot(
                session, read(z), gt(z), max_clicks, target_iou
            )
            record.clicks_scratch = scratch
            scratch_masks[z] = scratch_mask
            if propagated is None:
                record.propagation_stopped = True
                record.stop_reason = stop.reason if stop is not None else None
                if stop is not None and stop.mask is not None:
                    record.rejected_iou = metrics.iou(stop.mask, gt(z))
                record.clicks_propagation, record.reached_propagation = scratch, record.reached_scratch
                previous = scratch_mask
            records.append(record)
            z += step
        if 0 <= z < depth:  # first slice past the object's end (or before a gap)
            result.ends += 1
            past, _ = _propagate_one(session, read, previous, z, step, depth)
            if past is not None:
                result.deletions.append(z)
    reached_z = {s.z for s in records}
    result.unreached = sum(z not in reached_z for z in zs)
    records.sort(key=lambda s: s.z)
    if chained:
        chain = dict(
            propagate_slices(
                session, read, start_mask, propagation_order(start, depth, "both", None), start_index=start
            )
        )
        for record in records:
            if record.distance:
                record.chained_iou = metrics.iou(chain.get(record.z, np.zeros_like(start_mask)), gt(record.z))
        result.chained_overrun = sorted(z for z in chain if not present(z))
        reached_ends = (max(reached_z), min(reached_z))
        result.chained_stops = sum(end != start and end not in chain for end in reached_ends)
    if fill_every is not None:
        anchors = _fill_anchors(
            session, read, gt, records, scratch_masks, fill_every, max_clicks, target_iou, fill_anchors
        )
        _fill_mode(session, read, gt, records, scratch_masks, anchors, max_clicks, target_iou)
    return result


def _fill_anchors(
    session, read, gt, records, scratch_masks, every: int, max_clicks: int, target: float, how: str
) -> tuple[list[tuple[int, int]], dict[int, np.ndarray]]:
    """The annotated slices of the fill-between mode (see the module docstring): the pairs to fill
    between and each annotated slice's final mask; sets the annotated slices' ``clicks_fill``."""
    if every < 2:
        raise ValueError(f"fill_every must be at least 2, got {every}")
    by_z = {r.z: r for r in records}
    zs = sorted(by_z)
    if how == "scratch":
        anchors = sorted(set(zs[::every]) | {zs[-1]})
        for z in anchors:
            by_z[z].clicks_fill = by_z[z].clicks_scratch
        return list(itertools.pairwise(anchors)), {z: scratch_masks[z] for z in anchors}
    start = next(r.z for r in records if r.distance == 0)
    by_z[start].clicks_fill = by_z[start].clicks_scratch
    masks, pairs = {start: scratch_masks[start]}, []
    at = zs.index(start)
    for side in (zs[at:], zs[: at + 1][::-1]):
        chosen = side[::every] + ([side[-1]] if (len(side) - 1) % every else [])
        for a, b in itertools.pairwise(chosen):
            step = 1 if b > a else -1
            order = [list(range(a + step, b + step, step))]
            propagated = dict(propagate_slices(session, read, masks[a], order, start_index=a)).get(b)
            if propagated is None or not propagated.any():  # stopped before b: annotated from scratch
                by_z[b].clicks_fill, masks[b] = by_z[b].clicks_scratch, scratch_masks[b]
            elif metrics.iou(propagated, gt(b)) >= target:
                by_z[b].clicks_fill, masks[b] = 0, propagated
            else:
                by_z[b].clicks_fill, _, masks[b] = _robot(
                    session, read(b), gt(b), max_clicks, target, initial=propagated
                )
            pairs.append((a, b))
    return pairs, masks


def _fill_mode(session, read, gt, records, scratch_masks, anchors, max_clicks: int, target: float) -> None:
    """Fill-between mode between the annotated slices ``anchors`` (pairs, masks); fills the ``*_fill``
    fields of the slices between."""
    by_z = {r.z: r for r in records}
    zs = sorted(by_z)
    pairs, masks = anchors
    for a, b in pairs:
        for filled in fill_slices(session, read, a, masks[a], b, masks[b]):
            record = by_z[filled.index]
            record.fill_iou = metrics.iou(filled.mask, gt(filled.index))
            record.fill_review = filled.review
            record.clicks_fill = 0
            if record.fill_iou < target:
                record.clicks_fill, _, _ = _robot(
                    session, read(filled.index), gt(filled.index), max_clicks, target, initial=filled.mask
                )
    for z in zs:  # a slice neither chain reached (both masks vanished): annotated from scratch
        if by_z[z].clicks_fill is None:
            by_z[z].clicks_fill = by_z[z].clicks_scratch


def stack_objects(
    stack: Stack, *, min_area: int = 20, min_slices: int = 3, max_objects: int | None = None, seed: int = 0
) -> list[int]:
    """Labels of ``stack`` with at least ``min_slices`` slices of ``min_area`` pixels; at most
    ``max_objects`` of them, drawn as :func:`~.datasets.sample_object_labels` draws (seeded by name)."""
    areas = np.stack([np.bincount(s.ravel(), minlength=int(stack.labels.max()) + 1) for s in stack.labels])
    slices = (areas >= min_area).sum(axis=0)
    eligible = np.flatnonzero(slices >= min_slices)
    eligible = eligible[eligible > 0]
    # One "pixel" per eligible label: sample_object_labels then draws exactly as for a 2D image.
    return sample_object_labels(eligible[None], key=stack.name, seed=seed, max_objects=max_objects)


def stack_session(
    spec: Any, *, preset: str | None = None, device: str | None = None, engine_settings: dict | None = None
) -> tuple[str, Any]:
    """``(name, engine session)`` for a model source (``"default"``, a path), a loaded model or a session."""
    if hasattr(spec, "set_image") and hasattr(spec, "add_click"):
        return getattr(spec, "name", "model"), spec
    settings = dict(engine_settings or {})
    if preset is not None:
        settings["preset"] = preset
    name = "model"
    if isinstance(spec, (str, Path)):
        from napari_fcfi.model import load_model

        name = Path(str(spec)).stem if Path(str(spec)).suffix else str(spec)
        spec = load_model(str(spec), device=device) if device is not None else load_model(str(spec))
    else:
        name = type(spec).__name__
    from napari_fcfi.engine import InteractiveSegmenter

    return name, InteractiveSegmenter(spec, **settings)


def evaluate_stacks(
    segmenter: Any,
    stacks: Sequence[Stack],
    *,
    stack_set: str = "stacks",
    max_clicks: int = 20,
    target_iou: float = TARGET_IOU,
    max_objects: int | None = None,
    min_area: int = 20,
    min_slices: int = 3,
    seed: int = 0,
    name: str | None = None,
    preset: str | None = None,
    device: str | None = None,
    engine_settings: dict | None = None,
    chained: bool = True,
    correction: str = "initial-mask",
    fill_every: int | None = None,
    fill_anchors: str = "scratch",
    progress: bool = False,
) -> StackEvalResult:
    """Run the stack robot on every chosen object of ``stacks`` (see :func:`stack_objects`);
    ``correction``, ``fill_every`` and ``fill_anchors`` as in :func:`evaluate_stack_object`."""
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    label, session = stack_session(segmenter, preset=preset, device=device, engine_settings=engine_settings)
    label = name or label
    chosen = [
        (stack, lab)
        for stack in stacks
        for lab in stack_objects(
            stack, min_area=min_area, min_slices=min_slices, max_objects=max_objects, seed=seed
        )
    ]
    from tqdm.auto import tqdm

    objects: list[ObjectStackResult] = []
    t0 = time.perf_counter()
    for stack, lab in tqdm(chosen, desc=f"stacks {stack_set}", unit="obj", disable=not progress, leave=False):
        objects.append(
            evaluate_stack_object(
                session,
                stack,
                lab,
                max_clicks=max_clicks,
                target_iou=target_iou,
                min_area=min_area,
                chained=chained,
                correction=correction,
                fill_every=fill_every,
                fill_anchors=fill_anchors,
            )
        )
    settings = {
        "max_objects": max_objects,
        "min_area": min_area,
        "min_slices": min_slices,
        "seed": seed,
        "preset": preset,
        "engine_settings": engine_settings,
        "correction": correction,
        "fill_every": fill_every,
        "fill_anchors": fill_anchors,
    }
    return StackEvalResult(
        label,
        stack_set,
        max_clicks,
        target_iou,
        objects,
        [s.name for s in stacks],
        time.perf_counter() - t0,
        settings,
    )


__all__ = [
    "CORRECTIONS",
    "FILL_ANCHORS",
    "DISTANCES",
    "TARGET_IOU",
    "ObjectStackResult",
    "SliceRecord",
    "StackEvalResult",
    "evaluate_stack_object",
    "evaluate_stacks",
    "format_stack_table",
    "stack_objects",
    "stack_session",
    "summarize_stacks",
]
