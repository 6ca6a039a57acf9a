"""The one background-work pattern: a callback-reporting call as a generator (``callback_steps``) run
by ``run_generator`` (here without a thread; the widgets' tests run it in napari workers)."""

from __future__ import annotations

import pytest

from napari_fcfi.plugin.background import BackgroundRun, callback_steps, run_generator


def test_reports_arrive_in_order_then_the_result():
    def call(report):
        for i in range(3):
            report(i / 3, f"step {i}")
        return "done"

    items = list(callback_steps(call))
    assert items == [
        ("progress", 0.0, "step 0"),
        ("progress", 1 / 3, "step 1"),
        ("progress", 2 / 3, "step 2"),
        ("result", "done", None),
    ]


def test_the_callers_flag_cancels_a_call_that_polls_its_callback():
    run = BackgroundRun()

    def call(report):
        for i in range(100):
            if i == 5:
                run.cancel()  # as the Cancel button does, from another thread
            if report(i / 100, "training"):
                return f"stopped at {i}"
        return "ran to the end"

    results = [item[1] for item in callback_steps(call, lambda: run.cancelled) if item[0] == "result"]
    assert results == ["stopped at 5"]


def test_an_error_of_the_call_reaches_run_generators_error_handler():
    def call(report):
        report(0.5, "half")
        raise RuntimeError("out of memory")

    items, errors, done = [], [], []
    run_generator(lambda: callback_steps(call), items.append, lambda: done.append(1), errors.append, False)
    assert items == [("progress", 0.5, "half")]
    assert [str(e) for e in errors] == ["out of memory"] and not done


def test_an_error_is_raised_by_the_generator():
    def call(report):
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        list(callback_steps(call))


@pytest.mark.parametrize("error", [RuntimeError("out of memory"), ValueError("bad data")])
def test_a_threaded_error_ends_the_run_once_with_on_error(qtbot, error):
    """superqt's generator worker drops a RuntimeError silently (no errored, no finished): the run
    would never end. run_generator carries it to on_error; on_done is not called after it."""

    def work():
        yield 1
        raise error

    items, errors, done = [], [], []
    worker = run_generator(work, items.append, lambda *_: done.append(1), errors.append, True)
    qtbot.waitUntil(lambda: bool(errors) and not worker.is_running, timeout=10000)
    qtbot.wait(50)  # anything still queued for the GUI thread arrives
    assert items == [1] and errors == [error] and not done


def test_a_threaded_run_delivers_every_item_then_done(qtbot):
    def call(report):
        report(0.5, "half")
        return 7

    items, errors, done = [], [], []
    run_generator(lambda: callback_steps(call), items.append, lambda *_: done.append(1), errors.append, True)
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert items == [("progress", 0.5, "half"), ("result", 7, None)] and not errors and done == [1]


def test_the_inference_thread_ends_quietly_when_qt_deleted_its_relay(qtbot):
    """A script that ends without closing the viewer: Qt deletes the relay while a job still runs."""
    import threading
    import time

    from napari_fcfi.plugin.worker import ThreadedRunner

    runner = ThreadedRunner()
    errors = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        release = threading.Event()
        runner.submit("slot", 0, lambda: release.wait(10))
        qtbot.waitUntil(lambda: runner.busy, timeout=5000)
        relay = runner._relay
        destroyed = []
        relay.destroyed.connect(lambda *_: destroyed.append(True))
        relay.deleteLater()
        qtbot.waitUntil(lambda: bool(destroyed), timeout=5000)
        release.set()
        runner._thread.join(5)
        time.sleep(0.05)
    finally:
        threading.excepthook = previous_hook
    assert not runner._thread.is_alive()
    assert errors == [], errors
