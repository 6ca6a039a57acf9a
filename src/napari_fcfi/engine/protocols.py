"""The two interaction protocols: where each click runs the network and how its result is kept.

Both share one zoom-in rule (:func:`zoom_roi`): the box of the current object plus every click,
expanded around its centre by ``expansion_ratio`` with a minimum side, clamped to the image, and
*sticky*: an earlier ROI is kept while every click lies inside it and it overlaps the new box by
``roi_iou_threshold`` (IoU).

**paper** (:class:`PaperProtocol`) reproduces the official FCFI evaluation predictor (NoBRS, "cvpr"
zoom-in, flip): click 1 on the whole image at native resolution with gate 0; later clicks in the
zoom-in ROI of the stored map (the network's ``updated_feedback2`` pasted into the image, as in the
official code), resized so the long side is ``input_size``, with the official click mapping; the
prediction is pasted into a zero map. If the stored map is empty the click runs on the whole image
and an ROI kept from before is still used for pasting (official behaviour, kept for fidelity).

**microscopy** (:class:`MicroscopyProtocol`, the default) is built for large, non-RGB images: the
first click runs in a focus window of ``focus_size`` native pixels around it (doubled while the
object touches an inner window side), plus a zoomed second pass for small objects
(``first_click_zoom``); later clicks run in the zoom-in ROI of the probability, and the probability
outside the window is kept. See :mod:`.settings` for every parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .clicks import Click
from .network_runner import NetworkRunner
from .postprocess import connected_to_points, suppress_unconnected
from .settings import SegmenterSettings
from .windows import (
    Box,
    Patch,
    bbox_of_mask,
    bbox_with_points,
    box_iou,
    clamp_box,
    clicks_inside_roi,
    expand_box,
    focus_window,
    full_box,
    paper_click_to_crop,
    resized_shape,
)

# The first-click zoom pass runs when it magnifies the object at least this much.
FIRST_CLICK_ZOOM_GAIN = 2.0


@dataclass(frozen=True)
class Snapshot:
    """Immutable session state after some clicks; undo/redo move between these."""

    clicks: tuple[Click, ...]
    probability: Patch | None  # current object probability, zero outside the patch (None: all zero)
    roi_map: Patch | None  # map that places the next zoom-in ROI (paper: updated_feedback2)
    roi: Box | None  # sticky zoom-in region


def zoom_roi(
    object_box: Box | None,
    clicks: Sequence[Click],
    previous: Box | None,
    settings: SegmenterSettings,
    min_side: float,
    height: int,
    width: int,
) -> Box:
    """The zoom-in region for the next network run (the rule both protocols share; see module doc)."""
    points = [(c.row, c.col) for c in clicks]
    grown = bbox_with_points(object_box, points)
    if grown is None:
        raise ValueError("zoom_roi needs an object box or at least one click")
    candidate = clamp_box(expand_box(grown, settings.expansion_ratio, min_side), height, width)
    if (
        previous is None
        or not clicks_inside_roi(previous, points)
        or box_iou(candidate, previous) < settings.roi_iou_threshold
    ):
        return candidate
    return previous


def _resolved(size: int | None) -> int:
    """A window size that :func:`~napari_fcfi.engine.settings.resolve_settings` has filled in."""
    if size is None:
        raise ValueError("window sizes must be resolved first (engine.settings.resolve_settings)")
    return size


class PaperProtocol:
    """The official FCFI predictor's protocol (see the module docstring)."""

    def __init__(self, runner: NetworkRunner, settings: SegmenterSettings) -> None:
        self.runner = runner
        self.settings = settings

    def step(self, before: Snapshot, click: Click, threshold: float) -> tuple[Snapshot, Box]:
        """The snapshot after ``click`` and the window the network ran on."""
        source = self.runner.source
        assert source is not None
        settings = self.settings
        clicks = before.clicks + (click,)
        height, width = source.height, source.width
        gate = 0.0 if before.probability is None and not before.clicks else 1.0
        roi = before.roi
        crop: Box | None = None  # None: whole image at native resolution
        if settings.zoom_in and len(clicks) > 1 and before.roi_map is not None:
            object_box = before.roi_map.bbox_above(settings.roi_prob_threshold)
            if object_box is not None:
                roi = zoom_roi(
                    object_box, clicks, roi, settings, _resolved(settings.min_window), height, width
                )
                crop = roi
        region = crop if crop is not None else full_box(height, width)
        network_input = self.runner.network_input(region, before.probability)
        if crop is not None:
            size = resized_shape(crop.height, crop.width, settings.input_size)
            network_input = F.interpolate(network_input, size=size, mode="bilinear", align_corners=True)
            mapped = [
                (
                    paper_click_to_crop(c.row, crop.r0, crop.r1 - crop.r0, size[0]),
                    paper_click_to_crop(c.col, crop.c0, crop.c1 - crop.c0, size[1]),
                    c.positive,
                )
                for c in clicks
            ]
        else:
            mapped = [(c.row, c.col, c.positive) for c in clicks]
        logits, feedback = self.runner.infer(network_input, mapped, gate, truncate_new_click=True)
        # Paste target: the ROI stored in the state, even when this click ran on the whole image.
        paste = roi if settings.zoom_in else None
        prob_patch = _paste(torch.sigmoid(logits), paste, height, width)
        if settings.keep_connected:  # off in the paper preset; images there are small
            values = np.array(prob_patch.values)
            local = [(c.row - prob_patch.box.r0, c.col - prob_patch.box.c0) for c in clicks if c.positive]
            prob_patch = Patch(prob_patch.box, suppress_unconnected(values, threshold, local))
        map_patch = _paste(feedback, paste, height, width) if feedback is not None else prob_patch
        return Snapshot(clicks, prob_patch, map_patch, roi if settings.zoom_in else None), region


