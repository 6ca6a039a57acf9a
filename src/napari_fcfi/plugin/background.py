"""Background work of the plugin's long actions (propagation, fill between, segment all): one pattern.

``work`` is a generator function run in a napari worker thread; every item it yields reaches
``on_item`` on the GUI thread, then ``on_done`` (or ``on_error``). Cancelling is the caller's: its
generator checks a flag between items. Without ``threaded`` (tests and scripts without an event
loop) the same calls happen here, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from napari.qt.threading import create_worker


def run_generator(
    work: Callable[[], Iterator[Any]],
    on_item: Callable[[Any], None],
    on_done: Callable[..., None],
    on_error: Callable[[Exception], None],
    threaded: bool = True,
) -> Any:
    """Start ``work``; returns the napari worker (None when it ran here)."""
    if not threaded:
        try:
            for item in work():
                on_item(item)
        except Exception as error:  # noqa: BLE001 - shown to the user
            on_error(error)
            return None
        on_done()
        return None
    worker = create_worker(work)
    worker.yielded.connect(on_item)
    worker.finished.connect(on_done)
    worker.errored.connect(on_error)
    worker.start()
    return worker
