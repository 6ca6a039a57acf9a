"""Stack tools in a real viewer, by keys on the canvas: propagate through a stop (C), fill between two
annotated slices (F), jump to the review slices (N), undo, commit; labels checked slice by slice."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from helpers.qt_mouse import canvas_widget
from helpers.standins import UnsureCopier, disk
from helpers.widgets import docked_widget, stand_in_model_cache
from napari_fcfi.annotation import fading
from napari_fcfi.annotation.clicklog import FillStep, PropagateStep
from napari_fcfi.annotation.replay import replay_click_log
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner

SIZE = 64


def _widget(viewer, tmp_path):
    """The dock widget on stand-ins: a network that copies its feedback unsure, work run at once."""
    return FCFIWidget(
        viewer,
        model_cache=stand_in_model_cache(),
        segmenter_factory=UnsureCopier,
        runner=ImmediateRunner(),
        journal_root=tmp_path / "j",
    )


def two_cells(depth=14):
    """Cell A drifts right (1 px per slice) on slices 1..11; cell B sits still on every slice; slices 5 and
    6 have no contrast (the network copies its feedback there, unsure)."""
    stack = np.full((depth, SIZE, SIZE), 10, np.uint16)
    for z in range(1, 12):
        stack[z][disk((SIZE, SIZE), 20, 16 + z, 7)] = 200
    for z in range(depth):
        stack[z][disk((SIZE, SIZE), 46, 44, 6)] = 200
    stack[5] = stack[6] = 10
    return stack


def test_stop_continue_fill_review_undo_commit_by_keys(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(
        fading, "MIN_STANDOUT", math.inf
    )  # slices 5-6 test the confidence rule (fading: below)
    stack = two_cells()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    widget = _widget(viewer, tmp_path)
    viewer.window.add_dock_widget(widget)
    controller, panel = widget.controller, widget.propagate_panel
    canvas = canvas_widget(viewer)
    canvas.setFocus()

    def wait():
        qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)

    def slices_of_object():
        return sorted(
            k[0] for k, o in controller.state.objects.slices.items() if o.mask is not None and o.mask.any()
        )

    # A on slice 2, propagate up: slices 5 and 6 are doubtful twice in a row -> it stops at 5, says why
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 20, 18), True)
    panel.direction.value = "up"
    panel.run_button.clicked.emit()
    wait()
    assert slices_of_object() == [2, 3, 4]
    assert (
        "stopped at slice 5: the network is unsure" in widget.status.value
        and "C continues" in widget.status.value
    )
    # C continues past the stop (from slice 4, keeping the two doubted slices), up to A's real end
    QTest.keyClick(canvas, Qt.Key_C)
    wait()
    assert slices_of_object() == list(range(2, 12))
    assert "stopped at slice 12" in widget.status.value
    assert [s.key[0] for s in controller.state.stops] == [12]
    # the doubted slices 5 and 6 are the ones to review, worst first, then the last slice (A's tip); N goes there
    assert [k[0] for k in controller.state.review.keys][2:] == [11]
    assert sorted(k[0] for k in controller.state.review.keys) == [5, 6, 11]
    QTest.keyClick(canvas, Qt.Key_N)
    assert (
        controller.current_key() == controller.state.review.keys[0]
        and "review slice 1 of 3" in widget.status.value
    )
    QTest.keyClick(canvas, Qt.Key_N)
    assert controller.current_key() == controller.state.review.keys[1]
    QTest.keyClick(canvas, Qt.Key_Space)  # commit A: label 1 on slices 2..11
    a_masks = {z: np.array(controller.labels_layer.data[z] == 1) for z in range(14)}
    assert sorted(z for z, m in a_masks.items() if m.any()) == list(range(2, 12))
    for z in (2, 3, 4, 7, 8, 11):
        np.testing.assert_array_equal(a_masks[z], disk((SIZE, SIZE), 20, 16 + z, 7))

    # B annotated on slices 2 and 9; F on slice 9 fills 3..8 from both
    for z in (2, 9):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 46, 44), True)
    QTest.keyClick(canvas, Qt.Key_F)
    wait()
    assert slices_of_object() == list(range(2, 10))
    assert "filled 6 slice(s) between slices 9 and 2" in widget.status.value
    assert sorted(k[0] for k in controller.state.review.keys) == [5, 6]  # copied, unsure slices
    # Ctrl+Z takes the whole fill back; the two annotated slices keep their clicks
    QTest.keyClick(canvas, Qt.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert slices_of_object() == [2, 9]
    assert controller.state.objects.slices[(2,)].clicks and controller.state.objects.slices[(9,)].clicks
    before = controller.current_key()
    QTest.keyClick(canvas, Qt.Key_N)  # the fill's slices to review went with it
    assert controller.current_key() == before and "taken back" in widget.status.value
    assert len(controller.points_layer.data) == 2
    # it is one action of the image's history: Ctrl+Shift+Z brings the whole fill back (no network run)
    QTest.keyClick(canvas, Qt.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert slices_of_object() == list(range(2, 10)) and "redid the fill" in widget.status.value
    assert len(controller.points_layer.data) == 2
    QTest.keyClick(canvas, Qt.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert slices_of_object() == [2, 9]
    panel.fill_button.clicked.emit()  # the button does the same
    wait()
    QTest.keyClick(canvas, Qt.Key_N)
    assert controller.current_key()[0] in (5, 6)
    QTest.keyClick(canvas, Qt.Key_Space)
    QTest.keyClick(canvas, Qt.Key_N)  # committed: nothing left on those slices to review
    assert "no slice to review" in widget.status.value
    labels = controller.labels_layer.data
    b = disk((SIZE, SIZE), 46, 44, 6)
    for z in range(14):
        np.testing.assert_array_equal(labels[z] == 2, b if 2 <= z <= 9 else np.zeros_like(b))
        np.testing.assert_array_equal(labels[z] == 1, a_masks[z])
    # the click log replays both objects exactly (fcfi segment)
    log = controller.click_log
    steps = [type(s) for s in log.records[1].steps]
    assert FillStep in steps and any(
        isinstance(s, PropagateStep) and s.through == 2 for s in log.records[0].steps
    )
    replayed = replay_click_log(None, stack, controller.state.geometry, log, segmenter=UnsureCopier(None))
    np.testing.assert_array_equal(replayed, labels)
    widget.close_controller()


def test_undo_while_a_fill_runs_stops_it_and_drops_the_slices_still_coming(make_napari_viewer, tmp_path):
    from napari_fcfi.plugin.stack_tools import start_fill

    viewer = make_napari_viewer()
    viewer.add_image(two_cells(), name="cells")
    widget = _widget(viewer, tmp_path)
    controller = widget.controller
    for z in (2, 9):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 46, 44), True)
    history = controller.state.history
    clicks_before = {k: o.clicks for k, o in controller.state.objects.slices.items() if o.clicks}
    notify = controller.on_change

    def undo_on_first_slice(what="all"):
        notify(what)
        run = controller.propagation
        if run is not None and run.done == 1 and not run.discarded:
            controller.undo()  # Ctrl+Z while the fill is still running

    controller.on_change = undo_on_first_slice
    run = start_fill(controller, threaded=False)
    controller.on_change = notify
    assert run is not None and run.discarded and run.done == 1  # the other 5 slices were dropped
    assert "taken back" in widget.status.value
    masks = {k[0] for k, o in controller.state.objects.slices.items() if o.mask is not None and o.mask.any()}
    assert (
        masks == {2, 9}
        and {k: o.clicks for k, o in controller.state.objects.slices.items() if o.clicks} == clicks_before
    )
    assert len(history.undone) == 1 and history.undone[0].name == "fill"
    controller.redo()  # what it had done comes back: one filled slice, the two ends joined
    filled = [
        k[0] for k, o in controller.state.objects.slices.items() if o.from_propagation and o.mask is not None
    ]
    assert len(filled) == 1 and controller.state.objects.members((9,))[0] == (2,)
    widget.close_controller()


def test_a_fading_object_stops_with_the_reason_and_continues_by_key(make_napari_viewer, qtbot, tmp_path):
    """Slices 1-8 hold a bright disk, 9 only its out-of-focus light (30 % contrast), which the stand-in
    network segments surely: propagation ends there because the object faded, C goes on past it."""
    stack = np.full((12, SIZE, SIZE), 10, np.uint16)
    for z in range(1, 9):
        stack[z][disk((SIZE, SIZE), 24, 24, 8)] = 200
    stack[9][disk((SIZE, SIZE), 24, 24, 8)] = 67
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = _widget(viewer, tmp_path)
    viewer.window.add_dock_widget(widget)
    controller, panel = widget.controller, widget.propagate_panel
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 24, 24), True)
    panel.direction.value = "up"
    panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    filled = sorted(
        k[0] for k, o in controller.state.objects.slices.items() if o.mask is not None and o.mask.any()
    )
    assert filled == list(range(2, 9))
    assert (
        "stopped at slice 9: the object faded (30 % of its brightest recent slice's contrast)"
        in widget.status.value
    )
    QTest.keyClick(canvas, Qt.Key_C)  # the user sees light there and wants it: slice 9 is kept
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert (9,) in controller.state.objects.slices and controller.state.objects.slices[(9,)].mask.any()
    assert "stopped at slice 10" in widget.status.value
    QTest.keyClick(canvas, Qt.Key_Space)  # commit; the click log replays it exactly (fcfi segment)
    labels = np.array(controller.labels_layer.data)
    assert sorted(z for z in range(12) if (labels[z] == 1).any()) == list(range(2, 10))
    step = next(s for s in controller.click_log.records[0].steps if isinstance(s, PropagateStep))
    assert step.fading
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)


def test_a_cancelled_propagation_replays_to_exactly_the_slices_it_placed(make_napari_viewer, tmp_path):
    """Cancel after three slices (two up, one down: the directions take turns): the click log limits the
    propagation to what the user kept, so ``fcfi segment`` gives the same labels."""
    from napari_fcfi.plugin.propagating import start_propagation

    stack = np.full((14, SIZE, SIZE), 10, np.uint16)
    for z in range(1, 13):
        stack[z][disk((SIZE, SIZE), 24, 20 + z, 7)] = 200
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = _widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    notify = controller.on_change

    def cancel_after_three(what="all"):
        notify(what)
        run = controller.propagation
        if run is not None and run.done == 3:
            run.cancel()  # the Cancel button

    controller.on_change = cancel_after_three
    run = start_propagation(controller, "both", threaded=False)
    controller.on_change = notify
    assert run is not None and run.cancelled and run.done == 3
    assert "cancelled" in widget.status.value
    assert controller.commit()
    labels = np.array(controller.labels_layer.data)
    assert sorted(z for z in range(14) if (labels[z] == 1).any()) == [5, 6, 7, 8]
    steps = [s for s in controller.click_log.records[0].steps if isinstance(s, PropagateStep)]
    assert sorted((s.direction, s.max_slices) for s in steps) == [("down", 1), ("up", 2)]
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    widget.close_controller()


def test_a_cancelled_fill_replays_to_exactly_the_slices_it_placed(make_napari_viewer, tmp_path):
    from napari_fcfi.plugin.stack_tools import start_fill

    stack = two_cells()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    widget = _widget(viewer, tmp_path)
    controller = widget.controller
    for z in (2, 11):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 46, 44), True)
    notify = controller.on_change

    def cancel_after_two(what="all"):
        notify(what)
        run = controller.propagation
        if run is not None and run.done == 2:
            run.cancel()

    controller.on_change = cancel_after_two
    run = start_fill(controller, threaded=False)
    controller.on_change = notify
    assert run is not None and run.cancelled
    # the slices the two chains had reached but not finished come from one chain: no gap in z
    filled = sorted(p.index for p in run.predicted)
    assert filled == list(range(3, 11)) and run.done == 8
    assert "cancelled: unfinished slices come from one side only" in widget.status.value
    assert controller.commit()
    labels = np.array(controller.labels_layer.data)
    assert sorted(z for z in range(14) if (labels[z] == 1).any()) == list(range(2, 12))
    fill = next(s for s in controller.click_log.records[0].steps if isinstance(s, FillStep))
    assert fill.kept == tuple(filled) and fill.passes is not None  # replay stops at the same pass
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    widget.close_controller()


def test_fill_and_continue_say_at_once_what_they_started(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """F and C showed no status until their background work ended; and with two stops, C did not say
    which one it continues (nor kept the other one for later)."""
    import threading

    monkeypatch.setattr(fading, "MIN_STANDOUT", math.inf)
    release = threading.Event()

    def gated(model):  # worker threads wait for the test; predictions (GUI thread) do not
        if threading.current_thread() is not threading.main_thread():
            assert release.wait(20)
        return UnsureCopier(model)

    viewer = make_napari_viewer()
    viewer.add_image(two_cells(), name="cells")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=gated)
    controller, panel = widget.controller, widget.propagate_panel
    canvas = canvas_widget(viewer)
    canvas.setFocus()

    def finish():
        release.set()
        qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
        release.clear()

    # A on slice 8, propagate both ways: it stops below (slices 6-5 unsure) and above (A ends at 11)
    viewer.dims.set_current_step(0, 8)
    controller.add_click_world((8, 20, 24), True)
    panel.direction.value = "both"
    panel.run_button.clicked.emit()
    assert widget.status.value == "FCFI: propagating both ways from slice 8 …"
    finish()
    stops = sorted((s.direction, s.key[0]) for s in controller.state.stops)
    assert [d for d, _ in stops] == ["down", "up"], stops
    down, up = dict(stops)["down"], dict(stops)["up"]

    QTest.keyClick(canvas, Qt.Key_C)  # on slice 8 the stop below is nearer
    status = widget.status.value
    assert status.startswith(
        f"FCFI: continuing propagation down from slice {down + 1} past the stop at slice {down}"
    ), status
    assert f"C again: up past slice {up}" in status, status
    finish()
    assert [(s.direction, s.key[0]) for s in controller.state.stops][0] == ("up", up)  # kept for later
    assert f"; C continues up past slice {up};" in widget.status.value, widget.status.value

    # B annotated on slices 2 and 9: F says at once which slices it fills
    controller.commit()
    for z in (2, 9):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 46, 44), True)
    QTest.keyClick(canvas, Qt.Key_F)
    assert widget.status.value == "FCFI: filling slices 3-8 between slices 9 and 2 …", widget.status.value
    finish()
    assert "filled 6 slice(s) between slices 9 and 2" in widget.status.value
    widget.close_controller()
