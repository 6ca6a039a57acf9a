"""Segment all: an FCFI proposal for every object of a 2D image, from one automatic click each.

:func:`segment_all` finds seeds (:mod:`.seeds`, or takes the caller's), gives every seed the engine's
first-click prediction (:meth:`~napari_fcfi.engine.InteractiveSegmenter.first_click_predictions`,
batched through the network) and turns the masks into one labels image:

* each seed's network run is on a window of :data:`WINDOW_FACTOR` times the object size around it, at
  :data:`PROPOSAL_INPUT_SIZE` pixels, in one pass (the window doubles while the mask touches its
  border, as the engine's first click does);
* seeds run strongest first, in chunks; a seed already inside an accepted object is skipped (no
  network run);
* within a chunk proposals are accepted in score order (score = mean probability inside the mask);
  below ``min_score`` they are dropped;
* every proposal that passes ``min_score`` gets a second network pass with its first mask as feedback
  (the same click again: FCFI's feedback modules correct the boundary), on a square of
  :data:`REFINE_ZOOM` times the first mask's box at :data:`REFINE_INPUT_SIZE` pixels; its mask replaces
  the first one, the score stays the first pass's. First 12 DSB fluorescence / 3 mnfinder training
  images, model v2: mean IoU of matches 0.849 -> 0.877 / 0.896 -> 0.917, F1@0.5 within 0.003, 1.5x
  the time (the same window at 192 px: the same quality in 2x the time); both passes are cut at the
  model's ``proposal_threshold`` (calibrated per model, :func:`model_proposal_threshold`);
* then one more seed per foreground component no proposal covers (:data:`UNCOVERED_FRACTION`;
  not when the caller gives the seeds), proposed the same way;
* every pixel belongs to at most one object: a proposal keeps only pixels no earlier object took,
  and is dropped as a duplicate when less than half of it is left, or when it is smaller than
  ``min_area_fraction`` of the expected object area or larger than ``max_area_factor`` times it
  (a click that flooded the background);
* everything is deterministic (seed order, score order, label ids in acceptance order).

Memory: the labels (int32, the image size), the normalised tiles of the seed detector and one chunk
of window-sized probability patches; the image itself is read lazily by the engine.

Bad input (empty, constant or tiny image, no seeds) gives an empty labels image and a message
(:class:`SegmentAllWarning` from :func:`segment_all`, the ``message`` of :class:`SegmentAllResult` from
:func:`iter_segment_all`), never an exception.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.engine.windows import Box, Patch

from .seeds import (
    MIN_OBJECT_SIZE,
    choose_object_size,
    detect_seeds,
    estimate_object_size,
    gray_view,
    object_size_from_labels,
    uncovered_seeds,
)

#: Proposals whose mean probability inside the mask is below this are dropped, for models without their
#: own ``segment_all.min_score`` metadata (:func:`model_min_score`): best F1@0.5 over 0.5-0.8 on the first
#: 12 DSB fluorescence and 12 mnfinder training images with bundled model v1 (proposal threshold 0.4).
DEFAULT_MIN_SCORE = 0.6
#: Proposal masks are the probability above this (the interactive threshold is 0.49), for models
#: without their own ``segment_all.proposal_threshold`` (:func:`model_proposal_threshold`): the
#: first-click masks of nuclei stop short of their dim rims. Same training images, model v1: F1@0.5
#: 0.893 / 0.890 (DSB / mnfinder) against 0.889 / 0.863 at 0.49 and 0.849 / 0.874 at 0.3 (each at its
#: best min_score); model v3 is best at 0.3 (how far a network's probability reaches past the rim
#: depends on the network, so ``scripts/line_report.py calibrate`` chooses it per model).
PROPOSAL_THRESHOLD = 0.4
#: Seeds are detected at this fraction of the object size: touching objects then still get one peak
#: each (first 8 DSB fluorescence and mnfinder training images: 3-5 % more objects get a seed).
SEED_SCALE = 0.7
#: Smallest image side segment-all works on.
MIN_IMAGE_SIDE = 8
#: Proposal window side = this times the object size (at least :data:`MIN_PROPOSAL_WINDOW` pixels), run
#: at :data:`PROPOSAL_INPUT_SIZE` pixels in one pass, instead of the interactive first click's 256-px
#: focus window plus zoom-in pass. Chosen on the training images (first 12 DSB fluorescence and 12
#: mnfinder train images, bundled model v1, min_score 0.65; docs/evaluation.md, *Segment all*): F1@0.5
#: 0.895 / 0.856 against 0.879 / 0.846, in a quarter of the time.
WINDOW_FACTOR = 3.0
PROPOSAL_INPUT_SIZE = 192
MIN_PROPOSAL_WINDOW = 48
#: The refining pass runs on a square of this many times the first mask's box at this network size.
REFINE_ZOOM: float | None = 2.0
REFINE_INPUT_SIZE: int | None = 128
#: After the detected seeds, one more seed per component of the Otsu foreground that no proposal covers
#: and that is at least this share of the expected object area (its innermost pixel): nuclei whose
#: blob peak a brighter touching neighbour swallowed. Larger than micronuclei and debris, which an
#: earlier round without an area floor proposed on mnfinder. Training images, model v3 (first 80 DSB
#: fluorescence / 20 mnfinder ``train/``): F1@0.5 0.860 -> 0.869 / 0.899 -> 0.903 (0.25: 0.886 vs
#: 0.876 / 0.883 vs 0.888 on the first 30 / 10; 0.75: 0.867 / 0.901), 1 % more time. None: no round.
UNCOVERED_FRACTION: float | None = 0.5

ProgressCallback = Callable[[int, int], Any]


def _calibrated(model: Any, key: str, default: float) -> float:
    """``model``'s metadata ``segment_all.<key>`` when it is a number in [0, 1), else ``default``."""
    metadata = getattr(model, "fcfi_metadata", None)
    calibration = metadata.get("segment_all") if isinstance(metadata, dict) else None
    value = calibration.get(key) if isinstance(calibration, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= float(value) < 1.0:
        return float(value)
    return default


def model_min_score(model: Any) -> float:
    """The proposal score threshold for ``model``: its metadata's ``segment_all.min_score`` (written by
    ``scripts/line_report.py calibrate``: how sure a network is depends on the network), else
    :data:`DEFAULT_MIN_SCORE`."""
    return _calibrated(model, "min_score", DEFAULT_MIN_SCORE)


def model_proposal_threshold(model: Any) -> float:
    """The probability cut of ``model``'s proposal masks: its metadata's ``segment_all.proposal_threshold``
    (written by ``scripts/line_report.py calibrate``), else :data:`PROPOSAL_THRESHOLD`."""
    return _calibrated(model, "proposal_threshold", PROPOSAL_THRESHOLD)


class SegmentAllWarning(UserWarning):
    """Segment-all found nothing to segment (the message says why)."""


@dataclass
class SegmentAllResult:
    """Labels (int32, the image's 2D shape), the object size and seeds used, and a message when empty."""

    labels: np.ndarray
    object_size: float | None = None
    size_from: str | None = None  # "given", "image" (estimated) or "labelled" (the labelled objects')
    seeds: list[tuple[int, int]] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)
    label_seeds: dict[int, tuple[int, int]] = field(default_factory=dict)
    message: str | None = None


