"""Real Qt key presses on napari's canvas, as a user's keyboard makes them (press, release).

Tests only: reaching the canvas widget needs napari's private ``window._qt_viewer``.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, Qt
from qtpy.QtGui import QKeyEvent
from qtpy.QtWidgets import QApplication

from helpers.qt_mouse import canvas_widget


def press_key(viewer: Any, key: Any, modifiers: Any = Qt.KeyboardModifier.NoModifier, text: str = "") -> None:
    """Press and release ``key`` (a ``Qt.Key``) with ``modifiers`` on the canvas."""
    widget = canvas_widget(viewer)
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, key, modifiers, text))
        QApplication.processEvents()


def undo(viewer: Any) -> None:
    press_key(viewer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)


def redo(viewer: Any) -> None:
    press_key(viewer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
