"""Evaluation of segment-all: detection quality and whole-image annotation effort.

Per image:

* **F1 at IoU 0.5** with one-to-one matching (an IoU above 0.5 can only pair one object with one
  proposal, so greedy matching by IoU is the optimum) and the **mean IoU** of the matches;
* **effort from the proposals**: one action to accept all; each matched proposal below
  ``good_iou`` (0.85) is corrected by the robot user (``evaluation.robot``) in an engine session
  whose initial mask is the proposal (clicks until ``good_iou``, at most ``max_clicks``); each
  unmatched proposal is deleted (one action); each missed object is annotated from scratch with
  robot clicks;
* **effort from scratch**: robot clicks for every object until ``good_iou`` (at most ``max_clicks``).

The classical baseline (:func:`classical_instances`) is Otsu on the Gaussian-smoothed normalised
image plus a distance-transform watershed; its variants are tuned on the training split only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from napari_fcfi.annotation.proposals import iter_segment_all, segment_all
from napari_fcfi.annotation.seeds import gray_view
from napari_fcfi.engine.intensity import ImageSource
from napari_fcfi.engine.io import read_image
from napari_fcfi.engine.windows import full_box

from .layouts import instance_folder_pairs
from .runner import run_object
from .samples import Sample
from .segmenters import EngineSegmenter
from .splits import split_instance_folder

GOOD_IOU = 0.85
SEGMENT_ALL_SETS = ("DSB fluorescence", "mnfinder")


@dataclass
class ImageScore:
    """Detection quality and effort on one image (``None`` effort: not measured)."""

    name: str
    n_objects: int
    n_proposals: int
    f1: float
    mean_iou: float
    effort_proposals: int | None = None
    effort_scratch: int | None = None


def match_instances(gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one ``(gt id, pred id, IoU)`` pairs with IoU above ``threshold`` (>= 0.5: unique)."""
    g = gt.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    both = (g > 0) & (p > 0)
    pairs, overlap = np.unique(np.stack([g[both], p[both]]), axis=1, return_counts=True)
    g_area = np.bincount(g)
    p_area = np.bincount(p)
    candidates = []
    for (gi, pi), inter in zip(pairs.T, overlap, strict=True):
        iou = inter / (g_area[gi] + p_area[pi] - inter)
        if iou > threshold:
            candidates.append((float(iou), int(gi), int(pi)))
    candidates.sort(reverse=True)
    used_g: set[int] = set()
    used_p: set[int] = set()
    matches = []
    for iou, gi, pi in candidates:
        if gi in used_g or pi in used_p:
            continue
        used_g.add(gi)
        used_p.add(pi)
        matches.append((gi, pi, iou))
    return matches


def detection_scores(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, list[tuple[int, int, float]]]:
    """(F1 at IoU 0.5, mean IoU of the matches, matches)."""
    n_gt = len(np.unique(gt[gt > 0]))
    n_pred = len(np.unique(pred[pred > 0]))
    matches = match_instances(gt, pred)
    denominator = n_gt + n_pred
    f1 = 2 * len(matches) / denominator if denominator else 1.0
    mean_iou = float(np.mean([m[2] for m in matches])) if matches else 0.0
    return f1, mean_iou, matches


def _clicks_to(
    segmenter: EngineSegmenter,
    image: np.ndarray,
    gt_mask: np.ndarray,
    max_clicks: int,
    initial: np.ndarray | None = None,
) -> int:
    sample = Sample(image=image, gt_mask=gt_mask, ignore_mask=None, sample_id="segment-all")
    result = run_object(segmenter, sample, max_clicks=max_clicks, stop_iou=GOOD_IOU, initial_mask=initial)
    return max(1, len(result.clicks))


def annotation_effort(
    segmenter: EngineSegmenter,
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    max_clicks: int = 10,
    scratch_cache: dict[int, int] | None = None,
) -> tuple[int, int]:
    """(actions starting from ``pred``, actions from scratch) for the whole image (see module doc).

    ``scratch_cache`` (gt id -> clicks) shares from-scratch runs between segmenters on the same image.
    """
    cache = {} if scratch_cache is None else scratch_cache
    ids = [int(i) for i in np.unique(gt) if i]

    def scratch(gi: int) -> int:
        if gi not in cache:
            cache[gi] = _clicks_to(segmenter, image, gt == gi, max_clicks)
        return cache[gi]

    matches = match_instances(gt, pred)
    matched_g = {m[0] for m in matches}
    matched_p = {m[1] for m in matches}
    actions = 1 if matches else 0  # accept all
    for gi, pi, iou in matches:
        if iou < GOOD_IOU:
            actions += _clicks_to(segmenter, image, gt == gi, max_clicks, initial=pred == pi)
    actions += sum(1 for pi in np.unique(pred) if pi and int(pi) not in matched_p)  # delete false ones
    actions += sum(scratch(gi) for gi in ids if gi not in matched_g)  # add missed objects
    return actions, sum(scratch(gi) for gi in ids)