def drop_labelled(
    proposals: np.ndarray, labels: np.ndarray | None, share: float = 0.5
) -> tuple[np.ndarray, int]:
    """``proposals`` without those lying ``share`` or more on objects of ``labels`` (the user's labels
    of the same plane: a Segment all run again after some commits proposes only what is not labelled
    yet); returns ``(proposals, how many were dropped)``."""
    proposals = np.asarray(proposals)
    if labels is None or not proposals.any():
        return proposals, 0
    on_labels = np.asarray(labels) > 0
    if not on_labels.any():
        return proposals, 0
    size = int(proposals.max()) + 1
    total = np.zeros(size, np.int64)
    for start in range(0, proposals.shape[0], 1024):  # by rows: bincount's int64 copy stays small
        total += np.bincount(proposals[start : start + 1024].ravel(), minlength=size)
    covered = np.bincount(proposals[on_labels], minlength=size)
    drop = (covered >= share * total) & (total > 0)
    drop[0] = False
    if not drop.any():
        return proposals, 0
    return np.where(drop[proposals], 0, proposals).astype(proposals.dtype), int(drop.sum())


def segment_all(
    model: Any,
    image: Any,
    *,
    object_size: float | None = None,
    seeds: Sequence[tuple[float, float]] | None = None,
    min_score: float | None = None,
    channel_axis: int | None = None,
    channel: int | Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    labelled: np.ndarray | None = None,
    **settings: Any,
) -> np.ndarray:
    """Labels (int32, the image's 2D shape) with one FCFI proposal per object of ``image``.

    ``model``: an FCFI network (``load_model()``); ``image``: 2D, RGB(A) or 2D plus ``channel_axis``
    (``channel`` picks channels as in the engine); ``object_size``: expected object diameter in
    pixels (when None: estimated from the image, or the median size of the objects in ``labelled``
    when it holds 3 or more and the estimate is far from it, :func:`.seeds.choose_object_size`); ``labelled``: the image's existing labels (2D, 0 = none), whose objects
    are not proposed again (no seed on them; a proposal lying half or more on them is dropped); ``min_score``: proposals scoring below it are dropped
    (None: the model's own, :func:`model_min_score`); ``seeds``: ``(row, col)`` points to use instead of
    the detector; ``progress(done, total)`` is called after every chunk of seeds; ``settings`` go to
    the engine (``InteractiveSegmenter``) plus ``batch_size``, ``min_area_fraction``,
    ``max_area_factor`` and ``min_contrast`` (see :func:`iter_segment_all`). When nothing can be
    segmented the labels are empty and a :class:`SegmentAllWarning` says why.
    """
    steps = iter_segment_all(
        model,
        image,
        object_size=object_size,
        seeds=seeds,
        min_score=min_score,
        channel_axis=channel_axis,
        channel=channel,
        labelled=labelled,
        **settings,
    )
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            result: SegmentAllResult = stop.value
            break
        if progress is not None:
            progress(done, total)
    if result.message:
        warnings.warn(result.message, SegmentAllWarning, stacklevel=2)
    return result.labels


