"""Headless heart of the plugin: slice sessions, click layer wiring, preview and commit.

:class:`SegmentationController` needs a napari viewer but no Qt widgets, so tests drive it
directly. For the image layer being annotated it keeps one :class:`SliceSession` per 2D slice
(keyed by the non-spatial indices on the label grid). The clicks live in one points layer
(``positive`` feature); the controller listens to that layer's data events, so clicks added by
the mouse callback, by the layer's own tools or by scripts are all handled alike: the slice's
clicks are rebuilt in point order and its prediction recomputed.

Predictions run through a runner (:mod:`napari_fcfi.plugin.worker`). Each session counts its
requests (``generation``); a result is shown only if it answers the newest request, so a stale
result never overwrites a newer one. The engine segmenter of a session is touched only by the
runner's thread; everything else happens on the main thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_fcfi.plugin.clicklog import ClickLog, ObjectRecord
from napari_fcfi.plugin.layers import (
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    PREVIEW_COLOR,
    ImageGeometry,
    SliceKey,
    current_slice_key,
    image_geometry,
    next_free_label,
    paint_object,
    read_slice,
    split_grid_point,
    world_to_grid,
)
from napari_fcfi.plugin.models import DEFAULT_MODEL, ModelCache, describe_load_error
from napari_fcfi.plugin.worker import ImmediateRunner, JobResult, ThreadedRunner

SegmenterFactory = Callable[[Any], Any]


def engine_segmenter_factory(**settings: Any) -> SegmenterFactory:
    """Factory of :class:`napari_fcfi.engine.InteractiveSegmenter` sessions with ``settings``."""

    def build(model: Any) -> Any:
        from napari_fcfi.engine import InteractiveSegmenter

        return InteractiveSegmenter(model, **settings)

    return build


def default_cpu_threads() -> int:
    """Torch threads for interactive CPU inference: all cores but one (napari's main thread)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _use_torch_threads(count: int) -> None:
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


Slices2D = tuple[slice, slice]


def _bounding_slices(mask: np.ndarray) -> Slices2D:
    """Row/col slices of the smallest box holding ``mask`` (an empty box for an empty mask)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _union_slices(a: Slices2D | None, b: Slices2D | None) -> Slices2D | None:
    """Smallest box holding both boxes (``None`` or empty boxes are ignored)."""
    boxes = [box for box in (a, b) if box is not None and box[0].stop > box[0].start and box[1].stop > box[1].start]
    if not boxes:
        return None
    return (
        slice(min(box[0].start for box in boxes), max(box[0].stop for box in boxes)),
        slice(min(box[1].start for box in boxes), max(box[1].stop for box in boxes)),
    )


@dataclass(frozen=True)
class Click:
    row: int
    col: int
    positive: bool


@dataclass
class _EngineState:
    """Worker-thread side of a session: the engine object and what has been applied to it."""

    segmenter: Any = None
    config: tuple = ()
    applied: tuple[Click, ...] = ()


@dataclass
class SliceSession:
    """Clicks and object in progress on one 2D slice."""

    key: SliceKey
    clicks: tuple[Click, ...] = ()
    redo_stack: list[Click] = field(default_factory=list)
    edit_label: int | None = None
    initial_mask: np.ndarray | None = None
    object_serial: int = 0
    generation: int = 0
    shown_generation: int = 0
    shown_config: tuple = ()
    mask: np.ndarray | None = None
    mask_box: Slices2D | None = None  # bounding box of ``mask`` (computed off the GUI thread)
    commit_pending: bool = False
    engine: _EngineState = field(default_factory=_EngineState)

    @property
    def up_to_date(self) -> bool:
        return self.generation == self.shown_generation


class SegmentationController:
    """Connects one viewer's image, clicks, preview and labels layers to the FCFI engine.

    ``model_cache`` provides loaded models (shared per viewer), ``segmenter_factory(model)`` builds
    an engine session (default: :class:`napari_fcfi.engine.InteractiveSegmenter`) and ``runner``
    runs predictions (default: a background thread). ``on_status``/``on_busy``/``on_label_id`` let a
    widget mirror the state.
    """

    def __init__(
        self,
        viewer: Any,
        model_cache: ModelCache,
        *,
        segmenter_factory: SegmenterFactory | None = None,
        runner: ThreadedRunner | ImmediateRunner | None = None,
        model_source: str = DEFAULT_MODEL,
        device: str = "cpu",
    ) -> None:
        self.viewer = viewer
        self.model_cache = model_cache
        # Engine settings recorded in the click log; only known when the default factory builds the engine.
        self.segmenter_settings: dict[str, Any] = {} if segmenter_factory else {"preset": "microscopy"}
        self.segmenter_factory = segmenter_factory or engine_segmenter_factory(**self.segmenter_settings)
        self.runner = runner if runner is not None else ThreadedRunner()
        self.runner.on_result = self._on_result
        self.runner.on_busy = self._on_busy
        self.model_source = model_source
        self.device = device
        self.threshold = 0.49
        # torch intra-op threads for CPU inference (process-wide). With every core busy (napari's
        # main thread, other jobs) extra OpenMP threads spin against each other: on a loaded 2-core
        # machine a click took 0.7-3 s with 2 threads and ~0.1 s with 1 (docs/benchmarks.md).
        self.cpu_threads: int | None = default_cpu_threads()
        self.overwrite = False
        self.label_id: int | None = None  # None: next free label at commit time
        self.annotating = True
        self.click_log = ClickLog()
        self.on_status: Callable[[str], None] = lambda message: None
        self.on_busy: Callable[[bool], None] = lambda busy: None
        self.on_label_id: Callable[[int], None] = lambda label_id: None
        self.image_layer: Any = None
        self.labels_layer: Any = None
        self.points_layer: Any = None
        self.preview_layer: Any = None
        # Per preview layer: the box that may hold non-zero pixels (partial updates).
        self._preview_boxes: dict[int, Slices2D | None] = {}
        self.geometry: ImageGeometry | None = None
        self.channel_axis: int | None = None
        self.channel: int | None = None
        self.sessions: dict[SliceKey, SliceSession] = {}
        self._internal_points_edit = False
        self._hooked_layers: list[Any] = []
        self._last_error: str | None = None
        self._parked: dict[int, dict[str, Any]] = {}  # id(image layer) -> state while another is annotated
        self.viewer.dims.events.current_step.connect(self._on_dims_change)

    # ------------------------------------------------------------------ set-up
    def set_image_layer(
        self, layer: Any, channel_axis: int | None = None, channel: int | None = None
    ) -> None:
        """Annotate ``layer``; its clicks layer and preview are created aligned with it.

        ``channel`` picks one channel of a multichannel/RGB image (``None``: composite of all).
        Each image layer keeps its own clicks layer, slice sessions and labels choice: switching to
        another layer and back restores them (a prediction still running for the old layer is
        dropped). Changing ``channel_axis`` changes the label grid and starts that image afresh.
        Committed labels and the click log are never touched.
        """
        geometry = image_geometry(layer, channel_axis)
        if self.image_layer is layer and self.geometry == geometry:
            self.channel_axis, self.channel = channel_axis, channel
            for session in self.sessions.values():
                session.engine = _EngineState()  # same grid, other channel: new engine sessions
            self._refresh_view(recompute=True)
            return
        self._unhook_layers()
        if self.image_layer is not None:
            self._park_current_image()
        parked = self._parked.pop(id(layer), None)
        if parked is not None and parked["layer"] is layer and parked["geometry"] == geometry:
            self.sessions, self.labels_layer = parked["sessions"], parked["labels"]
            self.points_layer, self.preview_layer = parked["points"], parked["preview"]
            for helper in (self.points_layer, self.preview_layer):
                helper.visible = True
        else:
            if parked is not None:
                self._remove_layers(parked["points"], parked["preview"])
            self.sessions, self.points_layer, self.preview_layer = {}, None, None
        self.image_layer, self.geometry = layer, geometry
        self.channel_axis, self.channel = channel_axis, channel
        if self.points_layer is None or self.points_layer not in self.viewer.layers:
            self._remove_layers(self.points_layer, self.preview_layer)
            self._create_helper_layers()
        self._hook_layers()
        if self.labels_layer is not None and tuple(self.labels_layer.data.shape) != geometry.label_shape:
            self.labels_layer = None
        self.on_label_id(self.next_label_id())
        self._refresh_view(recompute=True)

    def drop_image_layer(self, layer: Any) -> None:
        """Forget ``layer`` (removed from the viewer): its helper layers go, labels stay."""
        parked = self._parked.pop(id(layer), None)
        if parked is not None:
            self._remove_layers(parked["points"], parked["preview"])
        if layer is self.image_layer:
            self._unhook_layers()
            self._remove_layers(self.points_layer, self.preview_layer)
            self.image_layer = self.geometry = self.points_layer = self.preview_layer = None
            self.sessions = {}

    def _park_current_image(self) -> None:
        """Keep the current image's state aside (helpers hidden) while another layer is annotated."""
        for session in self.sessions.values():
            session.generation += 1  # results still in flight are stale now
            session.shown_generation = session.generation
            session.shown_config = ()  # recomputed when the image comes back
            session.commit_pending = False
        for helper in (self.points_layer, self.preview_layer):
            if helper is not None:
                helper.visible = False
        self._parked[id(self.image_layer)] = {
            "layer": self.image_layer,
            "geometry": self.geometry,
            "sessions": self.sessions,
            "labels": self.labels_layer,
            "points": self.points_layer,
            "preview": self.preview_layer,
        }

    def set_labels_layer(self, layer: Any | None) -> None:
        """Commit into ``layer`` (must match the image's label grid); ``None``: create one on commit."""
        if (
            layer is not None
            and self.geometry is not None
            and tuple(layer.data.shape) != self.geometry.label_shape
        ):
            raise ValueError(
                f"labels layer {layer.name!r} has shape {tuple(layer.data.shape)}, "
                f"the image needs {self.geometry.label_shape}"
            )
        self.labels_layer = layer
        self.on_label_id(self.next_label_id())

    def set_model(self, source: str, device: str = "cpu") -> None:
        """Use another model; every slice's clicks are replayed with it when shown."""
        self.model_source, self.device = str(source), str(device)
        self._last_error = None
        self._refresh_view(recompute=True)

    def set_threshold(self, threshold: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self._refresh_view(recompute=True)

    def close(self) -> None:
        """Disconnect from the viewer and stop the worker (helper layers stay for the user)."""
        self._unhook_layers()
        self.viewer.dims.events.current_step.disconnect(self._on_dims_change)
        self.runner.shutdown()

    # ------------------------------------------------------------------ queries
    def current_key(self) -> SliceKey | None:
        if self.geometry is None:
            return None
        return current_slice_key(self.geometry, self.viewer.dims.point)

    def current_session(self, create: bool = True) -> SliceSession | None:
        key = self.current_key()
        if key is None:
            return None
        if key not in self.sessions and create:
            self.sessions[key] = SliceSession(key)
        return self.sessions.get(key)

    def next_label_id(self) -> int:
        if self.label_id is not None:
            return self.label_id
        return next_free_label(self.labels_layer.data) if self.labels_layer is not None else 1

    @property
    def busy(self) -> bool:
        return self.runner.busy

    # ------------------------------------------------------------------ clicks
    def add_click_world(self, world_position: Any, positive: bool) -> bool:
        """Add a click at a world position; returns False (with a status message) outside the image."""
        if self.geometry is None or self.points_layer is None:
            self._status("FCFI: choose an image layer first")
            return False
        if not self._plane_on_screen():
            self._status(
                "FCFI: clicks need the 2D view of the image's y/x plane (toggle 2D, reset axis order)"
            )
            return False
        coords = world_to_grid(self.geometry, world_position)
        key, row, col = split_grid_point(self.geometry, coords)
        if not self.geometry.contains(key, row, col):
            self._status(
                f"FCFI: click at ({row}, {col}) is outside the image {self.geometry.plane_shape}; ignored"
            )
            return False
        point = np.array([*key, row, col], dtype=float)
        self._append_point(point, positive)
        return True

    def _plane_on_screen(self) -> bool:
        """True when the viewer shows the label grid's (row, col) plane in 2D, as annotation needs."""
        dims = self.viewer.dims
        return dims.ndisplay == 2 and tuple(dims.displayed) == (dims.ndim - 2, dims.ndim - 1)

    def mouse_callback(self, layer: Any, event: Any):
        """napari ``mouse_drag_callbacks`` entry: a click (not a drag) adds a click.

        Left click: positive; right click or Ctrl+left: negative; Shift+left: edit the label under
        the cursor. Dragging keeps napari's pan/zoom. Only in the layer's pan/zoom mode, so that the
        points layer's own add/select tools keep working (their points become clicks as well).
        """
        if not self.annotating or getattr(event, "type", "mouse_press") != "mouse_press":
            return
        if str(getattr(layer, "mode", "pan_zoom")) != "pan_zoom":
            return  # the layer's own tools (e.g. the points layer's add mode) handle this press
        press_position = np.asarray(event.position, dtype=float)
        yield
        while getattr(event, "type", None) == "mouse_move":
            yield
        release_position = np.asarray(getattr(event, "position", press_position), dtype=float)
        if self.geometry is not None and release_position.shape == press_position.shape:
            moved = world_to_grid(self.geometry, release_position) - world_to_grid(
                self.geometry, press_position
            )
            if np.abs(moved[-2:]).max() > 2.0:
                return  # a drag: napari pans/zooms, no click
        modifiers = {str(getattr(m, "name", m)).lower() for m in getattr(event, "modifiers", ())}
        button = getattr(event, "button", 1)
        position = tuple(press_position)
        if button == 1 and "shift" in modifiers:
            self.select_label_at(position)
        elif button == 2 or (button == 1 and ("control" in modifiers or "meta" in modifiers)):
            self.add_click_world(position, positive=False)
        elif button == 1:
            self.add_click_world(position, positive=True)

    def _append_point(self, point: np.ndarray, positive: bool, internal: bool = False) -> None:
        layer = self.points_layer
        defaults = layer.feature_defaults
        previous = bool(defaults["positive"].iloc[0]) if "positive" in defaults else True
        layer.feature_defaults = {"positive": bool(positive)}
        self._internal_points_edit = internal
        try:
            layer.add(point[None, :])
        finally:
            self._internal_points_edit = False
            layer.feature_defaults = {"positive": previous}

    def _remove_points_of(self, key: SliceKey, last_only: bool = False) -> None:
        indices = [
            i
            for i, (k, click) in enumerate(self._points_by_slice())
            if k == key and (not last_only or self.geometry.contains(k, click.row, click.col))
        ]
        if last_only:
            indices = indices[-1:]
        if indices:
            self._internal_points_edit = True
            try:
                self.points_layer.selected_data = set()
                self.points_layer.remove(indices)
            finally:
                self._internal_points_edit = False

    def _points_by_slice(self) -> list[tuple[SliceKey, Click]]:
        layer = self.points_layer
        if layer is None or len(layer.data) == 0:
            return []
        positive = (
            layer.features["positive"].to_numpy(dtype=bool)
            if "positive" in layer.features
            else np.ones(len(layer.data), dtype=bool)
        )
        out = []
        for coords, is_positive in zip(np.asarray(layer.data), positive):
            key, row, col = split_grid_point(self.geometry, coords)
            out.append((key, Click(row, col, bool(is_positive))))
        return out

    def _on_points_features(self, event: Any = None) -> None:
        """A click turned positive/negative in the features table: rebuild like a data change."""
        self._on_points_data(event)

    def _on_points_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if not any(word in action.lower() for word in ("added", "removed", "changed")):
            return
        by_slice: dict[SliceKey, list[Click]] = {}
        outside = 0
        for key, click in self._points_by_slice():
            if not self.geometry.contains(key, click.row, click.col):
                outside += 1
                continue
            by_slice.setdefault(key, []).append(click)
        if outside:
            self._status(f"FCFI: {outside} click(s) outside the image are ignored")
        current = self.current_key()
        for key in set(by_slice) | set(self.sessions):
            clicks = tuple(by_slice.get(key, ()))
            session = self.sessions.setdefault(key, SliceSession(key))
            if clicks == session.clicks:
                continue
            if not self._internal_points_edit:
                session.redo_stack.clear()
            session.clicks = clicks
            self._request(session, show=key == current)

    # ------------------------------------------------------------------ object actions
    def undo(self) -> None:
        """Remove the last click of the slice on screen (kept for redo)."""
        session = self.current_session()
        if session is None or not session.clicks:
            self._status("FCFI: nothing to undo on this slice")
            return
        last = session.clicks[-1]
        self._remove_points_of(session.key, last_only=True)
        session.redo_stack.append(last)

    def redo(self) -> None:
        session = self.current_session()
        if session is None or not session.redo_stack:
            self._status("FCFI: nothing to redo on this slice")
            return
        click = session.redo_stack.pop()
        self._append_point(
            np.array([*session.key, click.row, click.col], float), click.positive, internal=True
        )

    def reset_object(self) -> None:
        """Forget the object in progress on the slice on screen (clicks and edit selection)."""
        session = self.current_session()
        if session is None:
            return
        self._remove_points_of(session.key)
        self._restart_session(session)
        self._refresh_view()

    def select_label(self, label_id: int) -> bool:
        """Edit label ``label_id`` of the slice on screen: clicks refine it, commit replaces it."""
        session = self.current_session()
        if session is None or self.labels_layer is None:
            self._status("FCFI: no labels layer to edit")
            return False
        plane = np.asarray(self.labels_layer.data[session.key])
        mask = plane == int(label_id)
        if label_id <= 0 or not mask.any():
            self._status(f"FCFI: label {label_id} is not on this slice")
            return False
        self._remove_points_of(session.key)
        self._restart_session(session)
        session.edit_label, session.initial_mask = int(label_id), mask
        session.mask, session.mask_box = mask, _bounding_slices(mask)
        self._status(f"FCFI: editing label {label_id}; click to refine, commit replaces it")
        self._refresh_view()
        return True

    def select_label_at(self, world_position: Any) -> bool:
        if self.geometry is None or self.labels_layer is None:
            self._status("FCFI: no labels layer to edit")
            return False
        key, row, col = split_grid_point(self.geometry, world_to_grid(self.geometry, world_position))
        if not self.geometry.contains(key, row, col):
            return False
        return self.select_label(int(np.asarray(self.labels_layer.data[key])[row, col]))

    def commit(self) -> bool:
        """Write the object on screen into the labels layer (deferred until its prediction is in)."""
        session = self.current_session()
        if session is None:
            return False
        if not session.up_to_date:
            session.commit_pending = True
            self._status("FCFI: commit will happen when the prediction finishes")
            return False
        return self._commit(session)

    def _commit(self, session: SliceSession) -> bool:
        session.commit_pending = False
        editing = session.edit_label is not None
        if session.mask is None or (not session.clicks and not editing):
            self._status("FCFI: nothing to commit on this slice")
            return False
        if not editing and not session.mask.any():
            self._status("FCFI: the object is empty; add a positive click or lower the threshold")
            return False
        labels = self._ensure_labels_layer()
        label_id = session.edit_label if editing else self.next_label_id()
        # Work inside the box of the new object (and of the edited label) only: big planes stay cheap.
        window = session.mask_box if session.mask_box is not None else _bounding_slices(session.mask)
        if editing:
            window = _union_slices(window, _bounding_slices(session.initial_mask)) or window
        plane = np.asarray(labels.data[(*session.key, *window)])
        painted = paint_object(
            plane,
            session.mask[window],
            label_id,
            replace_label=editing,
            overwrite=self.overwrite,
        )
        if not editing and not (painted == label_id).any():
            self._status(
                "FCFI: nothing to paint: the object lies on existing labels "
                "(tick 'paint over existing labels' to overwrite them)"
            )
            return False
        rows, cols = np.nonzero(painted != plane)
        if rows.size:
            index = tuple(np.full(rows.size, k) for k in session.key)
            index += (rows + window[0].start, cols + window[1].start)
            labels.data_setitem(index, painted[rows, cols])
        self.click_log.add(
            ObjectRecord(
                label_id=label_id,
                slice_key=session.key,
                clicks=[(c.row, c.col, c.positive) for c in session.clicks],
                edited=editing,
            )
        )
        self._status(f"FCFI: committed label {label_id} ({int((painted == label_id).sum())} px)")
        self._remove_points_of(session.key)
        self._restart_session(session)
        self.label_id = None  # a chosen id is used once; then the next free id again
        self.on_label_id(self.next_label_id())
        self._refresh_view()
        return True

    def _restart_session(self, session: SliceSession) -> None:
        session.clicks, session.redo_stack = (), []
        session.edit_label, session.initial_mask = None, None
        session.mask = session.mask_box = None
        session.object_serial += 1
        session.generation += 1
        session.shown_generation = session.generation
        session.commit_pending = False

    def _ensure_labels_layer(self) -> Any:
        if self.labels_layer is None:
            geometry = self.geometry
            self.labels_layer = self.viewer.add_labels(
                np.zeros(geometry.label_shape, dtype=np.uint32),
                name=f"{self.image_layer.name} labels",
                scale=geometry.scale,
                translate=geometry.translate,
            )
            self._keep_points_on_top()
            # napari selects a new layer; keep the clicks layer active so the next click annotates.
            self.viewer.layers.selection.active = self.points_layer
        return self.labels_layer

    # ------------------------------------------------------------------ inference
    def _config(self) -> tuple:
        return (self.model_source, self.device, self.channel_axis, self.channel, self.threshold)

    def _request(self, session: SliceSession, show: bool = True) -> None:
        session.generation += 1
        if not session.clicks:
            # Nothing to predict: show the initial object (editing) or nothing.
            session.mask = session.initial_mask
            session.mask_box = None if session.initial_mask is None else _bounding_slices(session.initial_mask)
            session.shown_generation = session.generation
            session.shown_config = self._config()
            if show:
                self._update_preview()
            return
        job = self._make_job(session)
        self.runner.submit((id(self.image_layer), session.key), session.generation, job)

    def _make_job(self, session: SliceSession) -> Callable[[], tuple]:
        clicks = session.clicks
        config = self._config()
        serial = session.object_serial
        initial_mask = session.initial_mask
        image_layer, geometry = self.image_layer, self.geometry
        engine = session.engine
        cache, factory = self.model_cache, self.segmenter_factory
        source, device, _channel_axis, channel, threshold = config

        cpu_threads = self.cpu_threads

        def job() -> tuple:
            if cpu_threads and str(device).startswith("cpu"):
                _use_torch_threads(cpu_threads)
            engine_config = (id(image_layer), source, device, channel, serial)
            if engine.segmenter is None or engine.config != engine_config:
                try:
                    model = cache.get(source, device)
                except Exception as error:
                    raise RuntimeError(describe_load_error(source, error)) from error
                image = read_slice(image_layer, geometry, session.key)
                segmenter = factory(model)
                segmenter.set_image(
                    image,
                    channel_axis=geometry.slice_channel_axis(),
                    channel=channel,
                    initial_mask=initial_mask,
                )
                engine.segmenter, engine.config, engine.applied = segmenter, engine_config, ()
            segmenter = engine.segmenter
            keep = 0
            while keep < min(len(engine.applied), len(clicks)) and engine.applied[keep] == clicks[keep]:
                keep += 1
            try:
                for _ in range(len(engine.applied) - keep):
                    segmenter.undo()
                    engine.applied = engine.applied[:-1]
                for click in clicks[keep:]:
                    segmenter.add_click(click.row, click.col, click.positive)
                    engine.applied += (click,)
                segmenter.threshold = threshold
                # Only the mask leaves the engine (no full-size probability map: 256 MB at 8192²), with
                # its box so the GUI thread touches only that part of big planes. The engine's mask is
                # read-only and replaced (never edited) on the next click: shared, not copied. The box
                # comes from the engine's sparse map; a full scan only for stand-ins or an empty object.
                mask = np.asarray(segmenter.mask, dtype=bool)
                object_box = getattr(segmenter, "object_box", None)
                box = _bounding_slices(mask) if object_box is None else object_box.slices
            except Exception:
                engine.segmenter = None  # rebuilt and replayed on the next request
                raise
            return mask, box, config

        return job

    def _on_result(self, result: JobResult) -> None:
        image_id, key = result.slot
        session = self.sessions.get(key) if image_id == id(self.image_layer) else None
        if session is None or result.generation != session.generation:
            return  # stale: a newer request for this slice exists
        session.shown_generation = result.generation
        if result.error is not None:
            session.commit_pending = False
            self._error(
                str(result.error) if isinstance(result.error, RuntimeError) else f"FCFI: {result.error!r}"
            )
            return
        self._last_error = None
        session.mask, session.mask_box, session.shown_config = result.value
        if session.shown_config != self._config() and session.clicks:
            self._request(session)  # model/threshold/channel changed while this ran: recompute
            return
        if session.key == self.current_key():
            self._update_preview()
        if session.commit_pending:
            self._commit(session)

    def _on_busy(self, busy: bool) -> None:
        self.on_busy(busy)

    # ------------------------------------------------------------------ view
    def _on_dims_change(self, event: Any = None) -> None:
        self._refresh_view(recompute=True)

    def _refresh_view(self, recompute: bool = False) -> None:
        session = self.current_session(create=False)
        if (
            recompute
            and session is not None
            and session.clicks
            and session.up_to_date
            and session.shown_config != self._config()
        ):
            self._request(session)
        self._update_preview()

    def _update_preview(self) -> None:
        """Show the current slice's object in the preview layer.

        Only the box that held the previous preview or holds the new object is rewritten, in place,
        followed by a layer refresh: a new full plane per click cost 13-38 ms at 8192².
        """
        layer = self.preview_layer
        if layer is None or self.geometry is None:
            return
        session = self.current_session(create=False)
        mask = None if session is None else session.mask
        new_box = None
        if mask is not None:
            new_box = session.mask_box if session.mask_box is not None else _bounding_slices(mask)
        plane = layer.data
        if (
            id(layer) not in self._preview_boxes
            or not isinstance(plane, np.ndarray)
            or plane.shape != tuple(self.geometry.plane_shape)
            or (mask is not None and mask.shape != plane.shape)
        ):
            fresh = np.zeros(self.geometry.plane_shape, dtype=np.uint8)
            if mask is not None:
                fresh[mask] = 1
            layer.data = fresh
        else:
            region = _union_slices(self._preview_boxes[id(layer)], new_box)
            if region is None:
                return  # nothing was shown and nothing is to be shown
            plane[region] = 0 if mask is None else mask[region]
            layer.refresh()
        self._preview_boxes[id(layer)] = new_box

    def _create_helper_layers(self) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        geometry, name = self.geometry, self.image_layer.name
        self.preview_layer = self.viewer.add_labels(
            np.zeros(geometry.plane_shape, dtype=np.uint8),
            name=f"{name} FCFI preview",
            scale=geometry.scale[-2:],
            translate=geometry.translate[-2:],
            opacity=0.5,
            colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}),
        )
        self._preview_boxes[id(self.preview_layer)] = None  # created empty: updates can be partial
        self.points_layer = self.viewer.add_points(
            np.empty((0, len(geometry.label_shape))),
            ndim=len(geometry.label_shape),
            name=f"{name} FCFI clicks",
            scale=geometry.scale,
            translate=geometry.translate,
            features={"positive": np.zeros(0, dtype=bool)},
            feature_defaults={"positive": True},
            # Colour follows the `positive` feature (napari maps it, also for points added by its tools).
            face_color="positive",
            face_color_cycle={True: tuple(POSITIVE_COLOR), False: tuple(NEGATIVE_COLOR)},
            border_color="black",
            size=max(3.0, 0.03 * max(geometry.plane_shape)) * min(geometry.scale[-2:]),
        )
        self.viewer.layers.selection.active = self.points_layer

    def _keep_points_on_top(self) -> None:
        layers = self.viewer.layers
        for layer in (self.preview_layer, self.points_layer):
            if layer is not None and layer in layers:
                layers.move(layers.index(layer), len(layers))

    def _remove_layers(self, *layers: Any) -> None:
        for layer in layers:
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    def _hook_layers(self) -> None:
        self.points_layer.events.data.connect(self._on_points_data)
        self.points_layer.events.features.connect(self._on_points_features)
        for layer in (self.points_layer, self.image_layer):
            layer.mouse_drag_callbacks.append(self.mouse_callback)
            self._hooked_layers.append(layer)

    def _unhook_layers(self) -> None:
        if self.points_layer is not None:
            self.points_layer.events.data.disconnect(self._on_points_data)
            self.points_layer.events.features.disconnect(self._on_points_features)
        for layer in self._hooked_layers:
            if self.mouse_callback in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.remove(self.mouse_callback)
        self._hooked_layers = []

    def _status(self, message: str) -> None:
        self.viewer.status = message
        self.on_status(message)

    def _error(self, message: str) -> None:
        """Notify once per distinct failure (a missing model would otherwise fail on every click)."""
        from napari.utils.notifications import show_error

        if message != self._last_error:
            show_error(message)
        self._last_error = message
        self.on_status(message)


__all__ = ["Click", "SegmentationController", "SliceSession"]
