"""Driving a propagation or fill synchronously in a real viewer, with a user acting while it runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_fcfi.annotation.replay import replay_click_log
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner

from .standins import UnsureCopier, disk
from .widgets import stand_in_model_cache

SIZE = 64


def drifting_cell(depth: int = 14) -> np.ndarray:
    """One bright cell drifting right, 1 px per slice, on slices 1..12."""
    stack = np.full((depth, SIZE, SIZE), 10, np.uint16)
    for z in range(1, 13):
        stack[z][disk((SIZE, SIZE), 24, 20 + z, 7)] = 200
    return stack


def stack_widget(viewer: Any, tmp_path: Any, runner: Any = None, segmenter: Any = UnsureCopier) -> FCFIWidget:
    """The dock widget on stand-ins (predictions at once unless ``runner`` says otherwise), docked."""
    widget = FCFIWidget(
        viewer,
        model_cache=stand_in_model_cache(),
        segmenter_factory=segmenter,
        runner=runner or ImmediateRunner(),
        journal_root=tmp_path / "j",
    )
    viewer.window.add_dock_widget(widget)
    return widget


def during(controller: Any, when: Any, act: Any) -> Any:
    """Run ``act(run)`` once, from the run's progress, when ``when(run)`` holds (a user acting mid-run);
    returns what restores the controller's change callback."""
    notify, done = controller.on_change, []

    def hook(what: str = "all") -> None:
        notify(what)
        run = controller.propagation
        if run is not None and not done and when(run):
            done.append(True)
            act(run)

    controller.on_change = hook
    return lambda: setattr(controller, "on_change", notify)


def replays_exactly(controller: Any, stack: np.ndarray) -> np.ndarray:
    """The labels layer, checked equal to what ``fcfi segment`` replays from the click log."""
    labels = np.array(controller.labels_layer.data)
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    return labels