def iter_segment_all(
    model: Any,
    image: Any,
    *,
    object_size: float | None = None,
    seeds: Sequence[tuple[float, float]] | None = None,
    min_score: float | None = None,
    channel_axis: int | None = None,
    channel: int | Sequence[int] | None = None,
    batch_size: int = 16,
    chunk_size: int = 64,
    min_area_fraction: float = 0.1,
    max_area_factor: float = 16.0,
    min_contrast: float = 0.03,
    window_factor: float = WINDOW_FACTOR,
    proposal_input_size: int | None = PROPOSAL_INPUT_SIZE,
    proposal_threshold: float | None = None,
    refine: bool = True,
    refine_zoom: float | None = REFINE_ZOOM,
    refine_input_size: int | None = REFINE_INPUT_SIZE,
    uncovered_fraction: float | None = UNCOVERED_FRACTION,
    labelled: np.ndarray | None = None,
    **settings: Any,
) -> Generator[tuple[int, int], None, SegmentAllResult]:
    """:func:`segment_all` as a generator: yields ``(seeds done, seeds total)``, returns the result.

    Stopping the generator early (a Cancel button) costs at most one network batch of seeds and the
    passes with enlarged windows it needs (it yields after each batch). ``chunk_size`` seeds are
    run per chunk, ``batch_size`` network windows per forward pass. Proposal windows are
    ``window_factor`` times the object size, run at ``proposal_input_size`` pixels (None: the engine's
    ``input_size``) and cut at ``proposal_threshold`` (None: the model's own,
    :func:`model_proposal_threshold`); with ``refine`` every proposal that passes
    ``min_score`` gets a second pass with the first mask as feedback
    (:meth:`~napari_fcfi.engine.InteractiveSegmenter.refine_predictions` with ``refine_zoom`` and
    ``refine_input_size``; None: the first window, the engine's size); ``uncovered_fraction``: the
    second seeding round's least component area (share of the expected object area; None: no round,
    :data:`UNCOVERED_FRACTION`); engine settings given explicitly
    (``focus_size``, ``input_size``, ``first_click_zoom``, ``threshold``) win over these.
    """
    session = InteractiveSegmenter(model, **settings)
    try:
        session.set_image(image, channel_axis=channel_axis, channel=channel)
    except ValueError as error:
        shape = list(getattr(image, "shape", ()))
        if channel_axis is not None and -len(shape) <= channel_axis < len(shape):
            del shape[channel_axis]  # the labels have the plane's shape, never the channels'
        plane = len(shape) == 2 or (channel_axis is None and len(shape) == 3 and shape[-1] in (3, 4))
        if not plane and len(shape) > 2:  # no 2D shape to give empty labels of (e.g. Z, C, Y, X)
            raise ValueError(f"segment all takes one 2D image: {error}") from error
        return SegmentAllResult(
            np.zeros(shape[:2] if len(shape) >= 2 else (0, 0), np.int32),
            message=f"segment all: cannot use this image: {error}",
        )
    height, width = session.image_shape
    labels = np.zeros((height, width), np.int32)
    if labelled is not None:
        labelled = np.asarray(labelled)
        if labelled.shape != (height, width):
            raise ValueError(f"labelled has the shape {labelled.shape}, the image's plane {(height, width)}")
    if min(height, width) < MIN_IMAGE_SIDE:
        return SegmentAllResult(
            labels,
            message=(
                f"segment all: the image ({height} x {width}) is too small; it needs at least "
                f"{MIN_IMAGE_SIDE} pixels on each side"
            ),
        )
    from_image = session.image_source
    if seeds is None:
        gray = gray_view(
            from_image, Box(0, height - 1, 0, width - 1), max(1, int(math.sqrt(height * width / 1e6)))
        )
        if float(gray.max()) == float(gray.min()):
            return SegmentAllResult(labels, message="segment all: the image is constant (no objects to find)")
    size_from = "given"
    if object_size is None:
        from_labels = None if labelled is None else object_size_from_labels([labelled])[0]
        object_size, size_from = choose_object_size(estimate_object_size(from_image), from_labels)
        if object_size is None:
            return SegmentAllResult(
                labels,
                message=(
                    "segment all: could not estimate the object size (no foreground found); "
                    "pass object_size or seeds"
                ),
            )
    if not math.isfinite(float(object_size)) or float(object_size) <= 0:
        raise ValueError(f"object_size must be a positive number of pixels, got {object_size!r}")
    object_size = max(float(object_size), MIN_OBJECT_SIZE)
    detected: list[tuple[int, int]] = []
    if seeds is None:
        detected = detect_seeds(from_image, SEED_SCALE * object_size, min_contrast=min_contrast)
        points = _unlabelled(detected, labelled)
    else:
        seeds = list(seeds)  # (a generator is read once)
        points = [(math.floor(r + 0.5), math.floor(c + 0.5)) for r, c in seeds]
        points = [(r, c) for r, c in points if 0 <= r < height and 0 <= c < width]
    if not points:
        return SegmentAllResult(
            labels,
            object_size=object_size,
            size_from=size_from,
            message=(
                f"segment all: all {len(seeds)} given seed(s) lie outside the {height} x {width} image"
                if seeds
                else f"segment all: every seed found ({len(detected)}, object size {object_size:.1f} px) lies "
                "on a labelled object: nothing new to propose"
                if detected
                else f"segment all: no seeds found (object size {object_size:.1f} px); "
                "try another object size or give seeds"
            ),
        )

    proposal_settings: dict[str, Any] = {
        "focus_size": max(MIN_PROPOSAL_WINDOW, round(window_factor * object_size)),
        "first_click_zoom": None,
        "threshold": float(
            model_proposal_threshold(model) if proposal_threshold is None else proposal_threshold
        ),
    }
    if proposal_input_size is not None:
        proposal_settings["input_size"] = int(proposal_input_size)
    proposer = InteractiveSegmenter(model, **{**proposal_settings, **settings})
    proposer.set_image(image, channel_axis=channel_axis, channel=channel)

    if min_score is None:
        min_score = model_min_score(model)
    expected_area = math.pi * (object_size / 2) ** 2
    builder = _LabelsBuilder(
        proposer,
        labels,
        min_score=float(min_score),
        min_area=max(4, int(min_area_fraction * expected_area)),
        max_area=max_area_factor * expected_area,
        refine=(refine_zoom, refine_input_size) if refine else None,
        batch_size=batch_size,
    )
    total = len(points)
    yield 0, total
    for start in range(0, total, chunk_size):
        part = points[start : start + chunk_size]
        for share in builder.propose(part):  # after each network batch of seeds: Cancel waits for one
            yield min(start + int(share * len(part)), total), total
    if uncovered_fraction is not None and seeds is None:
        # the labelled objects count as covered: a region's one seed must not fall on them
        covered = labels if labelled is None else np.where(labelled > 0, 1, labels)
        extra = _unlabelled(
            uncovered_seeds(from_image, covered, uncovered_fraction * expected_area), labelled
        )
        if extra:
            points = points + extra
            yield total, len(points)
            total = len(points)
            for share in builder.propose(extra):
                yield min(total - len(extra) + int(share * len(extra)), total), total
    scores, label_seeds = builder.scores, builder.label_seeds
    labels, left_out = drop_labelled(labels, labelled)
    if left_out:
        present = set(np.unique(labels).tolist())
        scores = {label: score for label, score in scores.items() if label in present}
        label_seeds = {label: seed for label, seed in label_seeds.items() if label in present}
    message = None
    if not scores and left_out:
        message = f"segment all: every object found ({left_out}) is labelled already"
    elif not scores:
        message = (
            f"segment all: no object passed the checks ({total} seeds, object size {object_size:.1f} px, "
            f"min_score {min_score})"
        )
    return SegmentAllResult(
        labels,
        object_size=object_size,
        size_from=size_from,
        seeds=list(points),
        scores=scores,
        label_seeds=label_seeds,
        message=message,
    )


