"""The clicks layer is the source of truth for clicks: keep the slices' clicks in step with its points.

Every point of an image's clicks layer is a click: its data coordinates are (slice indices..., row,
col) on the label grid and its ``positive`` feature the sign. Whenever the layer's data or features
change (the mouse, the layer's own tools, deleting a point, scripts), :meth:`PointsSync.rebuild`
regroups the points by slice in point order and tells its owner (the controller) which slices changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from napari_fcfi.annotation.geometry import SliceKey, split_grid_point
from napari_fcfi.engine.clicks import Click

from .image_state import ImageState

#: ``(state, key, clicks, by_user)``: slice ``key`` of ``state`` now has ``clicks`` in its clicks layer.
ClicksChanged = Callable[[ImageState, SliceKey, tuple[Click, ...], bool], None]


class PointsSync:
    """Connects the clicks layers of a controller's images to their objects in progress."""

    def __init__(self, on_clicks_changed: ClicksChanged, on_status: Callable[[str], None]) -> None:
        self.on_clicks_changed = on_clicks_changed
        self.on_status = on_status
        self._internal = False  # the owner itself is editing the points (propagation, commit)
        self._muted = False  # undo/redo shows clicks its objects already hold: nobody is told
        self._handlers: dict[int, Any] = {}

    def attach(self, state: ImageState) -> None:
        def on_change(event: Any = None) -> None:
            action = str(getattr(event, "action", "changed")).lower()
            if any(word in action for word in ("added", "removed", "changed")):
                self.rebuild(state)

        layer = state.clicks_layer
        layer.events.data.connect(on_change)
        layer.events.features.connect(on_change)
        self._handlers[id(layer)] = on_change

    def detach(self, state: ImageState) -> None:
        handler = self._handlers.pop(id(state.clicks_layer), None)
        if handler is not None:
            state.clicks_layer.events.data.disconnect(handler)
            state.clicks_layer.events.features.disconnect(handler)

    def clicks_by_slice(self, state: ImageState) -> dict[SliceKey, list[Click]]:
        layer = state.clicks_layer
        by_slice: dict[SliceKey, list[Click]] = {}
        if len(layer.data) == 0:
            return by_slice
        positive = (
            layer.features["positive"].to_numpy(dtype=bool)
            if "positive" in layer.features
            else np.ones(len(layer.data), dtype=bool)
        )
        for coords, is_positive in zip(np.asarray(layer.data), positive):
            key, row, col = split_grid_point(state.geometry, coords)
            by_slice.setdefault(key, []).append(Click(row, col, bool(is_positive)))
        return by_slice

    def rebuild(self, state: ImageState) -> None:
        if self._muted:
            return
        by_slice = self.clicks_by_slice(state)
        outside = 0
        for key in list(by_slice):
            inside = [c for c in by_slice[key] if state.geometry.contains(key, c.row, c.col)]
            outside += len(by_slice[key]) - len(inside)
            by_slice[key] = inside
        if outside:
            self.on_status(f"FCFI: {outside} click(s) outside the image are ignored")
        for key in set(by_slice) | set(state.objects.slices):
            clicks = tuple(by_slice.get(key, ()))
            obj = state.objects.get(key)
            if clicks != obj.clicks:
                self.on_clicks_changed(state, key, clicks, not self._internal)

    def append(self, state: ImageState, key: SliceKey, click: Click, by_user: bool = True) -> None:
        layer = state.clicks_layer
        defaults = layer.feature_defaults
        previous = bool(defaults["positive"].iloc[0]) if "positive" in defaults else True
        # Changing the defaults is an evented update: only done for the (rarer) sign that differs.
        if previous != click.positive:
            layer.feature_defaults = {"positive": bool(click.positive)}
        self._internal = not by_user
        point = np.array([[*key, click.row, click.col]], dtype=float)
        try:
            # Main-thread time per click (benchmarks/napari_e2e.py): not ``layer.add``, which also
            # selects the new point (current size/border width, highlight, two more refreshes), and one
            # "added" data event instead of the setter's "changing" + "changed" pair: every data event
            # makes the viewer recompute its dims from all layers, the largest cost of a click.
            data = np.concatenate([np.asarray(layer.data, dtype=float).reshape(-1, point.shape[1]), point])
            with layer.events.data.blocker():
                layer.data = data
            layer.events.data(
                value=layer.data, action="added", data_indices=(len(data) - 1,), vertex_indices=((),)
            )
        finally:
            self._internal = False
            if previous != click.positive:
                layer.feature_defaults = {"positive": previous}

    def show_clicks(self, state: ImageState, key: SliceKey, clicks: Iterable[Click]) -> None:
        """Make slice ``key``'s points ``clicks`` without telling the owner: undo or redo restored the
        objects, which hold these clicks already (no prediction of the steps between)."""
        self._muted = True
        try:
            self.remove(state, key)
            for click in clicks:
                self.append(state, key, click, by_user=False)
        finally:
            self._muted = False

    def remove(self, state: ImageState, key: SliceKey, last_only: bool = False) -> None:
        """Remove the points of slice ``key`` (only its last one with ``last_only``)."""
        layer = state.clicks_layer
        if len(layer.data) == 0:
            return
        keys = [split_grid_point(state.geometry, coords)[0] for coords in np.asarray(layer.data)]
        indices = [i for i, k in enumerate(keys) if k == key]
        if last_only:
            indices = indices[-1:]
        if indices:
            self._internal = True
            try:
                layer.selected_data = set()
                layer.remove(indices)
            finally:
                self._internal = False
