"""Real Qt mouse events on napari's canvas, as a user's mouse makes them (press, moves, release).

Tests only: reaching the canvas widget needs napari's private ``window._qt_viewer``; the plugin itself
never touches it.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication


def canvas_widget(viewer: Any) -> Any:
    return viewer.window._qt_viewer.canvas.native


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def world_to_canvas(viewer: Any, world_yx: tuple[float, float]) -> QPointF:
    """Canvas (logical pixel) position of a world (y, x) point in the 2D view."""
    camera = camera_of(viewer)
    widget = canvas_widget(viewer)
    center_y, center_x = camera.center[-2:]
    zoom = camera.zoom
    x = (world_yx[1] - center_x) * zoom + widget.width() / 2
    y = (world_yx[0] - center_y) * zoom + widget.height() / 2
    return QPointF(x, y)


def _send(widget: Any, kind: Any, point: QPointF, button: Any, buttons: Any, modifiers: Any) -> None:
    global_point = QPointF(widget.mapToGlobal(QPoint(int(point.x()), int(point.y()))))
    event = QMouseEvent(kind, point, global_point, button, buttons, modifiers)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def press_drag_release(
    viewer: Any,
    start_yx: tuple[float, float],
    end_yx: tuple[float, float] | None = None,
    *,
    button: Any = Qt.MouseButton.LeftButton,
    modifiers: Any = Qt.KeyboardModifier.NoModifier,
    steps: int = 6,
    screen_offset: tuple[float, float] | None = None,
) -> None:
    """Press at a world point, move (to ``end_yx`` or by ``screen_offset`` canvas pixels), release."""
    widget = canvas_widget(viewer)
    start = world_to_canvas(viewer, start_yx)
    if screen_offset is not None:
        end = QPointF(start.x() + screen_offset[1], start.y() + screen_offset[0])
    elif end_yx is not None:
        end = world_to_canvas(viewer, end_yx)
    else:
        end = start
    _send(widget, QEvent.Type.MouseButtonPress, start, button, button, modifiers)
    if end != start:
        for i in range(1, steps + 1):
            t = i / steps
            point = QPointF(start.x() + t * (end.x() - start.x()), start.y() + t * (end.y() - start.y()))
            _send(widget, QEvent.Type.MouseMove, point, Qt.MouseButton.NoButton, button, modifiers)
    _send(widget, QEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton, modifiers)


def click(viewer: Any, world_yx: tuple[float, float], **kwargs: Any) -> None:
    press_drag_release(viewer, world_yx, None, **kwargs)