def _unlabelled(points: list[tuple[int, int]], labelled: np.ndarray | None) -> list[tuple[int, int]]:
    """The seeds not on an object of ``labelled`` (the user's labels)."""
    if labelled is None:
        return points
    return [(r, c) for r, c in points if not labelled[r, c]]


class _LabelsBuilder:
    """Accepts proposals into ``labels`` chunk by chunk (the rules of the module docstring)."""

    def __init__(
        self,
        proposer: InteractiveSegmenter,
        labels: np.ndarray,
        *,
        min_score: float,
        min_area: int,
        max_area: float,
        refine: tuple[float | None, int | None] | None,
        batch_size: int,
    ) -> None:
        self.proposer, self.labels = proposer, labels
        self.min_score, self.min_area, self.max_area = min_score, min_area, max_area
        self.refine, self.batch_size = refine, batch_size
        self.scores: dict[int, float] = {}
        self.label_seeds: dict[int, tuple[int, int]] = {}

    def propose(self, points: Sequence[tuple[int, int]]) -> Iterator[float]:
        """Propose the chunk ``points``; yields the share of its network work done after each batch
        (the last yield, 1.0, once its proposals are in the labels)."""
        labels, proposer, threshold = self.labels, self.proposer, self.proposer.threshold
        chunk = [p for p in points if labels[p] == 0]
        size = self.batch_size
        passes = 2 if self.refine is not None else 1
        patches: list[Patch | None] = []
        for start in range(0, len(chunk), size):
            patches += proposer.first_click_predictions(chunk[start : start + size], batch_size=size)
            yield len(patches) / (passes * len(chunk))
        firsts: list[tuple[tuple[float, tuple[int, int], Box, np.ndarray], Patch]] = []
        for seed, patch in zip(chunk, patches, strict=True):
            candidate = _candidate(patch, seed, threshold)
            if candidate is not None and patch is not None and candidate[0] >= self.min_score:
                firsts.append((candidate, patch))
        candidates = [candidate for candidate, _ in firsts]
        if self.refine is not None and firsts:
            zoom, input_size = self.refine
            refined: list[Patch] = []
            for start in range(0, len(firsts), size):
                part = firsts[start : start + size]
                refined += proposer.refine_predictions(
                    [c[1] for c, _ in part],
                    [p for _, p in part],
                    zoom=zoom,
                    input_size=input_size,
                    batch_size=size,
                )
                yield 0.5 + 0.5 * len(refined) / len(firsts)
            candidates = [_refined(c, p, threshold) for c, p in zip(candidates, refined, strict=True)]
        candidates.sort(key=lambda c: (-c[0], c[1]))
        for score, seed, box, mask in candidates:
            if labels[seed] != 0:
                continue
            area = int(mask.sum())
            if area > self.max_area:
                continue
            free = mask & (labels[box.slices] == 0)
            if free.sum() < 0.5 * area:
                continue  # mostly another object: a duplicate
            free = _component_at(free, (seed[0] - box.r0, seed[1] - box.c0))
            if int(free.sum()) < self.min_area:
                continue
            label = len(self.scores) + 1
            labels[box.slices][free] = label
            self.scores[label] = score
            self.label_seeds[label] = seed
        yield 1.0


