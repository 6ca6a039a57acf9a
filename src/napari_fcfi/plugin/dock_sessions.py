"""The objects in progress outlive a closed dock: the dock opened next in the same napari session takes
them up (propagated and filled slices exist nowhere else). They travel in the clicks layer's metadata
(:func:`~.layers.keep_session`, :func:`~.layers.take_session`)."""

from __future__ import annotations

from typing import Any

from . import layers as helpers
from .host import AnnotationHost
from .image_state import ImageState


def leave_for_next_dock(controller: AnnotationHost, state: ImageState) -> None:
    """Closing the dock: remove the image's helper layers when nothing is left in them, else leave its
    objects in progress with its clicks layer."""
    in_progress = any(obj.has_object for obj in state.objects.slices.values())
    if len(state.clicks_layer.data) == 0 and not in_progress:
        helpers.remove_layers(controller.viewer, state.clicks_layer, state.preview_layer)
        return
    helpers.clear_preview(state.preview_layer, state.geometry.plane_shape)
    if not in_progress:
        return
    for key, obj in state.objects.slices.items():
        if obj.clicks and controller.predictor.pending(state.image_id, key):
            # Its prediction for the latest clicks never comes: the next dock predicts again (and
            # commits then, when a commit was waiting for it).
            obj.mask = obj.mask_box = obj.probability = None
    helpers.keep_session(state.clicks_layer, state.geometry, state.session)


def take_up(controller: AnnotationHost, state: ImageState, kept: Any) -> None:
    """A new dock's image state takes up the ``kept`` session (from :func:`~.layers.take_session`):
    slices whose prediction was on its way when the dock closed are predicted again."""
    state.session = kept
    for obj in list(state.objects.slices.values()):
        if obj.clicks and obj.mask is None:
            controller.request_prediction(state, obj)
