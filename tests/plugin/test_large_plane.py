"""Planes too wide for one texture: multiscale labels and preview, driven with real Qt clicks and keys."""

from __future__ import annotations

import numpy as np
from plugin.test_widget import make_widget
from qtpy.QtCore import QEvent, Qt
from qtpy.QtGui import QKeyEvent
from qtpy.QtWidgets import QApplication

from helpers.qt_mouse import canvas_widget
from helpers.qt_mouse import click as qt_click
from napari_fcfi.plugin.commit_flow import recovery_offers, restore_offer
from napari_fcfi.plugin.journaling import recorder_of
from napari_fcfi.plugin.layers import image_data
from napari_fcfi.plugin.pyramid import LARGE_PLANE_SIDE, pyramid_levels, write_region


def press_space(viewer) -> None:
    canvas = canvas_widget(viewer)
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(canvas, QKeyEvent(kind, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " "))
    QApplication.processEvents()


def test_pyramid_levels_sample_and_follow_writes():
    base = np.zeros((40, 9000), np.uint32)
    levels = pyramid_levels(base)
    assert levels[0] is base and [lvl.shape for lvl in levels[1:4]] == [(20, 4500), (10, 2250), (5, 1125)]

    class Layer:  # what write_region needs of a napari layer
        data, refreshed = levels, 0

        def refresh(self):
            self.refreshed += 1

    layer = Layer()
    values = np.arange(1, 7 * 9 + 1, dtype=np.uint32).reshape(7, 9)
    write_region(layer, (), (slice(3, 10), slice(5, 14)), values)
    assert layer.refreshed == 1 and (base[3:10, 5:14] == values).all()
    for index, level in enumerate(levels):
        factor = 2**index
        np.testing.assert_array_equal(level, base[::factor, ::factor][: level.shape[0], : level.shape[1]])


def test_commits_on_a_plane_wider_than_a_texture(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    width = LARGE_PLANE_SIDE + 808
    viewer.add_image(np.zeros((60, width), np.float32), name="wide")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    assert controller.preview_layer.multiscale  # napari draws it tile by tile
    viewer.camera.center, viewer.camera.zoom = (30, 8500), 4.0
    QApplication.processEvents()
    qt_click(viewer, (30, 8500))
    preview = image_data(controller.preview_layer)
    assert preview[30, 8500] == 1 and preview.sum() > 20
    press_space(viewer)
    labels = controller.labels_layer
    assert labels is not None and labels.multiscale and "committed label 1" in widget.status.value
    data = image_data(labels)
    assert data.shape == (60, width) and data[30, 8500] == 1
    assert labels.data[1][15, 4250] == 1  # the coarser levels follow
    assert image_data(controller.preview_layer).sum() == 0  # the preview was cleared
    assert widget.label_id.value == 2
    qt_click(viewer, (30, 8540))
    press_space(viewer)
    assert data[30, 8540] == 2 and widget.label_id.value == 3
    # edit label 1 (Shift+click on it), one negative click, commit: only label 1 changes
    qt_click(viewer, (30, 8500), modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert "editing label 1" in widget.status.value
    qt_click(viewer, (30, 8495), button=Qt.MouseButton.RightButton)
    press_space(viewer)
    assert data[30, 8495] == 0 and data[30, 8540] == 2 and (data == 1).any()
    np.testing.assert_array_equal(labels.data[1], data[::2, ::2])
    log = controller.click_log
    assert [r.label_id for r in log.records] == [1, 2, 1]
    # Every commit is journaled (a multiscale layer emits no paint event: the committer records its writes),
    # so a crash loses nothing: the journal restores the labels bit for bit.
    restored, scan = recorder_of(labels).journal.restore()
    assert scan.damaged == 0 and [c.kind for c in scan.changes].count("commit") == 3
    np.testing.assert_array_equal(restored, data)
    # After a crash (here: the layer is removed, its journal stays) the restore is multiscale again.
    viewer.layers.remove(labels)
    offers = recovery_offers(controller)
    assert len(offers) == 1
    again = restore_offer(controller, offers[0])
    assert again is not None and again.multiscale
    np.testing.assert_array_equal(image_data(again), restored)
    np.testing.assert_array_equal(again.data[1], restored[::2, ::2])
    # File > Save Selected Layers with the FCFI writer saves level 0, the full-resolution labels
    import tifffile

    written = labels.save(str(tmp_path / "wide_labels.fcfi"), plugin="napari-fcfi")
    np.testing.assert_array_equal(tifffile.imread(written[0]), data)
