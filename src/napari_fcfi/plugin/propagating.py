"""Propagate: carry the object on screen through the stack in a background thread.

The object on the slice on screen (its latest mask) is carried up, down or both ways along a stack
axis by :func:`napari_fcfi.annotation.propagation.propagate_slices`, in a napari worker thread
(``napari.qt.threading``: results and progress arrive on the GUI thread). Each propagated slice
becomes that slice's object in progress and shows in the preview when it is on screen; the user can
correct any slice with clicks (starting from the propagated mask) and propagate again from there.
Cancel (or Esc) stops after the current slice and keeps what was done; Undo takes the whole
propagation back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_fcfi.annotation.propagation import propagate_slices, propagation_order
from napari_fcfi.annotation.replay import stack_key
from napari_fcfi.annotation.geometry import read_plane

from . import layers as helpers


class PropagationRun:
    """One running propagation: progress callbacks, cancel, and the worker thread."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.cancelled = False
        self.worker: Any = None
        self.on_progress: Callable[[int, int], None] = lambda done, total: None
        self.on_finished: Callable[[int], None] = lambda done: None

    def cancel(self) -> None:
        self.cancelled = True


def start_propagation(controller: Any, direction: str = "both", max_slices: int | None = None,
                      axis: int | None = None, threaded: bool = True) -> PropagationRun | None:
    """Propagate the object on screen; returns the run (None, with a status message, when it cannot)."""
    state, obj = controller.state, controller.current_object()
    if state is None or obj is None:
        return None
    geometry = state.geometry
    if not geometry.slice_shape:
        controller._status("FCFI: propagation needs a stack (a 3D or 4D image)")
        return None
    axis = len(geometry.slice_shape) - 1 if axis is None else int(axis)
    if not 0 <= axis < len(geometry.slice_shape):
        controller._status(f"FCFI: the image has no stack axis {axis}")
        return None
    if obj.clicks and controller.predictor.pending(state.image_id, obj.key):
        controller._status("FCFI: wait for the prediction on this slice, then propagate")
        return None
    if obj.mask is None or not obj.mask.any():
        controller._status("FCFI: annotate the object on this slice first (its mask is empty)")
        return None
    if getattr(controller, "propagation", None) is not None:
        controller._status("FCFI: a propagation is already running")
        return None
    order = propagation_order(obj.key[axis], geometry.slice_shape[axis], direction, max_slices)
    start_key, start_mask = obj.key, np.array(obj.mask)
    undo = state.objects.begin_propagation(start_key, axis, direction, max_slices, controller.settings.threshold)
    _drop_points(controller, state, undo.replaced)
    state.actions.append(("propagation", start_key))
    run = PropagationRun(sum(len(o) for o in order))
    controller.propagation = run
    settings = controller.settings
    factory, cache = controller.predictor.factory, controller.model_cache
    image = helpers.image_data(state.layer)

    def work():
        if settings.cpu_threads and settings.device.startswith("cpu"):
            import torch

            torch.set_num_threads(settings.cpu_threads)
        segmenter = factory(cache.get(settings.model_source, settings.device))
        segmenter.threshold = settings.threshold
        read = lambda index: read_plane(image, geometry, stack_key(start_key, axis, index))  # noqa: E731
        for index, mask in propagate_slices(segmenter, read, start_mask, order, channel_axis=geometry.slice_channel_axis(),
                                            channel=state.channel, should_stop=lambda: run.cancelled,
                                            start_image=read_plane(image, geometry, start_key)):
            yield stack_key(start_key, axis, index), mask

    def on_slice(item: tuple[Any, np.ndarray]) -> None:
        key, mask = item
        if state.image_id not in controller.images:
            return
        replaced = state.objects.slices.get(key)
        state.objects.add_propagated(undo, key, mask)  # first, so removing its points leaves it intact
        if replaced is not None and replaced.clicks and replaced.group != undo.group:
            _drop_points(controller, state, {key: replaced})
        run.done += 1
        run.on_progress(run.done, run.total)
        if state is controller.state and key == controller.current_key():
            controller._update_preview()
        controller.on_change("object")

    def on_done(*_: Any) -> None:
        controller.propagation = None
        stopped = " (cancelled)" if run.cancelled else ""
        controller._status(f"FCFI: propagated to {run.done} slice(s){stopped}; Ctrl+Z takes it back")
        run.on_finished(run.done)
        controller.on_change()

    def on_error(error: Exception) -> None:
        controller.propagation = None
        controller._status(f"FCFI: propagation failed: {error}")
        run.on_finished(run.done)

    if not threaded:  # tests and scripts without an event loop
        try:
            for item in work():
                on_slice(item)
        except Exception as error:  # noqa: BLE001 - shown to the user
            on_error(error)
            return run
        on_done()
        return run
    from napari.qt.threading import create_worker

    worker = create_worker(work)
    worker.yielded.connect(on_slice)
    worker.finished.connect(on_done)
    worker.errored.connect(on_error)
    run.worker = worker
    worker.start()
    return run


def undo_propagation(controller: Any, state: Any, start_key: Any) -> None:
    """Take back the last propagation of the object on ``start_key`` in one step."""
    run = getattr(controller, "propagation", None)
    if run is not None:
        run.cancel()
    group = state.objects.slices[start_key].group if start_key in state.objects.slices else None
    undo = state.objects.groups[group].undo[-1] if group is not None and state.objects.groups[group].undo else None
    if undo is None or not state.objects.undo_propagation(start_key):
        controller._status("FCFI: nothing to undo")
        return
    for key, previous in undo.replaced.items():
        if previous is not None and previous.clicks:
            for click in previous.clicks:  # clicks of slices the propagation had replaced come back
                controller.points.append(state, key, click, by_user=False)
    controller._refresh_view()
    controller._status("FCFI: propagation undone")
    controller.on_change()


def _drop_points(controller: Any, state: Any, replaced: dict[Any, Any]) -> None:
    for key, previous in replaced.items():
        if previous is not None and previous.clicks:
            controller.points.remove(state, key)
            controller.predictor.cancel(state.image_id, key)
