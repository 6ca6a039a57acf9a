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

:func:`adapt_with_check` does the three in one call. :func:`run_protocol` measures the whole thing on
a modality: the objects of the first half of the images (or slices) are the user's committed labels,
the objects of the second half are the next ones the user will segment, and the robot's NoC@85/90 on
them is compared for the base and the adapted model. ``scripts/run_adaptation.py`` runs it on the
modalities of docs/evaluation.md ("Adapting to the user's data"); the loaders are
:func:`membrane_entries`, :func:`dsb_entries` and :func:`grabcut_entries`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.datasets import Sample

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
    from napari_fcfi.training.finetune import MIN_OBJECT_AREA, as_instance_labels

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


def _scores(ious: list[list[float]], max_clicks: int) -> dict[str, float]:
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


def _advice(keep: bool, saved: Sequence[float], confidence: float, fraction: float, capped: bool = False) -> str:
    """``capped``: the check ran on a subset of the held-back objects (more objects would not be checked)."""
    objects = len(saved)
    mean = float(np.mean(saved)) if objects else math.nan
    fewer = "fewer" if mean >= 0 else "more"
    measured = (f"On {objects} held-back objects the adapted model needed {abs(mean):.2f} {fewer} clicks per object "
                f"(NoC@85 + NoC@90); confidence that it is better: {100 * confidence:.0f} % "
                f"({100 * KEEP_CONFIDENCE:.0f} % needed to keep it)")
    if keep:
        return measured + "."
    needed = objects_needed(saved)
    if needed is None:
        return (measured + ". No gain measured: keep annotating with the current model; adapting again "
                "after many more objects (or objects of a new kind) may help.")
    if capped:
        return (measured + f". The gain is too small to be sure on the {objects} objects the check runs on: "
                "adapting for longer may help.")
    more = math.ceil((needed - objects) / fraction)
    return (measured + f". Too few objects to be sure at this gain: annotate about {more} more objects "
            "and adapt again.")


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
    from napari_fcfi.evaluation.runner import EngineSegmenter, run_object

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
            return AdaptationCheck(False, len(samples), max_clicks, nan, nan, math.nan, math.nan, math.nan,
                                   time.perf_counter() - start, cancelled=True,
                                   advice="The check was cancelled: nothing was measured; the current model stays.")
        results.append(ious)
    base_scores, adapted_scores = (_scores(r, max_clicks) for r in results)
    base_clicks = base_scores["noc85"] + base_scores["noc90"]
    adapted_clicks = adapted_scores["noc85"] + adapted_scores["noc90"]
    saved = [_object_clicks(b, max_clicks) - _object_clicks(a, max_clicks) for b, a in zip(*results)]
    confidence = paired_confidence(saved, seed)
    keep = bool(adapted_clicks < base_clicks and confidence >= KEEP_CONFIDENCE)
    check = AdaptationCheck(
        keep=keep, objects=len(samples), max_clicks=max_clicks,
        base=base_scores, adapted=adapted_scores, base_clicks=base_clicks, adapted_clicks=adapted_clicks,
        change_percent=100.0 * (adapted_clicks - base_clicks) / base_clicks if base_clicks else 0.0,
        seconds=time.perf_counter() - start, confidence=confidence, clicks_saved=[float(d) for d in saved],
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
    from napari_fcfi.training.finetune import finetune

    train_labels, held_labels = hold_back_objects(labels, fraction, seed)
    scaled = (lambda lo, hi: (lambda f, m: progress(lo + (hi - lo) * f, m))) if progress is not None else None
    adapted = finetune(model, images, train_labels, time_budget_s=time_budget_s, steps=steps, seed=seed,
                       progress=scaled(0.0, 0.8) if scaled else None)
    check = check_adaptation(model, adapted, images, held_labels, seed=seed,
                             progress=scaled(0.8, 1.0) if scaled else None)
    return adapted, check


# --------------------------------------------------------------------------------- memory probe
class PeakMemory:
    """Peak resident memory of this process above its level at entry (MiB), as a context manager.

    Linux: the kernel's high-water mark is reset at entry (``/proc/self/clear_refs``) and read at exit;
    elsewhere (or when the reset is refused) RSS is sampled every 10 ms by a thread.
    """

    def __init__(self) -> None:
        self.extra_mib = math.nan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            text = Path("/proc/self/status").read_text()
        except OSError:
            return None
        found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) if found else None

    @staticmethod
    def _rss_kib() -> int:
        value = PeakMemory._status("VmRSS")
        if value is not None:
            return value
        import psutil  # pragma: no cover - non-Linux

        return psutil.Process().memory_info().rss // 1024  # pragma: no cover

    def __enter__(self) -> PeakMemory:
        self._start = self._rss_kib()
        self._peak = self._start
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm = self._status("VmHWM") is not None
        except OSError:
            self._hwm = False
        if not self._hwm:
            def sample() -> None:
                while not self._stop.wait(0.01):
                    self._peak = max(self._peak, self._rss_kib())

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hwm:
            self._peak = max(self._peak, self._status("VmHWM") or 0)
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._peak = max(self._peak, self._rss_kib())
        self.extra_mib = (self._peak - self._start) / 1024


