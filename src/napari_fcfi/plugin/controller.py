"""The plugin's interaction core: one viewer's images, clicks, preview and commits.

:class:`SegmentationController` needs a napari viewer but no widget, so tests drive it directly. For
every image it annotates it keeps an :class:`ImageState`: the image's helper layers (clicks, preview;
:mod:`.layers`), the objects in progress on its slices (:mod:`napari_fcfi.annotation.objects`) and the
labels layer it commits to (whose crash-recovery journal :mod:`.journaling` keeps). The clicks live in
the points layer: the controller listens to that layer's data events, so clicks added by the mouse,
by the layer's own tools or by scripts are handled alike. Predictions run off the GUI thread (:mod:`.predictions`),
commits go through :mod:`.committing`, propagation through :mod:`.propagating`.

Settings travel as an :class:`AnnotationSettings` dataclass; the widget changes them with
:meth:`SegmentationController.update`. :meth:`SegmentationController.close` detaches every callback,
key binding and listener and stops the worker; a new controller finds and reuses the helper layers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, MutableSet
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import napari
from napari.layers import Image, Labels, Points

from napari_fcfi.annotation.clicklog import ClickLog
from napari_fcfi.annotation.geometry import (
    ImageGeometry,
    SliceKey,
    current_slice_key,
    describe_slice,
    split_grid_point,
    world_to_grid,
)
from napari_fcfi.annotation.history import Action
from napari_fcfi.annotation.objects import SliceObject
from napari_fcfi.annotation.painting import LabelIdError
from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.windows import bbox_of_mask, bbox_union

from . import dock_sessions, editing, undoing
from . import layers as helpers
from .background import BackgroundRun
from .commit_flow import commit_current, commit_if_pending
from .committing import Committer
from .image_state import AnnotationSettings, ImageState
from .journaling import HistoryStep
from .keys import SHORTCUTS, LayerBindings
from .models import ModelCache
from .mouse import ClickIntent, click_gesture
from .points_sync import PointsSync
from .predictions import (
    Prediction,
    Predictor,
    Request,
    engine_segmenter_factory,
    mask_from,
    rethreshold,
)
from .refused_commits import FAR_CLICK, STAYS, RefusedCommitGuard
from .stack_runs import PropagationRun, busy_message
from .stack_tools import STACK_SHORTCUTS, stack_key_actions
from .worker import ImmediateRunner, ThreadedRunner


class SegmentationController:
    """Connects one viewer's images, clicks, preview and labels layers to the FCFI engine."""

    def __init__(
        self,
        viewer: napari.Viewer,
        model_cache: ModelCache,
        *,
        segmenter_factory: Callable[[Any], Any] | None = None,
        runner: ThreadedRunner | ImmediateRunner | None = None,
        settings: AnnotationSettings | None = None,
        journal_root: str | Path | None = None,
    ) -> None:
        self.viewer = viewer
        self.model_cache = model_cache
        self._settings = settings or AnnotationSettings()
        # Engine settings recorded in the click log; known only when the default factory builds the engine.
        self.engine_settings: dict[str, Any] = {} if segmenter_factory else {"preset": "microscopy"}
        self.runner = runner if runner is not None else ThreadedRunner()
        self.runner.on_busy = lambda busy: self.on_busy(busy)
        self.predictor = Predictor(
            self.runner,
            model_cache,
            segmenter_factory or engine_segmenter_factory(**self.engine_settings),
            self._on_prediction,
            self._on_prediction_error,
        )
        self.committer = Committer(viewer)
        self.refused = RefusedCommitGuard()
        self.journal_root = journal_root
        self.images: dict[str, ImageState] = {}
        self.state: ImageState | None = None
        self.points = PointsSync(self.on_clicks_changed, self.show_status)
        self.on_status: Callable[[str], None] = lambda message: None
        self.on_busy: Callable[[bool], None] = lambda busy: None
        # What changed, for the widget: "object" (clicks, prediction, slice on screen: cheap to show) or
        # "all" (image, labels, settings, commits).
        self.on_change: Callable[..., None] = lambda what="all": None
        # napari's undo or redo of a labels layer this controller commits to (segment all follows it).
        self.on_history: Callable[[HistoryStep], None] = lambda step: None
        self._last_error: str | None = None
        self.propagation: PropagationRun | None = None  # the running propagation or fill
        # A fill or continuation started by a key.
        self.on_stack_run: Callable[[PropagationRun | None], None] = lambda run: None
        self.stack_axis: Callable[[], int | None] = lambda: None  # the propagate panel's axis
        # Segment all and adaptation runs of the panels: closing detaches them (their widgets go too).
        self.background_runs: MutableSet[BackgroundRun] = weakref.WeakSet()
        self._closed = False
        self.bindings = LayerBindings(
            {
                "commit": self.commit,
                "undo": self.undo,
                "redo": self.redo,
                "reset": self.reset_object,
                **stack_key_actions(self),
            },
            self.mouse_callback,
            {**SHORTCUTS, **STACK_SHORTCUTS},
        )
        viewer.dims.events.current_step.connect(self._on_dims_change)
        viewer.camera.events.zoom.connect(self._on_zoom)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> AnnotationSettings:
        return self._settings

    def update(self, **changes: Any) -> None:
        """Change settings (names of :class:`AnnotationSettings`); the object on screen follows."""
        unknown = set(changes) - {f.name for f in fields(AnnotationSettings)}
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}")
        if "threshold" in changes and not 0.0 < float(changes["threshold"]) < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {changes['threshold']}")
        old, self._settings = self._settings, replace(self._settings, **changes)
        if (old.model_source, old.device) != (self._settings.model_source, self._settings.device):
            self._last_error = None
            self._recompute_all()
        elif old.threshold != self._settings.threshold:
            self._rethreshold()
        self.on_change()

    # ------------------------------------------------------------------ images
    @property
    def image_layer(self) -> Image | None:
        return None if self.state is None else self.state.layer

    @property
    def geometry(self) -> ImageGeometry | None:
        return None if self.state is None else self.state.geometry

    @property
    def points_layer(self) -> Points | None:
        return None if self.state is None else self.state.clicks_layer

    @property
    def preview_layer(self) -> Labels | None:
        return None if self.state is None else self.state.preview_layer

    @property
    def labels_layer(self) -> Labels | None:
        return None if self.state is None else self.state.labels_layer

    def set_image_layer(self, layer: Any, channel_axis: int | None = None, channel: Any = None) -> None:
        """Annotate ``layer``; its helper layers are found (or created) aligned with it.

        Each image keeps its own clicks, objects in progress and labels choice while another one is
        annotated. A different channel axis changes the label grid: that image then starts afresh.
        Raises ``ValueError`` (nothing changed) when the image cannot be annotated.
        """
        if self._closed:
            return  # the dock was closed: napari may still refresh its menus, nothing is created
        geometry = helpers.geometry_of(layer, channel_axis)
        image_id = str(layer.unique_id)
        state = self.images.get(image_id)
        if state is not None and state.geometry != geometry:
            self._drop_state(state, remove_helpers=True)
            state = None
        if state is None:
            state = self._new_state(layer, geometry, channel_axis, channel)
        elif state.channel != channel:
            state.channel = channel
            self.predictor.forget_image(image_id)
        previous, self.state = self.state, state
        if previous is not None and previous is not state:
            for helper in (previous.clicks_layer, previous.preview_layer):
                helper.visible = False
        for helper in (state.clicks_layer, state.preview_layer):
            helper.visible = True
        self.bindings.bind((state.clicks_layer, state.layer))
        self.viewer.layers.selection.active = state.clicks_layer
        self.refresh_view(recompute=True)
        self.on_change()

    def _new_state(
        self, layer: Any, geometry: ImageGeometry, channel_axis: int | None, channel: Any
    ) -> ImageState:
        clicks = helpers.find_helper(self.viewer, layer, "clicks", geometry)
        if clicks is None:
            clicks = helpers.create_clicks_layer(self.viewer, layer, geometry)
        else:
            helpers.style_clicks_layer(clicks, self.viewer.camera.zoom)
        preview = helpers.find_helper(self.viewer, layer, "preview", geometry)
        if preview is None:
            preview = helpers.create_preview_layer(self.viewer, layer, geometry)
        state = ImageState(layer, geometry, channel_axis, channel, clicks, preview)
        kept = helpers.take_session(clicks, geometry)  # the objects in progress of a closed dock
        state.labels_layer, _ = self.committer.labels_for(layer, geometry, None)
        state.preview_box = None
        helpers.clear_preview(preview, geometry.plane_shape)
        self.images[state.image_id] = state
        self.points.attach(state)
        if kept is not None:
            dock_sessions.take_up(self, state, kept)
        self.points.rebuild(state)  # clicks left in a reused clicks layer become objects again
        helpers.keep_on_top(self.viewer, preview, clicks)
        return state

    def _drop_state(self, state: ImageState, remove_helpers: bool) -> None:
        run = state.session.running
        if run is not None:  # nothing it still makes has a place to go
            run.cancel()
            run.image_dropped = True
        self.points.detach(state)
        self.bindings.unbind((state.clicks_layer, state.layer))
        self.predictor.forget_image(state.image_id)
        self.images.pop(state.image_id, None)
        if remove_helpers:
            helpers.remove_layers(self.viewer, state.clicks_layer, state.preview_layer)
        if self.state is state:
            self.state = None

    def _on_layer_removed(self, event: Any) -> None:
        removed = event.value
        for state in list(self.images.values()):
            if helpers.same_layer(removed, state.layer):
                self._drop_state(state, remove_helpers=True)  # helpers go with their image
            elif helpers.same_layer(removed, state.labels_layer):
                state.labels_layer = None  # the next commit goes to a new labels layer
                self.show_status(
                    f"FCFI: labels layer {removed.name!r} was removed; the next commit creates a new one"
                )
            elif helpers.same_layer(removed, state.clicks_layer) or helpers.same_layer(
                removed, state.preview_layer
            ):
                self._drop_state(state, remove_helpers=True)
        self.on_change()

    def _on_layer_inserted(self, event: Any) -> None:
        """An image's own labels opened after the image was picked (e.g. the saved ``.fcfi`` of an
        earlier session) become its labels layer now, not only at the next commit: the Labels menu,
        the next label id and Save labels show them at once."""
        layer = event.value
        helpers.split_copied_tag(layer, self.viewer.layers)  # a duplicated labels layer: its own click log
        if (
            not isinstance(layer, Labels)
            or helpers.is_helper(layer)
            or helpers.made_by_commit(layer, self.images)
        ):
            return  # (a commit's own new layer: the commit takes it)
        found = False
        for state in self.images.values():
            if state.labels_layer is None:
                state.labels_layer, _ = self.committer.labels_for(state.layer, state.geometry, None)
                found = found or state.labels_layer is layer
        if found:
            self.on_change()

    def set_labels_layer(self, layer: Any | None) -> None:
        """Commit into ``layer`` (``None``: the image's own labels layer, created on the first commit)."""
        if self.state is None:
            return
        adopted = None
        if layer is not None and helpers.saved_without_transform(layer, self.state.geometry):
            adopted = helpers.take_image_transform(layer, self.state.geometry)  # chosen: it is the image's
        chosen, problem = self.committer.labels_for(self.state.layer, self.state.geometry, layer)
        if problem is not None:
            raise ValueError(problem)
        self.state.labels_layer = chosen
        self.on_change()
        if adopted:
            self.show_status(f"FCFI: {adopted}")

    def labels_problem(self, layer: Any) -> str | None:
        """Why ``layer`` cannot receive the current image's objects (None when it can; a layer saved
        without the image's scale can: choosing it gives it the image's scale and translate)."""
        if self.state is None or helpers.saved_without_transform(layer, self.state.geometry):
            return None
        return helpers.labels_fit(layer, self.state.geometry)

    # ------------------------------------------------------------------ queries
    def current_key(self) -> SliceKey | None:
        if self.state is None:
            return None
        return current_slice_key(self.state.geometry, self.viewer.dims.point)

    def current_object(self, create: bool = True) -> SliceObject | None:
        state, key = self.state, self.current_key()
        return None if state is None or key is None else state.objects.get(key, create)

    def next_label_id(self) -> int:
        labels = self.labels_layer
        if self._settings.label_id is not None:
            return self._settings.label_id
        if labels is None:
            return 1
        try:
            return self.committer.next_free(labels)
        except LabelIdError:
            return 0

    def label_id_problem(self) -> str | None:
        """Why the chosen label id cannot take a new object (it exists already), None when it can."""
        labels, chosen = self.labels_layer, self._settings.label_id
        if labels is None or chosen is None:
            return None
        try:
            self.committer.label_id(labels, chosen)
        except LabelIdError as error:
            return str(error)
        return None

    @property
    def click_log(self) -> ClickLog:
        """The click log of the labels layer commits go to (empty before the first commit)."""
        return helpers.click_log_of(self.labels_layer) if self.labels_layer is not None else ClickLog()

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def _plane_on_screen(self) -> bool:
        dims = self.viewer.dims
        return dims.ndisplay == 2 and tuple(dims.displayed) == (dims.ndim - 2, dims.ndim - 1)

    # ------------------------------------------------------------------ clicks
    def add_click_world(self, world_position: Any, positive: bool) -> bool:
        """Add a click at a world position; returns False (with a status message) when it cannot."""
        state = self.state
        if state is None:
            self.show_status("FCFI: choose an image layer first")
            return False
        if not state.clicks_layer.visible:
            self.show_status("FCFI: the clicks layer is hidden; show it to annotate")
            return False
        problem = helpers.transform_problem(state.layer)  # rotated after it was chosen
        if problem is not None:
            self.show_status(f"FCFI: {problem}")
            return False
        if not self._plane_on_screen():
            self.show_status(
                "FCFI: clicks need the 2D view of the image's y/x plane (toggle 2D, reset axis order)"
            )
            return False
        key, row, col = split_grid_point(state.geometry, world_to_grid(state.geometry, world_position))
        if not state.geometry.contains(key, row, col):
            self.show_status(
                f"FCFI: click at ({row}, {col}) is outside the image {state.geometry.plane_shape}; ignored"
            )
            return False
        if self.refused.far_click(state, key, row, col, positive):
            self.show_status(FAR_CLICK)
            return False
        self.points.append(state, key, Click(row, col, bool(positive)))
        return True

    def mouse_callback(self, layer: Any, event: Any):
        """napari ``mouse_drag_callbacks`` entry: a click (not a drag) adds a click.

        Only in the layer's pan/zoom mode, so the points layer's own tools keep working (their points
        become clicks as well).
        """
        if not self._settings.annotating or getattr(event, "type", "mouse_press") != "mouse_press":
            return
        if str(getattr(layer, "mode", "pan_zoom")) != "pan_zoom":
            return
        yield from click_gesture(event, self._on_click_intent)

    def _on_click_intent(self, intent: ClickIntent) -> None:
        if intent.action == "edit":
            self.select_label_at(intent.position)
        else:
            self.add_click_world(intent.position, intent.action == "positive")

    def on_clicks_changed(
        self, state: ImageState, key: SliceKey, clicks: tuple[Click, ...], by_user: bool
    ) -> None:
        """Called by :class:`PointsSync` when a slice's clicks changed in the points layer."""
        self.request_prediction(state, state.session.set_clicks(key, clicks, by_user))

    # ------------------------------------------------------------------ object actions
    def undo(self) -> None:
        """Take back the latest change of this image's objects in progress (:func:`.undoing.undo`)."""
        undoing.undo(self)

    def redo(self) -> None:
        """Do the latest undone change again."""
        undoing.redo(self)

    def reset_object(self) -> None:
        """Esc (undoable): see :func:`.undoing.reset_object`."""
        undoing.reset_object(self)

    def _show_restored(self, state: ImageState, action: Action) -> None:
        undoing.show_restored(self, state, action)

    def select_label(self, label_id: int) -> bool:
        """Edit label ``label_id`` of the slice on screen: see :func:`.editing.select_label`."""
        return editing.select_label(self, label_id)

    def select_label_at(self, world_position: Any) -> bool:
        return editing.select_label_at(self, world_position)

    def commit(self) -> bool:
        """Write the object on screen into the labels layer (deferred until its prediction is in)."""
        state, obj = self.state, self.current_object(create=False)
        committed = commit_current(self)
        if state is not None:
            self._after_commit_attempt(state, obj)
        return committed

    def _after_commit_attempt(self, state: ImageState, obj: SliceObject | None) -> None:
        if obj is not None and busy_message(state.session.running, state.image_id, obj.group, "commit"):
            return  # it waits for its run (the status said so): not a refused object
        if self.refused.after_commit(state, obj):
            self.show_status(f"{self.viewer.status}{STAYS}")  # after the commit's reason for refusing

    # ------------------------------------------------------------------ predictions
    def request_prediction(self, state: ImageState, obj: SliceObject) -> None:
        if not obj.clicks:
            # Nothing to predict: show the starting object (an edit or a propagated mask) or nothing.
            self.predictor.cancel(state.image_id, obj.key)
            obj.mask = obj.initial_mask
            obj.mask_box = None if obj.initial_mask is None else bbox_of_mask(obj.initial_mask)
            if state is self.state and obj.key == self.current_key():
                self.update_preview()
            self.on_change("object")
            return
        settings = self._settings
        request = Request(
            state.image_id,
            obj.key,
            obj.clicks,
            obj.serial,
            obj.initial_mask,
            settings.model_source,
            settings.device,
            state.channel,
            settings.threshold,
            settings.cpu_threads,
        )
        self.predictor.request(request, helpers.image_data(state.layer), state.geometry)

    def _on_prediction(self, prediction: Prediction) -> None:
        request = prediction.request
        state = self.images.get(request.image_id)
        obj = None if state is None else state.objects.get(request.key, create=False)
        if state is None or obj is None or obj.serial != request.serial or obj.clicks != request.clicks:
            return  # the object changed meanwhile: a newer request is on its way
        self._last_error = None
        settings = self._settings
        if (request.model_source, request.device, request.channel) != (
            settings.model_source,
            settings.device,
            state.channel,
        ):
            self.request_prediction(state, obj)  # model or channel changed while this ran: recompute
            return
        obj.probability = prediction.probability
        if request.threshold == settings.threshold:
            obj.mask, obj.mask_box = prediction.mask, prediction.box
        else:
            obj.mask, obj.mask_box = mask_from(
                prediction.probability, state.geometry.plane_shape, settings.threshold
            )
        if state is self.state and request.key == self.current_key():
            self.update_preview()
            if prediction.guess:  # named: it stays on screen when the user moves to another slice
                where = f" (slice {describe_slice(request.key)})" if request.key else ""
                self.show_status(f"FCFI: {prediction.guess}{where}")
        if obj.commit_pending:
            commit_if_pending(self, state, obj)
            self._after_commit_attempt(state, obj)
        self.on_change("object")

    def _on_prediction_error(self, slot: Any, message: str) -> None:
        from napari.utils.notifications import show_error

        image_id, key = slot
        state = self.images.get(image_id)
        obj = None if state is None else state.objects.get(key, create=False)
        if obj is not None:
            obj.commit_pending = False
        if message != self._last_error:
            show_error(message)  # once per distinct failure: a missing model would fail on every click
        self._last_error = message
        self.on_status(message)

    def _rethreshold(self) -> None:
        """Apply a new threshold to the probabilities already computed (no network run)."""
        message = rethreshold(self.images.values(), self._settings.threshold, self.state)
        self.refresh_view()
        if message:
            self.show_status(message)

    def _recompute_all(self) -> None:
        for state in self.images.values():
            for obj in state.objects.slices.values():
                obj.probability = None
            self.predictor.forget_image(state.image_id)
        self.refresh_view(recompute=True)

    # ------------------------------------------------------------------ view
    def _on_zoom(self, event: Any = None) -> None:
        for state in self.images.values():  # markers keep their size on screen
            helpers.fit_markers(state.clicks_layer, self.viewer.camera.zoom)

    def _on_dims_change(self, event: Any = None) -> None:
        self.refresh_view(recompute=True)
        self.on_change("object")

    def refresh_view(self, recompute: bool = False) -> None:
        state, obj = self.state, self.current_object(create=False)
        if (
            recompute
            and state is not None
            and obj is not None
            and obj.clicks
            and getattr(obj, "probability", None) is None
            and not self.predictor.pending(state.image_id, obj.key)
        ):
            self.request_prediction(state, obj)
        self.update_preview()

    def update_preview(self) -> None:
        """Show the current slice's object: only the box of the old and new object is rewritten."""
        state = self.state
        if state is None:
            return
        obj = self.current_object(create=False)
        mask = None if obj is None else obj.mask
        new_box = None
        if obj is not None and mask is not None:
            new_box = obj.mask_box if obj.mask_box is not None else bbox_of_mask(mask)
        helpers.redraw_preview(state.preview_layer, bbox_union([state.preview_box, new_box]), mask)
        state.preview_box = new_box

    # ------------------------------------------------------------------ status, closing
    def show_status(self, message: str) -> None:
        self.viewer.status = message
        self.on_status(message)

    def on_labels_history(self, step: HistoryStep) -> None:
        """napari undid or redid a change of a journaled labels layer: the label id box and the
        status follow (the click log already did)."""
        if self._closed:
            return
        self.show_status(step.message)
        self.on_change()
        self.on_history(step)

    def close(self) -> None:
        """Detach every callback, key binding and listener, stop the worker, remove empty helper layers."""
        if self._closed:
            return
        self._closed = True
        # Results or busy signals still queued for the GUI thread must not reach a deleted widget.
        self.on_status = self.on_change = lambda *args, **kwargs: None
        self.on_history = lambda step: None
        self.on_busy = lambda busy: None
        for run in list(self.background_runs):
            run.detach()
        if self.propagation is not None:
            self.propagation.cancel()
            self.propagation.dock_closed = True
            self.propagation.on_progress = lambda done, total: None  # its panel may be deleted
            self.propagation.on_finished = lambda done: None
        self.bindings.unbind()
        for state in list(self.images.values()):
            self.points.detach(state)
            dock_sessions.leave_for_next_dock(self, state)
        self.viewer.dims.events.current_step.disconnect(self._on_dims_change)
        self.viewer.camera.events.zoom.disconnect(self._on_zoom)
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        self.runner.shutdown(wait_s=0.0)  # closing the dock never waits; quitting the app does (worker.py)
        self.images.clear()
        self.state = None


__all__ = ["SHORTCUTS", "AnnotationSettings", "ImageState", "SegmentationController"]
