"""The dock's life in napari's window: menus that fit the dock, keys for the canvas, detaching when it closes."""

from __future__ import annotations

from typing import Any


def compact_menus(root: Any) -> None:
    """Menus as wide as the dock allows, not as their longest entry (a long image or labels name would
    push the buttons out of the 460-px dock); the entry shown is clipped, the list shows it whole."""
    from qtpy.QtWidgets import QComboBox

    for menu in root.findChildren(QComboBox):
        menu.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        menu.setMinimumContentsLength(12)


def keep_keys_for_the_canvas(root: Any) -> None:
    """Buttons, check boxes, menus and the form take the keyboard from Tab only, not from a mouse click.

    Qt gives a clicked button the focus, and Space then presses it again: after a click on Undo,
    Space (meant: Commit) undid once more; after Propagate, whose button is disabled while it runs,
    focus moved on to Cancel and Space stopped the run. The canvas keeps the keyboard instead.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QAbstractButton, QComboBox, QScrollArea

    # the form's scroll area too: a click in the dock gave it the focus, and it swallowed the arrow keys
    for kind in (QAbstractButton, QComboBox, QScrollArea):
        for child in root.findChildren(kind):
            child.setFocusPolicy(Qt.FocusPolicy.TabFocus)


def watch_closing(widget: Any) -> None:
    """Detach the controller when the dock is closed.

    magicgui has no signal for this: napari's dock close button unparents the widget (and deletes
    the dock), so a Qt event filter watching for the parent change (or a close) is used.
    """
    from qtpy.QtCore import QEvent, QObject

    class _CloseWatcher(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Close or (
                event.type() == QEvent.Type.ParentChange and obj.parent() is None and widget._was_docked
            ):
                widget.close_controller()
            elif event.type() == QEvent.Type.ParentChange and obj.parent() is not None:
                widget._was_docked = True
            return False

    widget._was_docked = widget.native.parent() is not None
    widget._close_watcher = _CloseWatcher(widget.native)
    widget.native.installEventFilter(widget._close_watcher)
    # Closing napari deletes the dock without a close or parent event: results still on their way
    # must then find a closed controller, not deleted Qt widgets.
    # The controller is captured, not the widget: at garbage collection the widget's attributes may be gone.
    controller = widget.controller
    widget.native.destroyed.connect(lambda *_: controller.close())
