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

from qtpy.QtCore import QObject, Signal


@dataclass
class JobResult:
    """Outcome of one job: ``value`` on success, ``error`` when the job raised."""

    slot: Hashable
    generation: int
    value: Any = None
    error: BaseException | None = None


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

    def shutdown(self) -> None:
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

    @property
    def busy(self) -> bool:
        with self._condition:
            return self._running or bool(self._pending)

    def submit(self, slot: Hashable, generation: int, job: Callable[[], Any]) -> None:
        with self._condition:
            self._pending.pop(slot, None)
            self._pending[slot] = (generation, job)
            self._condition.notify()

    def shutdown(self) -> None:
        """Stop after the running job; waiting jobs are dropped."""
        with self._condition:
            self._stopped = True
            self._pending.clear()
            self._condition.notify()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopped:
                    self._condition.wait()
                if self._stopped:
                    return
                slot, (generation, job) = self._pending.popitem(last=False)
                self._running = True
            self._relay.busy.emit(True)
            try:
                result = JobResult(slot, generation, value=job())
            except Exception as error:  # noqa: BLE001 - delivered to the main thread and shown
                result = JobResult(slot, generation, error=error)
            with self._condition:
                self._running = False
                idle = not self._pending
            self._relay.result.emit(result)
            if idle:
                self._relay.busy.emit(False)

    def _deliver(self, result: JobResult) -> None:
        self.on_result(result)

    def _deliver_busy(self, busy: bool) -> None:
        self.on_busy(busy)
