"""Catch modal dialogs (napari's "Choose reader", error boxes) that a GUI action opens.

A modal dialog runs its own event loop, so a test that calls napari's GUI open path would hang on it
or, worse, pass with the dialog answered by nobody. A timer watches ``QApplication.activeModalWidget()``
while the block runs, records each dialog it sees and closes it; the test then fails listing them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_modal_dialogs(interval_ms: int = 20) -> Iterator[list[str]]:
    """Run the block; fail if any modal dialog appeared in it (it is closed so the block goes on)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    seen: list[str] = []

    def close_modal() -> None:
        dialog = QApplication.activeModalWidget()
        if dialog is not None:
            seen.append(f"{type(dialog).__name__} {dialog.windowTitle()!r}")
            reject = getattr(dialog, "reject", None)
            reject() if reject is not None else dialog.close()

    timer = QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(close_modal)
    timer.start()
    try:
        yield seen
        QApplication.processEvents()
        close_modal()
    finally:
        timer.stop()
    assert not seen, f"modal dialog(s) opened: {seen}"
