"""The keyboard stays the canvas's after a dock button or menu is clicked: Space commits, it does not
press the button clicked last (Undo again, Next review, Cancel of a running propagation)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QAbstractButton, QApplication, QComboBox, QScrollArea

from helpers.qt_mouse import canvas_widget
from helpers.qt_mouse import click as qt_click
from helpers.widgets import docked_widget


def _process(seconds: float = 0.2) -> None:
    QTest.qWait(int(seconds * 1000))
    QApplication.processEvents()


def test_space_after_clicking_undo_in_the_dock_commits(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.random.default_rng(0).random((64, 64), np.float32), name="cells")
    widget = docked_widget(viewer, tmp_path / "journals", name="FCFI", area="right")
    window = viewer.window._qt_window
    window.activateWindow()
    window.raise_()
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    _process()
    qt_click(viewer, (32, 32))
    qt_click(viewer, (32, 40))
    assert len(widget.controller.current_object().clicks) == 2
    QTest.mouseClick(widget.buttons["undo"].native, Qt.MouseButton.LeftButton)  # the real button, by mouse
    _process()
    assert len(widget.controller.current_object().clicks) == 1
    focused = QApplication.focusWidget()
    assert not isinstance(focused, (QAbstractButton, QComboBox, QScrollArea)), focused
    # the keyboard goes on to napari (the arrow keys step through slices), Space commits
    QTest.keyClick(focused, Qt.Key.Key_Space)
    _process()
    assert widget.controller.labels_layer is not None and widget.controller.labels_layer.data.max() == 1
    # no dock button, menu or the form takes the keyboard from a mouse click; Tab still reaches them
    for kind in (QAbstractButton, QComboBox, QScrollArea):
        for child in widget.native.findChildren(kind):
            assert child.focusPolicy() == Qt.FocusPolicy.TabFocus, child
    widget.close_controller()
