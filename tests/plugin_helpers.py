"""Helpers shared by the plugin tests: an engine stand-in with exact, predictable output and a
driver for the controller's mouse callback."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from napari_fcfi.plugin.controller import SegmentationController
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.worker import ImmediateRunner

RADIUS = 5


class DiskSegmenter:
    """Engine stand-in: object = union of disks at positive clicks minus disks at negative ones."""

    def __init__(self, model, delay: float = 0.0):
        self.model = model
        self.delay = delay
        self.threshold = 0.49
        self._history: list[list[tuple[int, int, bool]]] = [[]]
        self._future: list[list[tuple[int, int, bool]]] = []
        self.image = None
        self.initial = None
        self.channel = None

    def set_image(self, image, channel_axis=None, channel=None, initial_mask=None):
        self.image = np.asarray(image)
        self.channel_axis, self.channel = channel_axis, channel
        shape = (
            self.image.shape
            if channel_axis is None
            else tuple(n for ax, n in enumerate(self.image.shape) if ax != channel_axis)
        )
        if len(shape) != 2:
            raise ValueError(f"not a 2D slice: {self.image.shape}")
        self.shape = shape
        self.initial = None if initial_mask is None else np.asarray(initial_mask, bool)
        self._history, self._future = [[]], []

    @property
    def clicks(self):
        return list(self._history[-1])

    def _prob(self, clicks):
        rows, cols = np.ogrid[: self.shape[0], : self.shape[1]]
        mask = np.zeros(self.shape, bool) if self.initial is None else self.initial.copy()
        for row, col, positive in clicks:
            disk = (rows - row) ** 2 + (cols - col) ** 2 <= RADIUS**2
            mask = mask | disk if positive else mask & ~disk
        return mask.astype(np.float32)

    def add_click(self, row, col, positive):
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]):
            raise ValueError(f"click ({row}, {col}) outside image {self.shape}")
        if self.delay:
            time.sleep(self.delay)
        self._history.append(self.clicks + [(int(row), int(col), bool(positive))])
        self._future = []
        return self._prob(self._history[-1])

    def undo(self):
        if len(self._history) > 1:
            self._future.append(self._history.pop())

    def redo(self):
        if self._future:
            self._history.append(self._future.pop())

    @property
    def probability(self):
        return self._prob(self._history[-1])

    @property
    def mask(self):
        return self.probability > self.threshold


def disk(shape, row, col, radius=RADIUS):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def make_controller(viewer, image_layer, runner=None, factory=DiskSegmenter, **kwargs):
    cache = ModelCache(loader=lambda source, device: SimpleNamespace(name=source))
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