# ------------------------------------------------------------------ classical baseline
@dataclass(frozen=True)
class ClassicalVariant:
    """Otsu + distance-transform watershed parameters."""

    sigma: float = 1.0
    min_distance: int = 5
    min_area: int = 15

    @property
    def name(self) -> str:
        return f"otsu-watershed(s={self.sigma:g},d={self.min_distance},a={self.min_area})"


CLASSICAL_VARIANTS = tuple(
    ClassicalVariant(sigma, distance, area)
    for sigma in (1.0, 2.0)
    for distance in (3, 5, 8)
    for area in (10, 30)
)


def classical_instances(image: np.ndarray, variant: ClassicalVariant) -> np.ndarray:
    """Instance labels (int32) from Otsu on the smoothed normalised image and a distance watershed."""
    channel_axis = -1 if image.ndim == 3 and image.shape[-1] not in (3, 4) else None
    source = ImageSource(image, channel_axis=channel_axis)
    gray = gray_view(source, full_box(source.height, source.width))
    smooth = ndi.gaussian_filter(gray, variant.sigma)
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(gray.shape, np.int32)
    threshold = threshold_otsu(smooth)
    foreground = smooth > threshold
    if foreground.mean() > 0.5:  # dark objects on a bright background
        foreground = ~foreground
    distance = ndi.distance_transform_edt(foreground)
    markers_at = peak_local_max(
        distance, min_distance=variant.min_distance, labels=ndi.label(foreground)[0], exclude_border=False
    )
    markers = np.zeros(gray.shape, np.int32)
    markers[tuple(markers_at.T)] = np.arange(1, len(markers_at) + 1)
    labels = watershed(-distance, markers, mask=foreground).astype(np.int32)
    areas = np.bincount(labels.ravel())
    labels[areas[labels] < variant.min_area] = 0
    return labels


def tune_classical(
    images: list[tuple[np.ndarray, np.ndarray]], variants: tuple[ClassicalVariant, ...] = CLASSICAL_VARIANTS
) -> tuple[ClassicalVariant, float]:
    """The variant with the best mean F1 at IoU 0.5 on ``images`` (training images) and that F1."""
    best: tuple[ClassicalVariant, float] | None = None
    for variant in variants:
        f1 = float(
            np.mean([detection_scores(gt, classical_instances(image, variant))[0] for image, gt in images])
        )
        if best is None or f1 > best[1]:
            best = (variant, f1)
    assert best is not None
    return best


MIN_SCORE_GRID = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
PROPOSAL_THRESHOLD_GRID = (0.25, 0.3, 0.35, 0.4)
#: Mean F1 differences below this are noise on the 24 tuning images: among the pairs that close to the
#: best, the highest mask cut (tighter masks: a higher mean IoU of the matches) and then the lowest
#: ``min_score`` win.
F1_TIE = 0.005


def tune_proposals(
    model: Any,
    images: Sequence[tuple[np.ndarray, np.ndarray]],
    thresholds: Sequence[float] = PROPOSAL_THRESHOLD_GRID,
    grid: Sequence[float] = MIN_SCORE_GRID,
) -> tuple[float, float, dict[tuple[float, float], float]]:
    """The segment-all ``(proposal_threshold, min_score)`` with the best mean F1@0.5 on ``images``
    (training images only; ties within :data:`F1_TIE`: the higher cut, the lower score), and the mean
    F1 of every pair.

    Segment-all runs once per image and proposal threshold with ``min_score=0``; each ``min_score``
    then drops the proposals scoring below it (the space they took stays empty: a close approximation
    of running with it).
    """
    f1s: dict[tuple[float, float], list[float]] = {(float(t), float(m)): [] for t in thresholds for m in grid}
    for image, gt in images:
        for cut in thresholds:
            steps = iter_segment_all(model, image, min_score=0.0, proposal_threshold=float(cut))
            while True:
                try:
                    next(steps)
                except StopIteration as stop:
                    result = stop.value
                    break
            kept_label = np.zeros(int(result.labels.max()) + 1, np.int32)
            for score_cut in grid:
                kept_label[:] = 0
                for label, score in result.scores.items():
                    kept_label[label] = label if score >= score_cut else 0
                f1s[(float(cut), float(score_cut))].append(detection_scores(gt, kept_label[result.labels])[0])
    means = {pair: float(np.mean(v)) if v else 0.0 for pair, v in f1s.items()}
    cut, min_score = choose_proposal_cuts(means)
    return cut, min_score, means


def choose_proposal_cuts(means: dict[tuple[float, float], float]) -> tuple[float, float]:
    """``(proposal_threshold, min_score)`` from the mean F1 of each pair (the rule of :func:`tune_proposals`)."""
    top = max(means.values())
    close = [pair for pair, f1 in means.items() if f1 >= top - F1_TIE]
    return max(close, key=lambda pair: (pair[0], -pair[1]))


def score_image(
    name: str,
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    effort: Callable[[np.ndarray], tuple[int, int]] | None = None,
) -> ImageScore:
    f1, mean_iou, _ = detection_scores(gt, pred)
    score = ImageScore(name, len(np.unique(gt[gt > 0])), len(np.unique(pred[pred > 0])), f1, mean_iou)
    if effort is not None:
        score.effort_proposals, score.effort_scratch = effort(pred)
    return score


