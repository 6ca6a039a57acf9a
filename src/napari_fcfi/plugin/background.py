"""Background work of the plugin's long actions (propagation, fill between, segment all, model
adaptation): one pattern.

``work`` is a generator function run in a napari worker thread; every item it yields reaches
``on_item`` on the GUI thread, then ``on_done`` (or ``on_error``). Cancelling is the caller's: its
generator checks a flag between items. Without ``threaded`` (tests and scripts without an event
loop) the same calls happen here, in order. A long call that reports progress through a callback
instead of yielding (model adaptation) becomes such a generator with :func:`callback_steps`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from napari.qt.threading import create_worker


class BackgroundRun:
    """One long action in the background: the caller's cancel flag and the napari worker."""

    def __init__(self) -> None:
        self.cancelled = False
        self.detached = False  # its widgets are gone: results still on their way are dropped
        self.worker: Any = None  # None when it ran without a thread

    def cancel(self) -> None:
        self.cancelled = True

    def detach(self) -> None:
        """Cancel and drop every result, progress and end still queued (the dock or viewer closed)."""
        self.cancelled = self.detached = True


class _Failure:
    """An error of ``work``, carried to the GUI thread as an item: superqt's generator worker drops a
    ``RuntimeError`` (torch's out-of-memory, for one) without emitting ``errored`` or ``finished``."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def run_generator(
    work: Callable[[], Iterator[Any]],
    on_item: Callable[[Any], None],
    on_done: Callable[..., None],
    on_error: Callable[[Exception], None],
    threaded: bool = True,
    run: BackgroundRun | None = None,
) -> Any:
    """Start ``work``; returns the napari worker (None when it ran here). Exactly one of ``on_done``
    and ``on_error`` ends it (no item after an error); none of the three is called once ``run`` is
    detached."""
    failed = False

    def guarded() -> Iterator[Any]:  # a generator function: napari makes it a generator worker
        try:
            yield from work()
        except Exception as error:  # noqa: BLE001 - shown to the user by on_error
            yield _Failure(error)

    def detached() -> bool:
        return run is not None and run.detached

    def deliver(item: Any) -> None:
        nonlocal failed
        if failed or detached():
            return
        if isinstance(item, _Failure):
            failed = True
            on_error(item.error)
        else:
            on_item(item)

    def finish(*_: Any) -> None:
        if not failed and not detached():
            on_done()

    if not threaded:
        for item in guarded():
            deliver(item)
        finish()
        return None
    worker = create_worker(guarded)
    worker.yielded.connect(deliver)
    worker.finished.connect(finish)
    worker.errored.connect(lambda error: deliver(_Failure(error)))
    worker.start()
    return worker


#: ``report(fraction, message)``; its result tells the call whether to stop (True: cancel).
Report = Callable[[float, str], bool]


def callback_steps(
    call: Callable[[Report], Any], should_stop: Callable[[], bool] = lambda: False
) -> Iterator[tuple[str, Any, Any]]:
    """``call(report)`` as a generator: yields ``("progress", fraction, message)`` for each report as it
    comes, then ``("result", value, None)``; an error of ``call`` is raised here. ``report`` returns
    ``should_stop()``, so a call that polls its progress callback for cancelling stops on the caller's flag.

    The call runs in a thread of its own while this generator waits for its reports (a callback cannot
    yield from inside the call).
    """
    reports: queue.SimpleQueue[tuple[float, str] | None] = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def report(fraction: float, message: str) -> bool:
        reports.put((float(fraction), str(message)))
        return bool(should_stop())

    def run() -> None:
        try:
            outcome["value"] = call(report)
        except BaseException as error:  # noqa: BLE001 - raised again in the generator
            outcome["error"] = error
        finally:
            reports.put(None)

    thread = threading.Thread(target=run, name="fcfi-callback-work", daemon=True)
    thread.start()
    while (item := reports.get()) is not None:
        yield ("progress", *item)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield ("result", outcome["value"], None)