def _candidate(
    patch: Patch | None, seed: tuple[int, int], threshold: float
) -> tuple[float, tuple[int, int], Box, np.ndarray] | None:
    """(score, seed, box, mask) of one first-click prediction, None when it is empty."""
    if patch is None:
        return None
    box = patch.bbox_above(threshold)
    if box is None:
        return None
    local = patch.read(box)
    mask = local > threshold
    return float(local[mask].mean()), seed, box, mask


def _refined(
    first: tuple[float, tuple[int, int], Box, np.ndarray], patch: Patch, threshold: float
) -> tuple[float, tuple[int, int], Box, np.ndarray]:
    """``first`` with the refined pass's mask; the score stays the first pass's (what ``min_score`` is
    calibrated on); an empty refined mask keeps the first pass's."""
    again = _candidate(patch, first[1], threshold)
    return first if again is None else (first[0], first[1], again[2], again[3])


def _component_at(mask: np.ndarray, point: tuple[int, int]) -> np.ndarray:
    """The connected component of ``mask`` at ``point`` (the largest one when ``point`` is outside it)."""
    components, count = ndi.label(mask)
    if count <= 1:
        return mask
    inside = 0 <= point[0] < mask.shape[0] and 0 <= point[1] < mask.shape[1]
    keep = (
        components[point]
        if inside and components[point]
        else int(np.argmax(np.bincount(components.ravel())[1:])) + 1
    )
    return components == keep