# ------------------------------------------------------------------------------------- protocol
@dataclass
class Entry:
    """One image (or slice) of a modality with its instance labels; ``ignore`` pixels never count."""

    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray | None = None
    name: str = ""


def membrane_entries(count: int = 10, seed: int = 2024, shape: tuple[int, int] = (256, 256)) -> list[Entry]:
    """Fresh procedural membrane/EM-like images (compartments with walls), seeded apart from training's."""
    from napari_fcfi.training.synthetic import compartments_image

    entries = []
    for index in range(count):
        image, labels = compartments_image(np.random.default_rng([seed, 4243, index]), shape)
        entries.append(Entry(image, labels, None, f"membrane-{index}"))
    return entries


def dsb_entries(folder: str | Path, modality: str) -> list[Entry]:
    """The DSB validation split's images of one modality (:func:`~napari_fcfi.training.data.image_modality`)."""
    from napari_fcfi.evaluation.datasets import split_instance_folder
    from napari_fcfi.training.data import MODALITIES, image_modality, load_instance_folder

    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    items = load_instance_folder(folder, split_instance_folder(folder)[1])
    return [Entry(item.image, item.labels, None, item.name) for item in items if image_modality(item) == modality]


def grabcut_entries(folder: str | Path) -> list[Entry]:
    """GrabCut (``<name>_image.*`` + ``<name>_gt.png``: 255 object, 128 ignore band), one object per image.

    The label image is the object with the ignore band split by distance: band pixels nearer the
    object than the background count as object (what a user's committed label would hold); the band
    is kept as ``ignore`` for the evaluation (as in :class:`~napari_fcfi.evaluation.datasets.GrabCutDataset`).
    """
    from scipy import ndimage as ndi

    from napari_fcfi.engine.io import read_image
    from napari_fcfi.evaluation.datasets import GrabCutDataset

    dataset = GrabCutDataset(folder)
    entries = []
    for name, image_path, mask_path in dataset._pairs:
        raw = np.asarray(read_image(mask_path, lazy=False))
        raw = raw[..., 0] if raw.ndim == 3 else raw
        image = np.asarray(read_image(image_path, lazy=False))
        image = image[..., :3] if image.ndim == 3 else image
        band = raw == 128
        labels = (raw > 128).astype(np.int32)
        if band.any():
            to_object = ndi.distance_transform_edt(~(raw > 128))
            to_background = ndi.distance_transform_edt(~(raw < 128))
            labels[band & (to_object < to_background)] = 1
        entries.append(Entry(image, labels, band if band.any() else None, name))
    return entries


def _summary(ious: list[list[float]], max_clicks: int) -> dict[str, float]:
    return {**_scores(ious, max_clicks), "objects": len(ious)}


