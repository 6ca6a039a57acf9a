"""One interactive segmentation session: one 2D image, one object, clicks in, probability out.

Protocols (see :mod:`.settings` for every parameter):

**paper** reproduces the official FCFI evaluation predictor (NoBRS, "cvpr" zoom-in, flip):

* click 1 runs on the whole image at its own resolution with a zero feedback map and gate 0;
  every later click feeds the previous full-image probability and gate 1;
* the network gets *all* clicks as points (positives, then negatives, each padded with -1, third
  field = click order) and the newest click as ``new_clicks`` (truncated to integers like the official
  ``.long()`` of a float32 tensor);
* zoom-in from click 2: ROI = box of (stored map > 0.5) plus every click pixel, expanded around its
  centre by ``expansion_ratio`` with ``min_window`` per side, Python-rounded, clamped; kept while all
  clicks lie inside it (the last row/column counts as outside) and its IoU with the new box is >= 0.5.
  The stored map is the network's ``updated_feedback2`` pasted into the image, as in the official code.
  The ROI of image + feedback is resized (bilinear, align_corners) so its long side is ``input_size``
  and clicks map as ``size * (x - start) / (extent + 1)``. The prediction is resized back and pasted
  into a zero map. If the stored map is empty the click runs on the whole image; an ROI kept from an
  earlier click is then still used for pasting (official behaviour, kept for fidelity).
* flip: batch of the crop and its mirror (clicks at ``W - 1 - col``), logits averaged before the
  sigmoid, feedback maps averaged as values.

**microscopy** (default) is built for large, non-RGB images:

* first click (no feedback yet): a focus window of ``view_size`` (default: ``input_size``) native
  pixels centred on the click (shifted to fit), resized to ``input_size``; while the predicted mask
  touches a window side that is not an image side, the window doubles (at most
  ``focus_growth_steps`` times, or until it is the whole image); when the predicted object is small
  (its zoom-in box is at most half the focus window), a second pass on that zoom-in box replaces the
  prediction there (``first_click_zoom``: "fresh" = gate 0 and no feedback, "feedback" = the first
  pass as feedback with gate 1), so small nuclei get the magnification of a later click;
* later clicks: zoom-in box of (probability > 0.5) plus clicks, expanded by ``expansion_ratio`` with
  ``min_window`` per side (``view_size`` when there is no object yet), sticky like the paper's ROI,
  resized to ``input_size`` (long side) with an align-corners-consistent click mapping;
* the probability outside the processed window is kept (not zeroed); mask parts not 8-connected to a
  positive click are removed (``keep_connected``).

Initial mask: ``set_image(..., initial_mask=m)`` makes ``m`` (as 0/1 probability) the feedback of the
first click, which then runs with gate 1 and (microscopy) in a zoom-in window around ``m`` and the
click, i.e. exactly like a later click. In the paper preset only the feedback and gate change.

Memory: maps are kept as :class:`~.windows.Patch` (float32 rectangle + offset), so undo states and
clicks cost the size of the processed window, not of the image. :attr:`probability` (and the value
:meth:`add_click` returns) is one full-size float32 array built once per click and shared read-only;
:attr:`probability_patch` gives the sparse form without any full-size allocation.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .clicks import Click, make_click
from .intensity import ImageSource
from .postprocess import connected_to_points, suppress_unconnected
from .settings import SegmenterSettings, resolve_settings
from .windows import (
    Box,
    Patch,
    aligned_click_to_crop,
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

STATE_FORMAT = "napari-fcfi-session"
# The first-click zoom pass runs when it magnifies the object at least this much.
_FIRST_CLICK_ZOOM_GAIN = 2.0
STATE_VERSION = 1


@dataclass(frozen=True)
class _Snapshot:
    """Immutable session state; undo/redo move between these."""

    clicks: tuple[Click, ...]
    probability: Patch | None  # current object probability, zero outside the patch (None: all zero)
    roi_map: Patch | None  # map that places the next zoom-in ROI (paper: updated_feedback2)
    roi: Box | None  # sticky zoom-in region


class InteractiveSegmenter:
    """Click-based segmentation of one object in one 2D image with an FCFI network.

    ``model`` is any ``torch.nn.Module`` following the network call contract
    (``docs/architecture.md``); it runs on the device of its parameters. ``settings`` are keyword
    overrides of :class:`~.settings.SegmenterSettings` (``preset="paper"`` switches protocol).

    >>> seg = InteractiveSegmenter(model)                       # doctest: +SKIP
    >>> seg.set_image(image)                                    # doctest: +SKIP
    >>> prob = seg.add_click(120.4, 88.0, positive=True)         # doctest: +SKIP
    >>> seg.mask.sum(), seg.undo(), seg.redo()                   # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, **settings: Any) -> None:
        self.model = model
        self.settings: SegmenterSettings = resolve_settings(model, **settings)
        self._threshold = float(self.settings.threshold)
        self._source: ImageSource | None = None
        self._image_args: dict[str, Any] = {}
        self._initial_mask: Patch | None = None
        self._history: list[_Snapshot] = []
        self._position = -1
        # Caches keyed by the snapshot object itself (identity), so a freed snapshot never aliases.
        self._full_cache: tuple[_Snapshot, np.ndarray] | None = None
        self._mask_cache: tuple[_Snapshot, float, np.ndarray] | None = None
        self.last_timing: dict[str, Any] = {}
        self.last_window: Box | None = None
        self.last_changed_box: Box | None = None

    # ------------------------------------------------------------------ image
    def set_image(
        self,
        image: Any,
        channel_axis: int | None = None,
        initial_mask: Any = None,
        channel: int | Sequence[int] | None = None,
    ) -> None:
        """Start a session on ``image`` (2D, or 2D plus ``channel_axis``; (H, W, 3|4) is RGB(A)).

        ``initial_mask`` (bool/label array of shape (H, W), non-zero = object) starts from an existing
        object. ``channel`` picks one channel or a 1-3 channel composite (see :mod:`.intensity`).
        Raises ``ValueError`` for empty or non-2D images or a mismatching mask; the previous session
        is then kept unchanged.
        """
        source = ImageSource(
            image,
            channel_axis=channel_axis,
            channel=channel,
            mode=self.settings.normalization,
            percentiles=self.settings.percentiles,
        )
        initial = None
        if initial_mask is not None:
            mask = np.asarray(initial_mask)
            if mask.shape != (source.height, source.width):
                raise ValueError(
                    f"initial_mask has shape {mask.shape} but the image is {source.height} x {source.width}"
                )
            mask = mask != 0
            box = bbox_of_mask(mask)
            if box is not None:
                initial = Patch.from_array(box, mask[box.slices].astype(np.float32))
        self._source = source
        self._image_args = {"channel_axis": channel_axis, "channel": channel}
        self._initial_mask = initial
        self._history = [self._initial_snapshot()]
        self._position = 0
        self._invalidate()
        self.last_timing = {}
        self.last_window = None
        self.last_changed_box = None

    def _initial_snapshot(self) -> _Snapshot:
        return _Snapshot((), self._initial_mask, self._initial_mask, None)

    @property
    def image_shape(self) -> tuple[int, int]:
        source = self._require_image()
        return source.height, source.width

    def _require_image(self) -> ImageSource:
        if self._source is None:
            raise RuntimeError("no image: call set_image(array) first")
        return self._source

    # ------------------------------------------------------------------ state access
    @property
    def _current(self) -> _Snapshot:
        self._require_image()
        return self._history[self._position]

    @property
    def clicks(self) -> list[Click]:
        """Clicks of the current object, in order (rounded pixel coordinates)."""
        return list(self._current.clicks)

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if not 0.0 < value < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {value}")
        self._threshold = value

    @property
    def probability_patch(self) -> Patch | None:
        """Sparse probability: a :class:`Patch` (zero outside its box) or None when all zero."""
        return self._current.probability

    @property
    def probability(self) -> np.ndarray:
        """Full (H, W) float32 probability of the current object (read-only, shared; copy to edit)."""
        snapshot = self._current
        if self._full_cache is None or self._full_cache[0] is not snapshot:
            self._full_cache = None  # release the old full map before allocating the new one
            height, width = self.image_shape
            if snapshot.probability is None:
                full = np.zeros((height, width), dtype=np.float32)
            else:
                full = snapshot.probability.to_full(height, width)
            full.setflags(write=False)
            self._full_cache = (snapshot, full)
        return self._full_cache[1]

    @property
    def mask(self) -> np.ndarray:
        """Full (H, W) bool mask: probability > :attr:`threshold` (read-only, shared)."""
        snapshot = self._current
        if (
            self._mask_cache is None
            or self._mask_cache[0] is not snapshot
            or self._mask_cache[1] != self._threshold
        ):
            self._mask_cache = None
            height, width = self.image_shape
            mask = np.zeros((height, width), dtype=bool)
            if snapshot.probability is not None:
                mask[snapshot.probability.box.slices] = snapshot.probability.values > self._threshold
            mask.setflags(write=False)
            self._mask_cache = (snapshot, self._threshold, mask)
        return self._mask_cache[2]

    @property
    def object_box(self) -> Box | None:
        """Inclusive bounding box of the current mask (None when empty)."""
        patch = self._current.probability
        return None if patch is None else patch.bbox_above(self._threshold)

    def _invalidate(self) -> None:
        self._full_cache = None
        self._mask_cache = None

    # ------------------------------------------------------------------ history
    @property
    def can_undo(self) -> bool:
        return self._source is not None and self._position > 0

    @property
    def can_redo(self) -> bool:
        return self._source is not None and self._position < len(self._history) - 1

    def undo(self) -> bool:
        """Step back one click (or reset); returns False when there is nothing to undo."""
        if not self.can_undo:
            return False
        self._move_to(self._position - 1)
        return True

    def redo(self) -> bool:
        """Step forward again after :meth:`undo`; returns False when there is nothing to redo."""
        if not self.can_redo:
            return False
        self._move_to(self._position + 1)
        return True

    def reset(self) -> None:
        """Back to the state right after :meth:`set_image` (initial mask kept).

        Clears the undo/redo history too (not undoable), so a session reused for many objects (as the
        evaluation does) never accumulates the probability patches of earlier objects.
        """
        self._require_image()
        old = self._current.probability
        self._history = [self._initial_snapshot()]
        self._position = 0
        self._invalidate()
        self.last_changed_box = _union_boxes(old, self._initial_mask)

    def _move_to(self, position: int) -> None:
        old = self._current.probability
        self._position = position
        self._invalidate()
        self.last_changed_box = _union_boxes(old, self._current.probability)

    def _push(self, snapshot: _Snapshot) -> None:
        old = self._current.probability
        del self._history[self._position + 1 :]
        self._history.append(snapshot)
        self._position += 1
        self._invalidate()
        self.last_changed_box = _union_boxes(old, snapshot.probability)

    # ------------------------------------------------------------------ clicks
    def add_click(self, row: float, col: float, positive: bool = True) -> np.ndarray:
        """Add a click and return the object's (H, W) float32 probability after it.

        ``row``/``col`` may be floats (rounded with ``floor(x + 0.5)``, see :mod:`.clicks`). A click
        outside the image or with a non-finite coordinate raises ``ValueError`` and changes nothing.
        The returned array is :attr:`probability` (read-only, shared).
        """
        source = self._require_image()
        click = make_click(row, col, positive, source.height, source.width)
        start = time.perf_counter()
        self._network_seconds = 0.0
        self._network_runs = 0
        before = self._current
        if self.settings.preset == "paper":
            snapshot = self._paper_step(before, click)
        else:
            snapshot = self._microscopy_step(before, click)
        self._push(snapshot)
        probability = self.probability
        total = time.perf_counter() - start
        self.last_timing = {
            "total_s": total,
            "network_s": self._network_seconds,
            "engine_s": total - self._network_seconds,
            "overhead_fraction": (total - self._network_seconds) / self._network_seconds
            if self._network_seconds > 0
            else float("nan"),
            "network_runs": self._network_runs,
            "window": list(self.last_window) if self.last_window is not None else None,
        }
        return probability

    # ------------------------------------------------------------------ paper protocol
    def _paper_step(self, before: _Snapshot, click: Click) -> _Snapshot:
        source = self._source
        assert source is not None
        clicks = before.clicks + (click,)
        height, width = source.height, source.width
        settings = self.settings
        gate = 0.0 if before.probability is None and not before.clicks else 1.0
        roi = before.roi
        crop: Box | None = None  # None: whole image at native resolution
        if settings.zoom_in and len(clicks) > 1 and before.roi_map is not None:
            object_box = before.roi_map.bbox_above(settings.roi_prob_threshold)
            if object_box is not None:
                points = [(c.row, c.col) for c in clicks]
                candidate = clamp_box(
                    expand_box(bbox_with_points(object_box, points), settings.expansion_ratio, settings.min_window),
                    height,
                    width,
                )
                if (
                    roi is None
                    or not clicks_inside_roi(roi, points)
                    or box_iou(candidate, roi) < settings.roi_iou_threshold
                ):
                    roi = candidate
                crop = roi
        region = crop if crop is not None else full_box(height, width)
        network_input = self._network_input(region, before.probability)
        if crop is not None:
            size = resized_shape(crop.height, crop.width, settings.input_size)
            network_input = F.interpolate(network_input, size=size, mode="bilinear", align_corners=True)
            crop_h, crop_w = size
            mapped = [
                (
                    paper_click_to_crop(c.row, crop.r0, crop.r1 - crop.r0, crop_h),
                    paper_click_to_crop(c.col, crop.c0, crop.c1 - crop.c0, crop_w),
                    c.positive,
                )
                for c in clicks
            ]
        else:
            mapped = [(c.row, c.col, c.positive) for c in clicks]
        logits, feedback = self._infer(network_input, mapped, gate, truncate_new_click=True)
        probability = torch.sigmoid(logits)
        # Paste target: the ROI stored in the state, even when this click ran on the whole image.
        paste = roi if settings.zoom_in else None
        prob_patch = self._paste(probability, paste, height, width)
        if settings.keep_connected:  # off in the paper preset; images there are small
            values = np.array(prob_patch.values)
            local = [(c.row - prob_patch.box.r0, c.col - prob_patch.box.c0) for c in clicks if c.positive]
            prob_patch = Patch(prob_patch.box, suppress_unconnected(values, self._threshold, local))
        map_patch = self._paste(feedback, paste, height, width) if feedback is not None else prob_patch
        self.last_window = region
        return _Snapshot(clicks, prob_patch, map_patch, roi if settings.zoom_in else None)

    def _paste(self, values: torch.Tensor, roi: Box | None, height: int, width: int) -> Patch:
        if roi is None:
            return Patch.from_array(full_box(height, width), values[0, 0].float().cpu().numpy())
        resized = F.interpolate(values, size=(roi.height, roi.width), mode="bilinear", align_corners=True)
        return Patch.from_array(roi, resized[0, 0].float().cpu().numpy())

    # ------------------------------------------------------------------ microscopy protocol
    def _microscopy_step(self, before: _Snapshot, click: Click) -> _Snapshot:
        source = self._source
        assert source is not None
        settings = self.settings
        clicks = before.clicks + (click,)
        height, width = source.height, source.width
        if before.probability is None:
            # First click without feedback: focus window at native resolution, grown while the object
            # touches an inner window side.
            side = settings.view_size
            for step in range(settings.focus_growth_steps + 1):
                window = focus_window(click.row, click.col, side, height, width)
                values = self._predict_window(window, clicks, None, gate=0.0)
                whole = window == full_box(height, width)
                if whole or step == settings.focus_growth_steps:
                    break
                if not window.touches_inner_border(values > self._threshold, height, width):
                    break
                side *= 2
            patch = Patch.from_array(window, values)
            zoom = None
            if settings.first_click_zoom and settings.zoom_in:  # zoom_in=False: no zoomed pass at all
                zoom = self._first_click_zoom_window(window, values, click)
            if zoom is not None:
                # A small object is only a few feature pixels in the focus window; a second pass on
                # its zoom-in window (what a second click would use) draws its boundary at full detail.
                if settings.first_click_zoom == "feedback":
                    refined = self._predict_window(zoom, clicks, patch, gate=1.0)
                else:
                    refined = self._predict_window(zoom, clicks, None, gate=0.0)
                patch = Patch(*patch.merged_array(zoom, refined))
                window = zoom
            self.last_window = window
            return _Snapshot(clicks, patch, patch, None)

        roi = before.roi
        if settings.zoom_in:
            object_box = before.probability.bbox_above(settings.roi_prob_threshold)
            points = [(c.row, c.col) for c in clicks]
            min_side = settings.min_window if object_box is not None else settings.view_size
            candidate = clamp_box(
                expand_box(bbox_with_points(object_box, points), settings.expansion_ratio, min_side), height, width
            )
            if (
                roi is None
                or not clicks_inside_roi(roi, points)
                or box_iou(candidate, roi) < settings.roi_iou_threshold
            ):
                roi = candidate
            window = roi
        else:
            window = full_box(height, width)
        values = self._predict_window(window, clicks, before.probability, gate=1.0)
        old_box = before.probability.box
        if window.union(old_box) == window:
            merged = Patch(window, values)  # the window covers the old patch: no merge copy needed
        else:
            merged = Patch(*before.probability.merged_array(window, values))
        self.last_window = window
        return _Snapshot(clicks, merged, merged, roi if settings.zoom_in else None)

    def _first_click_zoom_window(self, window: Box, values: np.ndarray, click: Click) -> Box | None:
        """Zoom-in window for a second first-click pass, or None when zooming would gain little.

        The object is the component (probability > ``roi_prob_threshold``) under the click, or the
        click pixel alone when the first pass missed it; its box is expanded like a later click's
        zoom-in box. The pass runs only when that box is at most half the focus window's long side
        (at least 2x magnification).
        """
        source = self._source
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
        if _FIRST_CLICK_ZOOM_GAIN * max(zoom.height, zoom.width) > max(window.height, window.width):
            return None
        return zoom

    def _predict_window(
        self, window: Box, clicks: Sequence[Click], feedback: Patch | None, gate: float
    ) -> np.ndarray:
        """Probability (window-sized float32, writable) from one network run on ``window``.

        Windows much larger than ``input_size`` are read with a stride (every ``step``-th pixel, still at
        least twice the network size, then antialiased down), so a 4096-pixel window never becomes a
        full-resolution float tensor. Geometry stays exact: the sampled grid spans native rows
        ``r0 .. r0 + (n - 1) * step``; the prediction is resized back onto that span and the few
        rows/columns beyond it (fewer than ``step``) repeat the edge.
        """
        target = resized_shape(window.height, window.width, self.settings.input_size)
        step = max(1, min(window.height // target[0], window.width // target[1]) // 2)
        network_input = self._network_input(window, feedback, step)
        n_rows, n_cols = network_input.shape[-2:]
        if target != (n_rows, n_cols):
            network_input = F.interpolate(
                network_input, size=target, mode="bilinear", align_corners=True, antialias=target[0] < n_rows
            )
        mapped = [
            (
                aligned_click_to_crop((c.row - window.r0) / step, 0, n_rows, target[0]),
                aligned_click_to_crop((c.col - window.c0) / step, 0, n_cols, target[1]),
                c.positive,
            )
            for c in clicks
        ]
        logits, _ = self._infer(network_input, mapped, gate, truncate_new_click=False)
        if self.settings.keep_connected:
            # Structural integrity at network resolution: cheap (input_size^2) whatever the window size.
            # Removed parts get a very negative logit so they vanish after the resize back.
            positives = [
                (min(max(round(r), 0), target[0] - 1), min(max(round(c), 0), target[1] - 1))
                for r, c, positive in mapped
                if positive
            ]
            mask = (torch.sigmoid(logits[0, 0]) > self._threshold).numpy()
            kept = connected_to_points(mask, positives)
            if kept is not mask:
                logits[0, 0][torch.from_numpy(mask & ~kept)] = -30.0
        span = ((n_rows - 1) * step + 1, (n_cols - 1) * step + 1)
        if tuple(logits.shape[-2:]) != span:
            logits = F.interpolate(logits, size=span, mode="bilinear", align_corners=True)
        probability = torch.sigmoid_(logits)[0, 0].float().numpy()
        if span != (window.height, window.width):
            probability = np.pad(
                probability, ((0, window.height - span[0]), (0, window.width - span[1])), mode="edge"
            )
        return probability

    # ------------------------------------------------------------------ network
    def _network_input(self, region: Box, feedback: Patch | None, step: int = 1) -> torch.Tensor:
        """(1, 4, h, w) float32 tensor: normalised RGB of ``region`` plus its feedback map.

        ``step > 1`` samples every ``step``-th pixel (see :meth:`_predict_window`).
        """
        assert self._source is not None
        rgb = self._source.read(region, step)
        if feedback is None:
            prev = np.zeros((1, *rgb.shape[1:]), np.float32)
        else:
            prev = feedback.read(region, step)[None]
        return torch.from_numpy(np.concatenate([rgb, prev], axis=0)[None])

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where the model lives and the floating dtype of its weights (inputs are sent there)."""
        # Lazily: unpacking every parameter and buffer cost 1.7-4.3 ms per network run (docs/benchmarks.md).
        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            if tensor.is_floating_point():
                return tensor.device, tensor.dtype
        return torch.device("cpu"), torch.float32

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters: the engine runs the network there."""
        return self._device_and_dtype()[0]

    def _infer(
        self,
        network_input: torch.Tensor,
        clicks: Sequence[tuple[float, float, bool]],
        gate: float,
        truncate_new_click: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the network (with flip averaging when enabled) on a (1, 4, h, w) input.

        Returns flip-averaged logits and ``updated_feedback2`` at the input size (1, 1, h, w), on CPU.
        """
        height, width = network_input.shape[-2:]
        batches = [list(clicks)]
        if self.settings.flip:
            network_input = torch.cat([network_input, torch.flip(network_input, dims=[3])], dim=0)
            batches.append([(r, width - c - 1, p) for r, c, p in clicks])
        points = _points_tensor(batches)
        newest = torch.tensor([[[b[-1][0], b[-1][1], float(b[-1][2])]] for b in batches], dtype=torch.float32)
        if truncate_new_click:
            new_clicks = newest.long()  # what the official predictor does (.long() truncates)
        else:
            new_clicks = torch.round(newest).long()
            new_clicks[..., 0].clamp_(0, height - 1)
            new_clicks[..., 1].clamp_(0, width - 1)

        device, dtype = self._device_and_dtype()
        # A half-precision model (load_model(dtype="float16")) gets its image in that dtype; with
        # autocast the float32 input is cast per operation instead.
        autocast = self.settings.autocast_dtype if device.type in ("cuda", "cpu") else None
        image_dtype = dtype if autocast is None else torch.float32
        network_input = network_input.to(device=device, dtype=image_dtype)
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            start = time.perf_counter()
            with torch.inference_mode():
                if autocast is not None:
                    with torch.autocast(device_type=device.type, dtype=getattr(torch, autocast)):
                        outputs = self.model(
                            network_input, points.to(device), new_clicks.to(device), gate, is_training=False
                        )
                else:
                    outputs = self.model(
                        network_input, points.to(device), new_clicks.to(device), gate, is_training=False
                    )
                logits = _last(outputs["instances"]).float()
                feedback = outputs.get("updated_feedback2")
                feedback = None if feedback is None else _last(feedback).float()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            self._network_seconds += time.perf_counter() - start
            self._network_runs += 1
        finally:
            if was_training:
                self.model.train()

        logits = F.interpolate(logits.cpu(), size=(height, width), mode="bilinear", align_corners=True)
        if feedback is not None:
            feedback = F.interpolate(feedback.cpu(), size=(height, width), mode="bilinear", align_corners=True)
        if self.settings.flip:
            logits = 0.5 * (logits[:1] + torch.flip(logits[1:], dims=[3]))
            if feedback is not None:
                feedback = 0.5 * (feedback[:1] + torch.flip(feedback[1:], dims=[3]))
        return logits, feedback

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """JSON-serialisable description from which :meth:`replay` regenerates the same result."""
        source = self._require_image()
        channel = self._image_args.get("channel")
        if channel is not None and not np.isscalar(channel):
            channel = [int(c) for c in channel]
        settings = replace(self.settings, threshold=self._threshold).to_dict()
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "settings": settings,
            "image_shape": [source.height, source.width],
            "channel_axis": self._image_args.get("channel_axis"),
            "channel": channel,
            "clicks": [c.to_dict() for c in self._current.clicks],
            "initial_mask": _encode_mask(self._initial_mask),
        }

    @classmethod
    def replay(cls, model: torch.nn.Module, image: Any, state: dict[str, Any], **overrides: Any) -> InteractiveSegmenter:
        """A new session on ``image`` with ``state``'s settings and clicks re-applied in order."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a napari-fcfi session state (format={state.get('format')!r})")
        settings = dict(state.get("settings", {}))
        settings.update(overrides)
        segmenter = cls(model, **settings)
        shape = tuple(state["image_shape"])
        initial = _decode_mask(state.get("initial_mask"), shape)
        segmenter.set_image(
            image, channel_axis=state.get("channel_axis"), initial_mask=initial, channel=state.get("channel")
        )
        if segmenter.image_shape != shape:
            raise ValueError(f"state was recorded on an image of shape {shape}, got {segmenter.image_shape}")
        for click in state.get("clicks", []):
            parsed = Click.from_dict(click)
            segmenter.add_click(parsed.row, parsed.col, parsed.positive)
        return segmenter


def _last(value: Any) -> torch.Tensor:
    return value[-1] if isinstance(value, (list, tuple)) else value


def _points_tensor(batches: Sequence[Sequence[tuple[float, float, bool]]]) -> torch.Tensor:
    """(B, 2N, 3) float tensor: positives then negatives, each padded with (-1, -1, -1); field 3 = order."""
    counts = [(sum(1 for c in b if c[2]), sum(1 for c in b if not c[2])) for b in batches]
    n = max(1, max(max(p, q) for p, q in counts))
    rows = []
    for batch in batches:
        positives = [(r, c, i) for i, (r, c, p) in enumerate(batch) if p]
        negatives = [(r, c, i) for i, (r, c, p) in enumerate(batch) if not p]
        pad = (-1, -1, -1)
        rows.append(positives + [pad] * (n - len(positives)) + negatives + [pad] * (n - len(negatives)))
    return torch.tensor(rows, dtype=torch.float32)


def _union_boxes(a: Patch | None, b: Patch | None) -> Box | None:
    boxes = [p.box for p in (a, b) if p is not None]
    if not boxes:
        return None
    out = boxes[0]
    for box in boxes[1:]:
        out = out.union(box)
    return out


def _encode_mask(patch: Patch | None) -> dict[str, Any] | None:
    """Run-length code of a 0/1 patch: box plus alternating run lengths (row-major, starting with 0s)."""
    if patch is None:
        return None
    flat = (patch.values > 0.5).ravel()
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"box": [int(v) for v in patch.box], "runs": [int(r) for r in runs]}


def _decode_mask(data: dict[str, Any] | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if data is None:
        return None
    box = Box(*data["box"])
    flat = np.zeros(box.height * box.width, dtype=bool)
    position, value = 0, False
    for run in data["runs"]:
        flat[position : position + run] = value
        position += run
        value = not value
    mask = np.zeros(shape, dtype=bool)
    mask[box.slices] = flat.reshape(box.height, box.width)
    return mask