# ------------------------------------------------------------------ the whole evaluation
def _read_pair(image_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(read_image(image_path, lazy=False))
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    return image, np.asarray(read_image(labels_path, lazy=False))


def evaluation_sets(
    dsb_folder: str | Path, mnfinder_folder: str | Path, split: str, limit: int | None = None
) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """``{set name: [(image id, image, labels)]}``: DSB fluorescence and mnfinder, ``split`` "val" or "train"."""
    dsb_train, dsb_val = split_instance_folder(dsb_folder)
    dsb_pairs = {p[0]: p for p in instance_folder_pairs(dsb_folder)}
    dsb = []
    for image_id in dsb_val if split == "val" else dsb_train:
        image, labels = _read_pair(*dsb_pairs[image_id][1:])
        if _is_fluorescence(image, labels):
            dsb.append((image_id, image, labels))
        if limit is not None and len(dsb) >= limit:
            break
    mn_pairs = instance_folder_pairs(Path(mnfinder_folder) / split)[:limit]
    mnfinder = [(p[0], *_read_pair(p[1], p[2])) for p in mn_pairs]
    return {SEGMENT_ALL_SETS[0]: dsb, SEGMENT_ALL_SETS[1]: mnfinder}


def _is_fluorescence(image: np.ndarray, labels: np.ndarray) -> bool:
    """Same rule as ``training.data.image_modality`` == "dark background" (grey, objects brighter)."""
    data = np.asarray(image, np.float32)
    if data.ndim == 3 and data.shape[-1] >= 3:
        rgb = data[..., :3]
        if float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean()) > 0.02 * max(
            float(rgb.max() - rgb.min()), 1e-6
        ):
            return False
        data = rgb.mean(-1)
    inside = labels > 0
    if not inside.any() or inside.all():
        return True
    return not data[inside].mean() < data[~inside].mean()


def run_evaluation(
    model: Any,
    dsb_folder: str | Path,
    mnfinder_folder: str | Path,
    *,
    limit: int | None = None,
    tune_limit: int = 20,
    max_clicks: int = 10,
    effort: bool = True,
    sets: Sequence[str] | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Segment-all and the tuned classical baseline on both validation sets; a JSON-able report."""
    train = evaluation_sets(dsb_folder, mnfinder_folder, "train", tune_limit)
    val = evaluation_sets(dsb_folder, mnfinder_folder, "val", limit)
    segmenter = EngineSegmenter(model)
    report: dict[str, Any] = {"max_clicks": max_clicks, "good_iou": GOOD_IOU, "sets": {}}
    for set_name, images in val.items():
        if sets and set_name not in sets:
            continue
        variant, train_f1 = tune_classical([(image, gt) for _, image, gt in train[set_name]])
        log(
            f"{set_name}: classical variant {variant.name} (train F1 {train_f1:.3f}), {len(images)} val images"
        )
        rows: dict[str, list[dict[str, Any]]] = {"segment-all": [], "classical": []}
        for image_id, image, gt in images:
            cache: dict[int, int] = {}
            start = time.perf_counter()
            proposals = segment_all(model, image)
            seconds = time.perf_counter() - start
            for method, pred in (
                ("segment-all", proposals),
                ("classical", classical_instances(image, variant)),
            ):
                score = score_image(
                    image_id,
                    image,
                    gt,
                    pred,
                    (
                        (
                            lambda p, c=cache, i=image, g=gt: annotation_effort(
                                segmenter, i, g, p, max_clicks, c
                            )
                        )
                        if effort
                        else None
                    ),
                )
                row = asdict(score)
                if method == "segment-all":
                    row["seconds"] = seconds
                rows[method].append(row)
                log(f"  {method:12s} {image_id} {row}")
        report["sets"][set_name] = {
            "classical_variant": variant.name,
            "classical_train_f1": train_f1,
            "rows": rows,
        }
    return report


def summary_table(report: dict[str, Any]) -> str:
    """Markdown table: per set and method, mean F1@0.5, mean IoU of matches, actions vs from scratch."""
    lines = [
        (
            "| set | method | images | objects | F1@0.5 | mean IoU of matches | actions from proposals | "
            "actions from scratch | scratch / proposals |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for set_name, entry in report["sets"].items():
        for method, rows in entry["rows"].items():
            if not rows:
                continue
            label = method if method == "segment-all" else entry["classical_variant"]
            f1 = np.mean([r["f1"] for r in rows])
            miou = np.mean([r["mean_iou"] for r in rows])
            prop = [r["effort_proposals"] for r in rows if r["effort_proposals"] is not None]
            scratch = [r["effort_scratch"] for r in rows if r["effort_scratch"] is not None]
            effort = (
                f"{sum(prop)} | {sum(scratch)} | {sum(scratch) / max(sum(prop), 1):.2f}x"
                if prop
                else "- | - | -"
            )
            lines.append(
                f"| {set_name} | {label} | {len(rows)} | {sum(r['n_objects'] for r in rows)} | "
                f"{f1:.3f} | {miou:.3f} | {effort} |"
            )
    return "\n".join(lines)