def run_protocol(
    base: Any,
    entries: Sequence[Entry],
    *,
    name: str,
    time_budget_s: float = 180,
    steps: int | None = None,
    seed: int = 0,
    fraction: float = HOLDOUT_FRACTION,
    max_clicks: int = 20,
    eval_objects: int = 60,
    eval_min_area: int = 30,
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Any]:
    """Annotate then adapt on ``entries``: the first half is committed, the second half evaluated.

    The objects of ``entries[:ceil(n/2)]`` are the user's labels: :func:`adapt_with_check` holds
    ``fraction`` of them back, adapts on the rest and decides whether to keep the adapted model. The
    robot user (at most ``max_clicks``, sessions stopped at IoU 0.9) then segments at most
    ``eval_objects`` objects (area >= ``eval_min_area``) of ``entries[ceil(n/2):]`` with the base and
    the adapted model. Returns ``(report, adapted model)``: the report is a JSON-ready dict (counts,
    NoC@85/90 both ways, change in %, the decision, adaptation seconds and steps, peak extra memory of
    the adaptation, per-object IoUs).
    """
    from napari_fcfi.training.finetune import MIN_OBJECT_AREA, finetune

    if len(entries) < 2:
        raise ValueError(f"{name}: need at least 2 images (first half adapted on, second half evaluated)")
    half = (len(entries) + 1) // 2
    first, second = entries[:half], entries[half:]
    images = [e.image for e in first]
    train_labels, held_labels = hold_back_objects([e.labels for e in first], fraction, seed)
    n_train = sum(len([a for a in np.unique(t[t > 0], return_counts=True)[1] if a >= MIN_OBJECT_AREA])
                  for t in train_labels)
    n_held = sum(len(np.unique(h[h > 0])) for h in held_labels)
    say(f"{name}: {len(first)} images to adapt on ({n_train} objects, {n_held} held back), "
        f"{len(second)} to evaluate")
    last = [0.0]

    def progress(fraction_done: float, message: str) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            say(f"  {fraction_done:.0%} {message}")

    with PeakMemory() as memory:
        adapted = finetune(base, images, train_labels, time_budget_s=time_budget_s, steps=steps, seed=seed,
                           progress=progress)
    info = adapted.fcfi_metadata["adaptation"]
    say(f"  adapted: {info['steps']} steps in {info['seconds']:.0f} s, peak extra memory {memory.extra_mib:.0f} MiB")
    check = check_adaptation(base, adapted, images, held_labels, seed=seed, progress=progress)
    say(f"  held-back check on {check.objects} objects: clicks {check.base_clicks:.2f} -> "
        f"{check.adapted_clicks:.2f}, confidence {100 * check.confidence:.0f} %: "
        f"{'keep' if check.keep else 'revert'} ({check.seconds:.0f} s)")
    samples = object_samples([e.image for e in second], [e.labels for e in second],
                             ignores=[e.ignore for e in second], max_objects=eval_objects,
                             min_area=eval_min_area, seed=seed, names=[e.name for e in second])
    evaluated: dict[str, Any] = {}
    for label, model in (("base", base), ("adapted", adapted)):
        t0 = time.perf_counter()
        ious = robot_ious(model, samples, max_clicks)
        evaluated[label] = {**_summary(ious, max_clicks), "seconds": round(time.perf_counter() - t0, 1),
                            "ious": {s.sample_id: i for s, i in zip(samples, ious)}}
        say(f"  {label}: NoC@85 {evaluated[label]['noc85']:.2f}, NoC@90 {evaluated[label]['noc90']:.2f} "
            f"on {len(samples)} objects")
    change = {
        key: 100.0 * (evaluated["adapted"][key] - evaluated["base"][key]) / evaluated["base"][key]
        for key in ("noc85", "noc90")
    }
    report = {
        "modality": name,
        "images": {"adapted_on": len(first), "evaluated": len(second)},
        "objects": {"trained": n_train, "held_back": n_held, "checked": check.objects, "evaluated": len(samples)},
        "base": evaluated["base"],
        "adapted": evaluated["adapted"],
        "change_percent": change,
        "check": check.to_dict(),
        "kept": check.keep,
        "adaptation": {k: v for k, v in info.items() if k != "held_back_check"},
        "peak_extra_memory_mib": round(memory.extra_mib, 1),
        "settings": {"time_budget_s": time_budget_s, "steps": steps, "seed": seed, "fraction": fraction,
                     "max_clicks": max_clicks, "eval_objects": eval_objects, "eval_min_area": eval_min_area},
    }
    return report, adapted


__all__ = [
    "KEEP_CONFIDENCE", "AdaptationCheck", "Entry", "PeakMemory", "adapt_with_check", "check_adaptation",
    "dsb_entries", "grabcut_entries", "hold_back_objects", "membrane_entries", "object_samples", "objects_needed",
    "paired_confidence", "robot_ious", "run_protocol",
]
