"""Background inference: one worker thread, single flight, newest request wins.

The controller describes each prediction as a job (a callable run off the main thread) tagged
with a *slot* (one slice session) and the session's request *generation*. While a job runs, newer
requests for the same slot replace the waiting one, so a burst of clicks costs at most one extra
prediction, and the controller drops any result whose generation is no longer the newest.

Results are delivered on the Qt main thread through a queued signal, so callbacks may touch
napari layers. :class:`ImmediateRunner` runs jobs synchronously for headless unit tests.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import QCoreApplication, QObject, Signal


@dataclass
class JobResult:
    """Outcome of one job: ``value`` on success, ``error`` when the job raised."""

    slot: Hashable
    generation: int
    value: Any = None
    error: BaseException | None = None


SHUTDOWN_WAIT_S = 60.0  # a prediction on a very large image on a slow CPU still finishes within this

ResultCallback = Callable[[JobResult], None]
BusyCallback = Callable[[bool], None]


class ImmediateRunner:
    """Runs each job at once on the calling thread (tests, scripts without an event loop)."""

    def __init__(self) -> None:
        self.on_result: ResultCallback = lambda result: None
        self.on_busy: BusyCallback = lambda busy: None

    @property
    def busy(self) -> bool:
        return False

    def submit(self, slot: Hashable, generation: int, job: Callable[[], Any]) -> None:
        self.on_busy(True)
        try:
            result = JobResult(slot, generation, value=job())
        except Exception as error:  # noqa: BLE001 - reported to the user, never swallowed
            result = JobResult(slot, generation, error=error)
        self.on_busy(False)
        self.on_result(result)

    def shutdown(self, wait_s: float = 0.0) -> None:
        pass


class _Relay(QObject):
    """Carries results from the worker thread to the main thread (queued connection)."""

    result = Signal(object)
    busy = Signal(bool)


class ThreadedRunner:
    """A single daemon thread that runs jobs one at a time; waiting jobs are kept per slot.

    Jobs for different slots run in submission order; a newer job for a slot that is still waiting
    replaces the older one (the older one never runs).
    """

    def __init__(self) -> None:
        self.on_result: ResultCallback = lambda result: None
        self.on_busy: BusyCallback = lambda busy: None
        self._relay = _Relay()
        self._relay.result.connect(self._deliver)
        self._relay.busy.connect(self._deliver_busy)
        self._pending: OrderedDict[Hashable, tuple[int, Callable[[], Any]]] = OrderedDict()
        self._condition = threading.Condition()
        self._running = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="fcfi-inference", daemon=True)
        self._thread.start()
        # Quitting the app with a job inside torch would let the interpreter finalise under a running
        # native thread (std::terminate, exit 134): stop and wait for it first.
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    @property
    def busy(self) -> bool:
        with self._condition:
            return self._running or bool(self._pending)

    def submit(self, slot: Hashable, generation: int, job: Callable[[], Any]) -> None:
        with self._condition:
            self._pending.pop(slot, None)
            self._pending[slot] = (generation, job)
            self._condition.notify()

    def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Stop after the running job (waiting up to ``wait_s`` for it); waiting jobs are dropped and no
        result is delivered any more."""
        with self._condition:
            self._stopped = True
            self._pending.clear()
            self._condition.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopped:
                    self._condition.wait()
                if self._stopped:
                    return
                slot, (generation, job) = self._pending.popitem(last=False)
                self._running = True
            if not self._emit("busy", True):
                return
            try:
                result = JobResult(slot, generation, value=job())
            except Exception as error:  # noqa: BLE001 - delivered to the main thread and shown
                result = JobResult(slot, generation, error=error)
            with self._condition:
                self._running = False
                idle = not self._pending
            if not self._emit("result", result) or (idle and not self._emit("busy", False)):
                return

    def _emit(self, signal: str, value: Any) -> bool:
        """Send to the GUI thread; False when the Qt side is gone (a script ended without closing the
        viewer: Qt deletes the relay at exit while a job still ran), and the thread then ends quietly."""
        try:
            getattr(self._relay, signal).emit(value)
        except RuntimeError:
            with self._condition:
                self._stopped = True
            return False
        return True

    def _deliver(self, result: JobResult) -> None:
        if not self._stopped:  # after shutdown the receivers (widget, viewer) may be gone
            self.on_result(result)

    def _deliver_busy(self, busy: bool) -> None:
        if not self._stopped:
            self.on_busy(busy)
