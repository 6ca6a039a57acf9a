"""Annotate, then adapt: is a model adapted to the user's objects worth keeping, and what does it gain?

The rule the napari widget uses (and the protocol below):

1. :func:`hold_back_objects` sets a share (25 %) of the user's committed objects aside;
2. :func:`napari_fcfi.finetune` adapts a copy of the model on the other objects;
3. :func:`check_adaptation` runs the robot user (the evaluation toolkit's, through the engine, at most
   20 clicks) on the held-back objects with the base and the adapted model, and keeps the adapted
   model only when it needs fewer clicks there with a stated confidence: per object, the clicks the
   adapted model saves (NoC@85 + NoC@90, base minus adapted) are paired, and a one-sided sign-flip
   permutation test of their mean gives the confidence that the adapted model needs fewer clicks;
   it is kept at :data:`KEEP_CONFIDENCE` (90 %) or more. When that is not reached, the check says
   how many more committed objects would be needed to reach it at the measured gain
   (:func:`objects_needed`), or that no gain was measured.

:func:`adapt_with_check` does the three in one call. :mod:`.adaptation_protocol` measures the whole
thing on a modality (``scripts/run_adaptation.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.runner import run_object
from napari_fcfi.evaluation.samples import Sample
from napari_fcfi.evaluation.segmenters import EngineSegmenter
from napari_fcfi.training.finetune import MIN_OBJECT_AREA, as_instance_labels, finetune

#: Share of the committed objects held back to decide whether to keep an adapted model.
HOLDOUT_FRACTION = 0.25
#: Held-back objects the robot runs on (a seeded subset when more are held back).
CHECK_OBJECTS = 30
CHECK_MAX_CLICKS = 20
#: Confidence (1 - one-sided p of the paired sign-flip test) needed to keep an adapted model.
KEEP_CONFIDENCE = 0.9
_EXACT_SIGN_FLIPS = 16  # exact enumeration up to this many non-zero differences, else a seeded sample
_SAMPLED_SIGN_FLIPS = 20000

ProgressCallback = Callable[[float, str], Any]


# ------------------------------------------------------------------------------------ the rule
def hold_back_objects(
    labels: Sequence[Any], fraction: float = HOLDOUT_FRACTION, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split the objects of ``labels`` (a sequence of instance label images) into two label sets.

    Returns ``(train_labels, held_labels)``: lists of int64 label images of the input shapes. A seeded
    random ``fraction`` of the objects (at least one, and at least one left for training) is moved
    from the training labels to the held-back labels; objects under
    :data:`~napari_fcfi.training.finetune.MIN_OBJECT_AREA` pixels stay in the training labels (they
    are too small to check on). Raises ValueError when fewer than two objects are large enough.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    arrays = [as_instance_labels(item, index) for index, item in enumerate(labels)]
    if not arrays:
        raise ValueError("no label images")
    objects = []
    for index, array in enumerate(arrays):
        ids, areas = np.unique(array[array > 0], return_counts=True)
        objects += [(index, int(i)) for i, a in zip(ids, areas) if a >= MIN_OBJECT_AREA]
    if len(objects) < 2:
        raise ValueError(
            f"{len(objects)} object(s) of at least {MIN_OBJECT_AREA} pixels: at least 2 are needed to "
            "train on some and check on others"
        )
    count = min(len(objects) - 1, max(1, round(fraction * len(objects))))
    chosen = np.random.default_rng([seed, 271828]).choice(len(objects), size=count, replace=False)
    train = [array.copy() for array in arrays]
    held = [np.zeros_like(array) for array in arrays]
    for k in sorted(int(c) for c in chosen):
        index, object_id = objects[k]
        where = arrays[index] == object_id
        held[index][where] = object_id
        train[index][where] = 0
    return train, held


def object_samples(
    images: Sequence[Any],
    labels: Sequence[Any],
    *,
    ignores: Sequence[Any] | None = None,
    max_objects: int | None = None,
    min_area: int = 1,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> list[Sample]:
    """One evaluation :class:`Sample` per object of ``labels``; a seeded subset of ``max_objects``.

    The subset is spread over the images: at most ``ceil(max_objects / images)`` objects per image
    first, then a seeded draw when still too many.
    """
    per_image = None if max_objects is None else max(1, math.ceil(max_objects / max(len(labels), 1)))
    rng = np.random.default_rng([seed, 314159])
    samples: list[Sample] = []
    for index, (image, label_image) in enumerate(zip(images, labels)):
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        label_image = np.asarray(label_image)
        ignore = None if ignores is None or ignores[index] is None else np.asarray(ignores[index], bool)
        ids, areas = np.unique(label_image[label_image > 0], return_counts=True)
        ids = [int(i) for i, a in zip(ids, areas) if a >= min_area]
        if per_image is not None and len(ids) > per_image:
            ids = sorted(int(i) for i in rng.choice(ids, size=per_image, replace=False))
        name = names[index] if names is not None else f"image-{index}"
        samples += [Sample(image, label_image == i, ignore, f"{name}#{i}") for i in ids]
    if max_objects is not None and len(samples) > max_objects:
        keep = sorted(int(i) for i in rng.choice(len(samples), size=max_objects, replace=False))
        samples = [samples[i] for i in keep]
    return samples


@dataclass
class AdaptationCheck:
    """The keep-or-revert decision: robot-user clicks on held-back objects, base vs adapted model."""

    keep: bool
    objects: int
    max_clicks: int
    base: dict[str, float]
    adapted: dict[str, float]
    base_clicks: float  # mean NoC@85 + NoC@90 of the base model
    adapted_clicks: float
    change_percent: float  # of the clicks; negative: the adapted model needs fewer
    seconds: float
    cancelled: bool = False
    confidence: float = math.nan  # that the adapted model needs fewer clicks (paired sign-flip test)
    required_confidence: float = KEEP_CONFIDENCE
    clicks_saved: list[float] = field(default_factory=list)  # per held-back object, base minus adapted
    advice: str = ""  # what was measured and what would help, in words for the user

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _object_clicks(ious: Sequence[float], max_clicks: int) -> float:
    """One object's NoC@85 + NoC@90 (the per-object form of the check's clicks)."""
    return metrics.noc([ious], 0.85, max_clicks) + metrics.noc([ious], 0.90, max_clicks)


def click_scores(ious: list[list[float]], max_clicks: int) -> dict[str, float]:
    """NoC@85, NoC@90, NoF@90 and the mean IoU after the first click of per-object IoU curves."""
    curve = metrics.mean_iou_curve(ious, max_clicks)
    return {
        "noc85": metrics.noc(ious, 0.85, max_clicks),
        "noc90": metrics.noc(ious, 0.90, max_clicks),
        "nof90": metrics.nof(ious, 0.90, max_clicks),
        "iou1": float(curve[0]) if len(ious) else math.nan,
    }


def paired_confidence(differences: Sequence[float], seed: int = 0) -> float:
    """Confidence that the mean of paired ``differences`` is above 0: one minus the one-sided p-value
    of a sign-flip permutation test (exact for up to 16 non-zero differences, else 20000 seeded flips).

    Zero differences (ties) carry no sign; no non-zero difference gives confidence 0.
    """
    values = np.asarray([d for d in differences if d != 0], dtype=float)
    if values.size == 0 or values.sum() <= 0:
        return 0.0
    observed = values.sum()
    if values.size <= _EXACT_SIGN_FLIPS:
        signs = 1 - 2 * ((np.arange(2**values.size)[:, None] >> np.arange(values.size)) & 1)
    else:
        signs = np.random.default_rng([seed, 1618]).choice((-1, 1), size=(_SAMPLED_SIGN_FLIPS, values.size))
    p_value = float(np.mean(signs @ values >= observed - 1e-9))
    return 1.0 - p_value


def objects_needed(differences: Sequence[float], confidence: float = KEEP_CONFIDENCE) -> int | None:
    """Held-back objects needed to reach ``confidence`` at the measured mean gain and its spread
    (normal approximation, at least what a sign-flip test can reach with all gains positive);
    None when no gain was measured."""
    values = np.asarray(differences, dtype=float)
    if values.size == 0 or values.mean() <= 0:
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(confidence)
    spread = float(values.std(ddof=1)) if values.size > 1 else 0.0
    by_spread = math.ceil((z * spread / float(values.mean())) ** 2) if spread > 0 else 0
    by_signs = math.ceil(math.log2(1.0 / (1.0 - confidence)))  # fewest objects a sign-flip test can decide on
    return max(by_spread, by_signs, values.size + 1)


def _advice(
    keep: bool, saved: Sequence[float], confidence: float, fraction: float, capped: bool = False
) -> str:
    """``capped``: the check ran on a subset of the held-back objects (more objects would not be checked)."""
    objects = len(saved)
    mean = float(np.mean(saved)) if objects else math.nan
    fewer = "fewer" if mean >= 0 else "more"
    measured = (
        f"On {objects} held-back objects the adapted model needed {abs(mean):.2f} {fewer} clicks per object "
        f"(NoC@85 + NoC@90); confidence that it is better: {100 * confidence:.0f} % "
        f"({100 * KEEP_CONFIDENCE:.0f} % needed to keep it)"
    )
    if keep:
        return measured + "."
    needed = objects_needed(saved)
    if needed is None:
        return (
            measured + ". No gain measured: keep annotating with the current model; adapting again "
            "after many more objects (or objects of a new kind) may help."
        )
    if capped:
        return (
            measured + f". The gain is too small to be sure on the {objects} objects the check runs on: "
            "adapting for longer may help."
        )
    more = math.ceil((needed - objects) / fraction)
    return (
        measured + f". Too few objects to be sure at this gain: annotate about {more} more objects "
        "and adapt again."
    )


def robot_ious(
    model: Any,
    samples: Sequence[Sample],
    max_clicks: int = CHECK_MAX_CLICKS,
    progress: Callable[[int], Any] | None = None,
    engine_settings: dict | None = None,
) -> list[list[float]] | None:
    """IoU after each robot click per sample (sessions stop at IoU 0.9: NoC@85/90 are exact).

    ``progress(objects_done)`` after each object; returning True stops and gives ``None``.
    """
    segmenter = EngineSegmenter(model, **dict(engine_settings or {}))
    ious = []
    for done, sample in enumerate(samples, start=1):
        ious.append(run_object(segmenter, sample, max_clicks, stop_iou=0.9).ious)
        if progress is not None and progress(done):
            return None
    return ious


def check_adaptation(
    base: Any,
    adapted: Any,
    images: Sequence[Any],
    held_labels: Sequence[Any],
    *,
    max_clicks: int = CHECK_MAX_CLICKS,
    max_objects: int = CHECK_OBJECTS,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> AdaptationCheck:
    """Decide whether to keep ``adapted``: fewer robot clicks than ``base`` on the held-back objects,
    with :data:`KEEP_CONFIDENCE` by the paired test of the module docstring (``confidence``,
    ``clicks_saved`` per object and ``advice`` in words are in the result).

    ``held_labels``: label images of the held-back objects (from :func:`hold_back_objects`), paired with
    ``images``. The robot user of the evaluation toolkit clicks through the engine (each model's own
    settings) on at most ``max_objects`` of them (seeded subset), at most ``max_clicks`` clicks each;
    the clicks of a model are its mean NoC@85 + NoC@90, and ``keep`` is True only when the adapted
    model's are fewer and the paired confidence reaches :data:`KEEP_CONFIDENCE`. ``progress(fraction, message)`` after each object; returning True
    stops: the check is then ``cancelled`` and ``keep`` False. The result is also recorded in
    ``adapted.fcfi_metadata["adaptation"]["held_back_check"]`` (when present), so that
    :func:`napari_fcfi.save_adapted` writes it into the model card.
    """
    start = time.perf_counter()
    samples = object_samples(images, held_labels, max_objects=max_objects, seed=seed)
    if not samples:
        raise ValueError("no held-back objects to check on")
    total = 2 * len(samples)
    results: list[list[list[float]]] = []
    for offset, (label, model) in enumerate((("base", base), ("adapted", adapted))):

        def report(done: int, offset: int = offset, label: str = label) -> bool:
            if progress is None:
                return False
            count = offset * len(samples) + done
            return bool(progress(count / total, f"checking the {label} model: object {done}/{len(samples)}"))

        ious = robot_ious(model, samples, max_clicks, report)
        if ious is None:
            nan = {"noc85": math.nan, "noc90": math.nan, "nof90": math.nan, "iou1": math.nan}
            return AdaptationCheck(
                False,
                len(samples),
                max_clicks,
                nan,
                nan,
                math.nan,
                math.nan,
                math.nan,
                time.perf_counter() - start,
                cancelled=True,
                advice="The check was cancelled: nothing was measured; the current model stays.",
            )
        results.append(ious)
    base_scores, adapted_scores = (click_scores(r, max_clicks) for r in results)
    base_clicks = base_scores["noc85"] + base_scores["noc90"]
    adapted_clicks = adapted_scores["noc85"] + adapted_scores["noc90"]
    saved = [_object_clicks(b, max_clicks) - _object_clicks(a, max_clicks) for b, a in zip(*results)]
    confidence = paired_confidence(saved, seed)
    keep = bool(adapted_clicks < base_clicks and confidence >= KEEP_CONFIDENCE)
    check = AdaptationCheck(
        keep=keep,
        objects=len(samples),
        max_clicks=max_clicks,
        base=base_scores,
        adapted=adapted_scores,
        base_clicks=base_clicks,
        adapted_clicks=adapted_clicks,
        change_percent=100.0 * (adapted_clicks - base_clicks) / base_clicks if base_clicks else 0.0,
        seconds=time.perf_counter() - start,
        confidence=confidence,
        clicks_saved=[float(d) for d in saved],
        advice=_advice(keep, saved, confidence, HOLDOUT_FRACTION, capped=len(samples) >= max_objects),
    )
    record = getattr(adapted, "fcfi_metadata", {}).get("adaptation")
    if isinstance(record, dict):
        record["held_back_check"] = check.to_dict()
    return check


def adapt_with_check(
    model: Any,
    images: Sequence[Any],
    labels: Sequence[Any],
    *,
    time_budget_s: float = 180,
    steps: int | None = None,
    seed: int = 0,
    fraction: float = HOLDOUT_FRACTION,
    progress: ProgressCallback | None = None,
) -> tuple[Any, AdaptationCheck]:
    """Hold back ``fraction`` of the objects, adapt on the rest, check: ``(adapted model, check)``.

    Use ``check.keep`` to keep the adapted model or revert to ``model``. ``time_budget_s`` is the
    adaptation's (the check comes on top: at most ``2 x 30 objects x 20 clicks``). ``progress`` gets
    the adaptation's fraction scaled to 0..0.8 and the check's to 0.8..1; returning True once cancels
    the running part (a cancelled adaptation is still checked; a cancelled check gives keep False).
    """
    train_labels, held_labels = hold_back_objects(labels, fraction, seed)
    scaled = (lambda lo, hi: lambda f, m: progress(lo + (hi - lo) * f, m)) if progress is not None else None
    adapted = finetune(
        model,
        images,
        train_labels,
        time_budget_s=time_budget_s,
        steps=steps,
        seed=seed,
        progress=scaled(0.0, 0.8) if scaled else None,
    )
    check = check_adaptation(
        model, adapted, images, held_labels, seed=seed, progress=scaled(0.8, 1.0) if scaled else None
    )
    return adapted, check


__all__ = [
    "KEEP_CONFIDENCE",
    "AdaptationCheck",
    "adapt_with_check",
    "check_adaptation",
    "click_scores",
    "hold_back_objects",
    "object_samples",
    "objects_needed",
    "paired_confidence",
    "robot_ious",
]
