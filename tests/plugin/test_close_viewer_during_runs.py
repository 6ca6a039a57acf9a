"""Closing a viewer while Segment all or Adapt model runs, with the Qt application still alive (a
second viewer, Jupyter): the run is cancelled and nothing reaches the deleted widgets.

Found by a scripted user test: the panels' runs went on after the viewer closed and their results
reached a deleted progress bar ("QProgressBar has been deleted").
"""

from __future__ import annotations

import threading

import numpy as np

from helpers.standins import BlobNet, disk
from helpers.widgets import docked_widget
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.panels import MIN_OBJECTS_TO_ADAPT

SIZE = 96
CENTRES = [(r, c) for r in (16, 48, 80) for c in (16, 48, 80)]


def stack(depth: int) -> np.ndarray:
    image = np.full((depth, SIZE, SIZE), 200, np.uint16)
    for z in range(depth):
        for r, c in CENTRES:
            image[z][disk((SIZE, SIZE), r, c, 8)] = 3000
    return image


def finished(run) -> bool:
    return not run.worker.is_running


def test_closing_the_viewer_cancels_segment_all(make_napari_viewer, qtbot, tmp_path):
    release = threading.Event()

    def slow_load(source, device):  # the run is held until the viewer is closed
        release.wait(60)
        return BlobNet(radius=8, brightness_weight=12.0).eval()

    other = make_napari_viewer()  # keeps the Qt application alive, as Jupyter or a second window does
    viewer = make_napari_viewer(show=True)
    viewer.add_image(stack(12), name="nuclei")
    widget = docked_widget(viewer, tmp_path / "journal", model_cache=ModelCache(loader=slow_load))
    panel = widget.segment_all_panel
    panel.scope.value = "stack"
    run = panel.start()
    assert run is not None and panel.running

    viewer.close()
    release.set()
    qtbot.waitUntil(lambda: finished(run), timeout=60000)
    qtbot.wait(200)  # anything still queued for the GUI thread is delivered now
    assert run.cancelled and run.detached
    assert len(other.layers) == 0  # the other viewer is untouched


def test_closing_the_viewer_cancels_adaptation(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_fcfi.training import adaptation

    started, reports = threading.Event(), []

    def long_adaptation(model, images, labels, progress=None, **kwargs):
        started.set()
        for step in range(600):  # stops only when its progress report says so (the cancel flag)
            reports.append(step)
            if progress(step / 600, "adapting"):
                return model, None
            threading.Event().wait(0.05)
        raise AssertionError("the adaptation was not cancelled")

    monkeypatch.setattr(adaptation, "adapt_with_check", long_adaptation)
    other = make_napari_viewer()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(stack(1)[0], name="nuclei")
    cache = ModelCache(loader=lambda source, device: BlobNet(radius=8, brightness_weight=12.0).eval())
    widget = docked_widget(viewer, tmp_path / "journal", model_cache=cache)
    controller, panel = widget.controller, widget.adapt_panel
    for centre in CENTRES + [(30, 30)]:
        controller.add_click_world(centre, True)
        assert controller.commit()
    assert panel.training_data()[2] >= MIN_OBJECTS_TO_ADAPT
    run = panel.start()
    assert run is not None
    assert started.wait(30)
    qtbot.waitUntil(lambda: len(reports) > 3, timeout=30000)  # progress reached the panel

    viewer.close()
    qtbot.waitUntil(lambda: finished(run), timeout=60000)
    qtbot.wait(200)
    assert run.cancelled and run.detached
    assert len(reports) < 600
    assert len(other.layers) == 0
