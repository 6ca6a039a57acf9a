"""Editing a label already in the labels layer: it becomes the object in progress of its slice (clicks
refine it, the commit replaces it; :meth:`~napari_fcfi.annotation.session.AnnotationSession.edit_label`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_fcfi.annotation.geometry import split_grid_point, world_to_grid

from . import layers as helpers
from .host import AnnotationHost
from .stack_runs import busy_message
from .undoing import show_restored


def select_label(controller: AnnotationHost, label_id: int) -> bool:
    """Edit label ``label_id`` of the slice on screen; False (the status says why) when it cannot."""
    state, key = controller.state, controller.current_key()
    if state is None or key is None or state.labels_layer is None:
        controller.show_status("FCFI: no labels layer to edit")
        return False
    data = helpers.image_data(state.labels_layer)
    plane = np.asarray(data[key] if key else data)
    mask = plane == int(label_id)
    if label_id <= 0 or not mask.any():
        controller.show_status(f"FCFI: label {label_id} is not on this slice")
        return False
    here = state.objects.get(key, create=False)
    busy = busy_message(state.session.running, state.image_id, None if here is None else here.group, "edit")
    if busy is not None:
        controller.show_status(busy)
        return False
    show_restored(controller, state, state.session.edit_label(key, mask, label_id))
    controller.show_status(f"FCFI: editing label {label_id}; click to refine, commit replaces it")
    return True


def select_label_at(controller: AnnotationHost, world_position: Any) -> bool:
    """Edit the label under ``world_position`` (Shift+click)."""
    state = controller.state
    if state is None or state.labels_layer is None:
        controller.show_status("FCFI: no labels layer to edit")
        return False
    key, row, col = split_grid_point(state.geometry, world_to_grid(state.geometry, world_position))
    if not state.geometry.contains(key, row, col):
        return False
    data = helpers.image_data(state.labels_layer)
    plane = data[key] if key else data
    return select_label(controller, int(np.asarray(plane[row : row + 1, col : col + 1])[0, 0]))
