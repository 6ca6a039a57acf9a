"""Helpers for driving the plugin in tests: a controller with the disk stand-in, scripted mouse events."""

from __future__ import annotations

import pytest

from helpers.standins import DiskSegmenter
from helpers.widgets import stand_in_model_cache
from napari_fcfi.plugin.controller import SegmentationController
from napari_fcfi.plugin.worker import ImmediateRunner


def make_controller(viewer, image_layer, runner=None, factory=DiskSegmenter, **kwargs):
    cache = stand_in_model_cache()
    controller = SegmentationController(
        viewer, cache, segmenter_factory=factory, runner=runner or ImmediateRunner(), **kwargs
    )
    controller.set_image_layer(image_layer)
    return controller


class FakeMouseEvent:
    """Minimal napari mouse event: what the drag callback reads."""

    def __init__(self, position, button=1, modifiers=()):
        self.type = "mouse_press"
        self.position = tuple(position)
        self.button = button
        self.modifiers = tuple(modifiers)


def click(controller, layer, world_position, button=1, modifiers=(), drag_to=None):
    """Drive the registered mouse callback like napari does: press, (moves), release."""
    event = FakeMouseEvent(world_position, button, modifiers)
    callbacks = [cb for cb in layer.mouse_drag_callbacks if cb == controller.mouse_callback]
    assert callbacks, "controller callback not registered on the layer"
    generator = callbacks[0](layer, event)
    if generator is None:
        return
    try:
        next(generator)
    except StopIteration:
        return  # the callback declined the press (e.g. the layer is not in pan/zoom mode)
    if drag_to is not None:
        event.type, event.position = "mouse_move", tuple(drag_to)
        next(generator)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(generator)
