"""One interactive session: one 2D image, one object, clicks in, probability out.

:class:`InteractiveSegmenter` holds the image (:class:`~.intensity.ImageSource`), the history of
snapshots (undo/redo) and persistence (:meth:`~InteractiveSegmenter.state` /
:meth:`~InteractiveSegmenter.replay`). Where each click runs the network is the protocol's business
(:mod:`.protocols`: ``"microscopy"``, the default, or ``"paper"``, the official evaluation), and
running the network is the :class:`~.network_runner.NetworkRunner`'s.

Initial mask: ``set_image(..., initial_mask=m)`` makes ``m`` (as 0/1 probability) the feedback of the
first click, which then runs with gate 1 and (microscopy) in a zoom-in window around ``m`` and the
click, i.e. exactly like a later click. In the paper preset only the feedback and gate change.

Memory: maps are kept as :class:`~.windows.Patch` (float32 rectangle + offset), so undo states and
clicks cost the size of the processed window, not of the image. :attr:`probability` (and the value
:meth:`add_click` returns) is one full-size float32 array built once per click and shared read-only;
:attr:`probability_patch` gives the sparse form without any full-size allocation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .clicks import Click, make_click
from .intensity import ImageSource
from .masks import decode_mask, encode_box_mask
from .network_runner import NetworkRunner
from .protocols import MicroscopyProtocol, Snapshot, make_protocol
from .settings import SegmenterSettings, resolve_settings
from .windows import Box, Patch, bbox_of_mask, bbox_union, focus_window

STATE_FORMAT = "napari-fcfi-session"
STATE_VERSION = 1


#: Smallest side (pixels) of a zoomed :meth:`InteractiveSegmenter.refine_predictions` window.
MIN_REFINE_WINDOW = 32


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
        self._runner = NetworkRunner(model, self.settings)
        self._protocol = make_protocol(self._runner, self.settings)
        self._source: ImageSource | None = None
        self._image_args: dict[str, Any] = {}
        self._initial_mask: Patch | None = None
        self._history: list[Snapshot] = []
        self._position = -1
        # Caches keyed by the snapshot object itself (identity), so a freed snapshot never aliases.
        self._full_cache: tuple[Snapshot, np.ndarray] | None = None
        self._mask_cache: tuple[Snapshot, float, np.ndarray] | None = None
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
        self._runner.source = source
        self._image_args = {"channel_axis": channel_axis, "channel": channel}
        self._initial_mask = initial
        self._history = [self._initial_snapshot()]
        self._position = 0
        self._invalidate()
        self.last_timing = {}
        self.last_window = None
        self.last_changed_box = None

    def _initial_snapshot(self) -> Snapshot:
        return Snapshot((), self._initial_mask, self._initial_mask, None)

    @property
    def image_has_contrast(self) -> bool:
        """False for a constant (or all-NaN) image: the masks are then guesses (see :mod:`.intensity`)."""
        return self._source is None or self._source.has_contrast

    def has_data_at(self, row: int, col: int) -> bool:
        """Whether the image holds finite values (in the chosen channels) at pixel ``(row, col)``: a click
        on NaN or infinite pixels (no data, e.g. outside a stitched field) gets a guessed mask."""
        source = self._require_image()
        if not (0 <= row < source.height and 0 <= col < source.width):
            return False
        return bool(np.isfinite(source.read_region(Box(row, row, col, col))).all())

    @property
    def image_shape(self) -> tuple[int, int]:
        source = self._require_image()
        return source.height, source.width

    @property
    def image_source(self) -> ImageSource:
        """The session's image (layout and normalisation the network sees), read lazily by crops."""
        return self._require_image()

    def _require_image(self) -> ImageSource:
        if self._source is None:
            raise RuntimeError("no image: call set_image(array) first")
        return self._source

    # ------------------------------------------------------------------ state access
    @property
    def _current(self) -> Snapshot:
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

    def _push(self, snapshot: Snapshot) -> None:
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
        self._runner.start_timing()
        snapshot, self.last_window = self._protocol.step(self._current, click, self._threshold)
        self._push(snapshot)
        probability = self.probability
        total = time.perf_counter() - start
        network = self._runner.network_seconds
        self.last_timing = {
            "total_s": total,
            "network_s": network,
            "engine_s": total - network,
            "overhead_fraction": (total - network) / network if network > 0 else float("nan"),
            "network_runs": self._runner.network_runs,
            "window": list(self.last_window) if self.last_window is not None else None,
        }
        return probability

    def first_click_predictions(
        self, points: Sequence[tuple[float, float]], batch_size: int = 16
    ) -> list[Patch | None]:
        """The probability each point would get as the first positive click of a new object.

        Batched through the network (microscopy protocol; the paper protocol runs one click at a time);
        ignores the initial mask and leaves the session's history untouched. Used by segment-all.
        """
        source = self._require_image()
        empty = Snapshot((), None, None, None)
        click_lists = [(make_click(r, c, True, source.height, source.width),) for r, c in points]
        self._runner.start_timing()
        if isinstance(self._protocol, MicroscopyProtocol):
            results = self._protocol.first_clicks(click_lists, self._threshold, batch_size)
        else:
            results = [self._protocol.step(empty, clicks[0], self._threshold) for clicks in click_lists]
        return [snapshot.probability for snapshot, _ in results]

    def refine_predictions(
        self,
        points: Sequence[tuple[float, float]],
        patches: Sequence[Patch],
        *,
        zoom: float | None = None,
        input_size: int | None = None,
        threshold: float | None = None,
        batch_size: int = 16,
    ) -> list[Patch]:
        """Each point's prediction again, with ``patches[i]`` as the feedback mask (a second click on the
        same point): FCFI's feedback modules then correct the first pass's boundary.

        The window is the first one, or with ``zoom`` a square of ``zoom`` times the long side of the
        first mask's box (above ``threshold``, None: the session's) around it, at least 32 pixels;
        ``input_size`` (None: the setting) is the network working size. Batched; leaves the
        session's history untouched.
        """
        source = self._require_image()
        cut = self._threshold if threshold is None else float(threshold)
        click_lists = [(make_click(r, c, True, source.height, source.width),) for r, c in points]
        windows = []
        for patch in patches:
            box = patch.bbox_above(cut) if zoom else None
            if box is None or zoom is None:
                windows.append(patch.box)
                continue
            side = max(MIN_REFINE_WINDOW, round(zoom * max(box.height, box.width)))
            centre = ((box.r0 + box.r1) // 2, (box.c0 + box.c1) // 2)
            windows.append(focus_window(*centre, side, source.height, source.width))
        values = self._runner.predict_windows(
            windows, click_lists, list(patches), 1.0, cut, batch_size, input_size=input_size
        )
        return [
            refined_or_first(first, Patch.from_array(w, v), c[0], cut, source.height, source.width)
            for first, w, v, c in zip(patches, windows, values, click_lists, strict=True)
        ]

    @property
    def network(self) -> torch.nn.Module:
        """The network this session runs: ``model`` with BatchNorm folded (setting ``fuse_batchnorm``,
        :func:`napari_fcfi.model.fusion.inference_network`), made from the model's weights at the
        first call; hook this one to time or inspect the session's network runs."""
        return self._runner.network()

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters: the engine runs the network there."""
        return self._runner.device_and_dtype()[0]

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
            "initial_mask": None
            if self._initial_mask is None
            else encode_box_mask(self._initial_mask.box, self._initial_mask.values > 0.5),
        }

    @classmethod
    def replay(
        cls, model: torch.nn.Module, image: Any, state: dict[str, Any], **overrides: Any
    ) -> InteractiveSegmenter:
        """A new session on ``image`` with ``state``'s settings and clicks re-applied in order."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a napari-fcfi session state (format={state.get('format')!r})")
        settings = dict(state.get("settings", {}))
        settings.update(overrides)
        segmenter = cls(model, **settings)
        shape = tuple(state["image_shape"])
        initial = decode_mask(state.get("initial_mask"), shape)
        segmenter.set_image(
            image, channel_axis=state.get("channel_axis"), initial_mask=initial, channel=state.get("channel")
        )
        if segmenter.image_shape != shape:
            raise ValueError(f"state was recorded on an image of shape {shape}, got {segmenter.image_shape}")
        for click in state.get("clicks", []):
            parsed = Click.from_dict(click)
            segmenter.add_click(parsed.row, parsed.col, parsed.positive)
        return segmenter


def refined_or_first(
    first: Patch, refined: Patch, click: Click, threshold: float, height: int, width: int
) -> Patch:
    """``refined`` unless its mask (above ``threshold``) misses ``click`` or reaches a side of its
    window that is not an image side (the window may have cut the object): then ``first``."""
    box = refined.box
    local = refined.values > threshold
    if not box.contains(click.row, click.col) or not local[click.row - box.r0, click.col - box.c0]:
        return first
    return first if box.touches_inner_border(local, height, width) else refined


def _union_boxes(a: Patch | None, b: Patch | None) -> Box | None:
    return bbox_union(p.box for p in (a, b) if p is not None)