def _paste(values: torch.Tensor, roi: Box | None, height: int, width: int) -> Patch:
    if roi is None:
        return Patch.from_array(full_box(height, width), values[0, 0].float().cpu().numpy())
    resized = F.interpolate(values, size=(roi.height, roi.width), mode="bilinear", align_corners=True)
    return Patch.from_array(roi, resized[0, 0].float().cpu().numpy())


class MicroscopyProtocol:
    """The default protocol for microscopy images (see the module docstring)."""

    def __init__(self, runner: NetworkRunner, settings: SegmenterSettings) -> None:
        self.runner = runner
        self.settings = settings

    def step(self, before: Snapshot, click: Click, threshold: float) -> tuple[Snapshot, Box]:
        """The snapshot after ``click`` and the (last) window the network ran on."""
        source = self.runner.source
        assert source is not None
        settings = self.settings
        clicks = before.clicks + (click,)
        height, width = source.height, source.width
        if before.probability is None:
            return self._first_click(clicks, click, threshold)
        roi = before.roi
        if settings.zoom_in:
            object_box = before.probability.bbox_above(settings.roi_prob_threshold)
            min_side = _resolved(settings.min_window if object_box is not None else settings.focus_size)
            roi = zoom_roi(object_box, clicks, roi, settings, min_side, height, width)
            window = roi
        else:
            window = full_box(height, width)
        values = self.runner.predict_window(window, clicks, before.probability, 1.0, threshold)
        if window.union(before.probability.box) == window:
            merged = Patch(window, values)  # the window covers the old patch: no merge copy needed
        else:
            merged = Patch(*before.probability.merged_array(window, values))
        return Snapshot(clicks, merged, merged, roi if settings.zoom_in else None), window

    def _first_click(self, clicks: tuple[Click, ...], click: Click, threshold: float) -> tuple[Snapshot, Box]:
        """No feedback yet: focus window at native resolution, grown while the object touches an inner side."""
        return self.first_clicks([clicks], threshold)[0]

    def first_clicks(
        self, click_lists: Sequence[tuple[Click, ...]], threshold: float, batch_size: int = 16
    ) -> list[tuple[Snapshot, Box]]:
        """The snapshot (and last window) after each click list's last click on a state without feedback.

        Batched through the network; each list is independent and its result is what a session's first
        click gives (same code path: a single first click is this with one list). Segment-all passes
        one-click lists, one per seed.
        """
        clicks = [c[-1] for c in click_lists]
        source = self.runner.source
        assert source is not None
        settings = self.settings
        height, width = source.height, source.width
        whole = full_box(height, width)
        sides = [_resolved(settings.focus_size)] * len(clicks)
        windows: list[Box] = [whole] * len(clicks)
        values: list[np.ndarray] = [np.empty(0, np.float32)] * len(clicks)
        pending = list(range(len(clicks)))
        for growth in range(settings.focus_growth_steps + 1):
            for i in pending:
                windows[i] = focus_window(clicks[i].row, clicks[i].col, sides[i], height, width)
            predicted = self.runner.predict_windows(
                [windows[i] for i in pending],
                [click_lists[i] for i in pending],
                [None] * len(pending),
                0.0,
                threshold,
                batch_size,
            )
            still = []
            for i, result in zip(pending, predicted, strict=True):
                values[i] = result
                if windows[i] == whole or growth == settings.focus_growth_steps:
                    continue
                if not windows[i].touches_inner_border(result > threshold, height, width):
                    continue
                sides[i] *= 2
                still.append(i)
            pending = still
            if not pending:
                break
        patches = [Patch.from_array(w, v) for w, v in zip(windows, values, strict=True)]
        zooms: list[Box | None] = [None] * len(clicks)
        if settings.first_click_zoom and settings.zoom_in:  # zoom_in=False: no zoomed pass at all
            zooms = [
                self._first_click_zoom_window(w, v, c)
                for w, v, c in zip(windows, values, clicks, strict=True)
            ]
        # A small object is only a few feature pixels in the focus window; a second pass on its
        # zoom-in window (what a second click would use) draws its boundary at full detail.
        zoom_windows = {i: z for i, z in enumerate(zooms) if z is not None}
        zoomed = list(zoom_windows)
        if zoomed:
            feedback_mode = settings.first_click_zoom == "feedback"
            refined = self.runner.predict_windows(
                [zoom_windows[i] for i in zoomed],
                [click_lists[i] for i in zoomed],
                [patches[i] if feedback_mode else None for i in zoomed],
                1.0 if feedback_mode else 0.0,
                threshold,
                batch_size,
            )
            for i, result in zip(zoomed, refined, strict=True):
                zoom = zooms[i]
                assert zoom is not None
                patches[i] = Patch(*patches[i].merged_array(zoom, result))
                windows[i] = zoom
        return [
            (Snapshot(tuple(c), p, p, None), w) for c, p, w in zip(click_lists, patches, windows, strict=True)
        ]

    def _first_click_zoom_window(self, window: Box, values: np.ndarray, click: Click) -> Box | None:
        """Zoom-in window for a second first-click pass, or None when zooming would gain little.

        The object is the component (probability > ``roi_prob_threshold``) under the click, or the
        click pixel alone when the first pass missed it; its box is expanded like a later click's
        zoom-in box. The pass runs only when that box is at most half the focus window's long side.
        """
        source = self.runner.source
        assert source is not None
        settings = self.settings
        local = (click.row - window.r0, click.col - window.c0)
        above = values > settings.roi_prob_threshold
        box = bbox_of_mask(connected_to_points(above, [local])) if above[local] else None
        if box is None:
            box = Box(local[0], local[0], local[1], local[1])
        box = Box(box.r0 + window.r0, box.r1 + window.r0, box.c0 + window.c0, box.c1 + window.c0)
        zoom = clamp_box(
            expand_box(box, settings.expansion_ratio, settings.min_window), source.height, source.width
        )
        if FIRST_CLICK_ZOOM_GAIN * max(zoom.height, zoom.width) > max(window.height, window.width):
            return None
        return zoom


def make_protocol(runner: NetworkRunner, settings: SegmenterSettings) -> PaperProtocol | MicroscopyProtocol:
    return (
        PaperProtocol(runner, settings)
        if settings.preset == "paper"
        else MicroscopyProtocol(runner, settings)
    )
