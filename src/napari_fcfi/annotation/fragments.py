"""Fragments: two touching segment-all proposals that are one object are merged.

A textured nucleus (mnfinder's, with bright chromatin patches) can get two seeds, and each seed's
first-click mask covers only its part: two proposals of a third to a half of the nucleus, both
unmatched, so the user deletes both and annotates the nucleus from scratch. Two touching nuclei look
alike to the network (given the union of two small touching nuclei as feedback it keeps it), so the
decision comes from the image: between two nuclei lies a dark valley, inside one nucleus the line
between the fragments is as bright as the fragments. A touching pair is merged when

* the objects are at least :data:`MIN_OBJECT_SIZE` pixels across (the expected size);
* together they are no larger than :data:`MAX_AREA_FACTOR` times the expected object area;
* the mean normalised intensity on their shared border is at least :data:`MIN_BORDER_RATIO` times the
  dimmer fragment's mean (no valley; for dark objects the image is inverted first);
* the network, given their union as feedback and a click at its most interior point, keeps at least
  :data:`MIN_KEPT` of each fragment and takes less than :data:`MAX_FOREIGN` of its mask from other
  objects.

Training images (first 12 DSB fluorescence and 12 mnfinder ``train/``), bundled model v2: of 45
touching pairs within the area limit, 37 were one nucleus (ground truth) and 30 of them have a border
ratio >= 1.0; of the 8 that were two nuclei, 1 does (two small DSB nuclei). The rules merged 34 mnfinder
pairs, all right (F1@0.5 0.883 -> 0.902), and that one DSB pair (0.905 -> 0.900) before the size limit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.engine.windows import Box, Patch

from .propagation import interior_point
from .seeds import gray_view, objects_are_dark

#: Objects smaller than this (expected diameter, pixels) are never merged: two seeds inside one object
#: come from chromatin texture, which only larger nuclei show; two touching small proposals are two
#: nuclei (training images: the one wrong merge, of two DSB nuclei of 60 px each, is below it).
MIN_OBJECT_SIZE = 14.0
MAX_AREA_FACTOR = 1.6
MIN_BORDER_RATIO = 1.0
MIN_KEPT = 0.8
MAX_FOREIGN = 0.1


def touching_pairs(labels: np.ndarray) -> list[tuple[int, int]]:
    """Sorted ``(a, b)`` label pairs (a < b) that share a 4-connected border."""
    pairs: set[tuple[int, int]] = set()
    for first, second in ((labels[:-1], labels[1:]), (labels[:, :-1], labels[:, 1:])):
        border = (first != second) & (first > 0) & (second > 0)
        low = np.minimum(first[border], second[border])
        high = np.maximum(first[border], second[border])
        pairs.update(zip(low.tolist(), high.tolist(), strict=True))
    return sorted(pairs)


def border_ratio(gray: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Mean of ``gray`` on the pixels of ``a`` next to ``b`` and of ``b`` next to ``a``, over the
    dimmer region's mean (``gray`` bright = object)."""
    border = (a & ndi.binary_dilation(b)) | (b & ndi.binary_dilation(a))
    dimmer = min(float(gray[a].mean()), float(gray[b].mean()))
    return float(gray[border].mean()) / dimmer if dimmer > 0 else 0.0


def merge_fragments(
    proposer: InteractiveSegmenter,
    labels: np.ndarray,
    object_size: float,
    *,
    zoom: float | None,
    input_size: int | None,
    batch_size: int = 16,
) -> dict[int, int]:
    """Merge fragment pairs of ``labels`` in place (the rules of the module docstring); returns
    ``{removed label: the label it joined}``. ``proposer`` is the segment-all session on the image
    (its threshold cuts the masks; ``zoom`` and ``input_size`` as for its refining pass)."""
    if object_size < MIN_OBJECT_SIZE:
        return {}
    source = proposer.image_source
    dark = objects_are_dark(source)
    expected_area = math.pi * (object_size / 2) ** 2
    areas = np.bincount(labels.ravel())
    places = ndi.find_objects(labels)
    candidates = []
    for a, b in touching_pairs(labels):
        if areas[a] + areas[b] > MAX_AREA_FACTOR * expected_area:
            continue
        window = _grown(_box(places[a - 1]).union(_box(places[b - 1])), 2, labels.shape)
        local = labels[window.slices]
        gray = gray_view(source, window)
        ratio = border_ratio(1.0 - gray if dark else gray, local == a, local == b)
        if ratio >= MIN_BORDER_RATIO:
            candidates.append((ratio, a, b, window))
    if not candidates:
        return {}
    points, patches = [], []
    for _, a, b, window in candidates:
        both = np.isin(labels[window.slices], (a, b))
        row, col = interior_point(both)
        points.append((row + window.r0, col + window.c0))
        patches.append(Patch.from_array(window, both.astype(np.float32)))
    refined = proposer.refine_predictions(
        points, patches, zoom=zoom, input_size=input_size, batch_size=batch_size
    )
    merged: dict[int, int] = {}
    threshold = proposer.threshold
    for (_, a, b, _), first, again in sorted(
        zip(candidates, patches, refined, strict=True), key=lambda item: -item[0][0]
    ):
        if again is first or a in merged or b in merged or a in merged.values() or b in merged.values():
            continue
        box = again.box
        mask = again.values > threshold
        local = labels[box.slices]
        kept_a = (mask & (local == a)).sum() / areas[a]
        kept_b = (mask & (local == b)).sum() / areas[b]
        foreign = (mask & (local > 0) & (local != a) & (local != b)).sum() / max(int(mask.sum()), 1)
        if min(kept_a, kept_b) < MIN_KEPT or foreign >= MAX_FOREIGN:
            continue
        labels[labels == b] = a
        grown = mask & (local == 0)
        local[grown] = a
        merged[b] = a
    return merged


def _box(place: tuple[slice, slice]) -> Box:
    return Box(place[0].start, place[0].stop - 1, place[1].start, place[1].stop - 1)


def _grown(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    return Box(
        max(box.r0 - margin, 0),
        min(box.r1 + margin, shape[0] - 1),
        max(box.c0 - margin, 0),
        min(box.c1 + margin, shape[1] - 1),
    )


__all__ = ["MAX_AREA_FACTOR", "MIN_BORDER_RATIO", "border_ratio", "merge_fragments", "touching_pairs"]
