"""A running propagation or fill never replaces what the user did meanwhile; closing the dock keeps the
propagated slices; each image keeps its own stops and review list (retest findings, 2026-12-06)."""

from __future__ import annotations

import time

import numpy as np

from helpers.standins import BrightRegionSegmenter, disk
from helpers.widgets import docked_widget
from napari_fcfi.annotation.replay import replay_click_log


def moving_cell_stack(depth=10, size=64):
    """A bright disk drifting right on slices 1..7 and a static neighbour on every slice."""
    stack = np.full((depth, size, size), 10, np.uint16)
    for z in range(1, 8):
        stack[z][disk((size, size), 30, 18 + 2 * z, 7)] = 200
    for z in range(depth):
        stack[z][disk((size, size), 52, 52, 5)] = 200
    return stack


class SlowSegmenter(BrightRegionSegmenter):
    def add_click(self, row, col, positive):
        time.sleep(0.3)
        return super().add_click(row, col, positive)


def _propagated(controller):
    return sorted(k[0] for k, o in controller.state.objects.slices.items() if o.from_propagation)


def _propagating_up_from_slice_1(make_napari_viewer, qtbot, tmp_path):
    """A slow propagation of the drifting cell, up from slice 1, running (one slice done)."""
    viewer = make_napari_viewer()
    stack = moving_cell_stack(depth=10)
    viewer.add_image(stack, name="cells")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=SlowSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 30, 20), True)
    widget.propagate_panel.direction.value = "up"
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.propagate_panel.progress.value >= 1, timeout=20000)
    return viewer, widget, controller, stack


def test_a_slice_clicked_ahead_of_a_running_propagation_is_kept_and_joins_its_object(
    make_napari_viewer, qtbot, tmp_path
):
    viewer, widget, controller, stack = _propagating_up_from_slice_1(make_napari_viewer, qtbot, tmp_path)
    # ahead of the run: the user corrects slice 6 with a positive and a negative click
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 30, 30), True)
    controller.add_click_world((6, 30, 36), False)
    users = controller.state.objects.slices[(6,)]
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=30000)

    kept = controller.state.objects.slices[(6,)]
    assert [(c.row, c.col, c.positive) for c in kept.clicks] == [(30, 30, True), (30, 36, False)]
    assert kept is users and not kept.from_propagation
    assert len(controller.state.clicks_layer.data) == 3  # slice 1's click and both of slice 6's
    assert _propagated(controller) == [2, 3, 4, 5]  # it ended before slice 6; nothing past it either
    # the same cell (the click lies in the run's own mask there): one object, not two labels at Commit
    assert "slice 6 (you clicked the object there while it ran) joined this object" in widget.status.value
    assert controller.state.objects.members((1,)) == [(1,), (2,), (3,), (4,), (5,), (6,)]
    controller.undo()  # the negative click on slice 6 (made while the run went on): slice 6 stays in
    assert controller.state.objects.members((1,)) == [(1,), (2,), (3,), (4,), (5,), (6,)]
    controller.redo()
    assert [c.positive for c in controller.state.objects.slices[(6,)].clicks] == [True, False]
    # the click log replays what the user kept: the propagation's step reaches slices 2-5 only
    viewer.dims.set_current_step(0, 1)
    controller.commit()
    record = controller.click_log.records[0]
    steps = [s for s in record.steps if type(s).__name__ == "PropagateStep"]
    assert [(s.direction, s.max_slices) for s in steps] == [("up", 4)]
    labels = np.asarray(controller.labels_layer.data)
    assert [z for z in range(10) if (labels[z] == 1).any()] == [1, 2, 3, 4, 5, 6] and labels.max() == 1
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=BrightRegionSegmenter(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    widget.close_controller()


def test_another_object_clicked_ahead_of_a_running_propagation_stays_its_own(
    make_napari_viewer, qtbot, tmp_path
):
    viewer, widget, controller, _stack = _propagating_up_from_slice_1(make_napari_viewer, qtbot, tmp_path)
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 52, 52), True)  # the static neighbour, not the propagated cell
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=30000)
    assert "slice 6 left as you changed it while it ran" in widget.status.value, widget.status.value
    assert controller.state.objects.members((1,)) == [(1,), (2,), (3,), (4,), (5,)]
    assert controller.state.objects.members((6,)) == [(6,)]
    widget.close_controller()


class CountingSlowSegmenter(SlowSegmenter):
    passes: list[int] = []

    def add_click(self, row, col, positive):
        CountingSlowSegmenter.passes.append(1)
        return super().add_click(row, col, positive)


def test_past_a_slice_the_user_changed_the_run_spends_no_network_time(make_napari_viewer, qtbot, tmp_path):
    stack = np.full((30, 64, 64), 10, np.uint16)
    stack[:, 25:35, 25:35] = 200  # a cell through all 30 slices
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    CountingSlowSegmenter.passes = []
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=CountingSlowSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 30, 30), True)
    widget.propagate_panel.direction.value = "up"
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.propagate_panel.progress.value >= 1, timeout=20000)
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 30, 30), True)  # the user takes slice 4 over
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=30000)
    assert _propagated(controller) == [2, 3]
    # 2 clicks, slices 2-3 and at most a slice or two the worker had begun: not the 28 slices up to 29
    assert len(CountingSlowSegmenter.passes) <= 7, len(CountingSlowSegmenter.passes)
    widget.close_controller()


def test_a_slice_committed_ahead_of_a_running_propagation_gets_no_new_object(
    make_napari_viewer, qtbot, tmp_path
):
    viewer, widget, controller, _stack = _propagating_up_from_slice_1(make_napari_viewer, qtbot, tmp_path)
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 30, 30), True)
    controller.commit()  # label 1 on slice 6 while the run goes on
    committed = np.array(controller.labels_layer.data[6] == 1)
    assert committed.any()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=30000)
    obj = controller.state.objects.slices.get((6,))
    assert obj is None or not obj.has_object  # no object in progress on top of the label
    assert _propagated(controller) == [2, 3, 4, 5]
    np.testing.assert_array_equal(controller.labels_layer.data[6] == 1, committed)
    widget.close_controller()


def test_closing_the_dock_keeps_the_propagated_slices_for_the_next_dock(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(moving_cell_stack(depth=10), name="cells")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 30, 26), True)
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    masks = {k: np.array(o.mask) for k, o in controller.state.objects.slices.items() if o.mask is not None}
    assert sorted(k[0] for k in masks) == [1, 2, 3, 4, 5, 6, 7]
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    assert controller._closed

    again = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    state = again.controller.state
    assert state is not None and len(viewer.layers) == 3  # image, clicks, preview: no duplicates
    restored = {k: o.mask for k, o in state.objects.slices.items() if o.mask is not None and o.mask.any()}
    assert sorted(restored) == sorted(masks)
    for key, mask in masks.items():
        np.testing.assert_array_equal(restored[key], mask)
    again.controller.commit()  # one label on all seven slices
    labels = again.controller.labels_layer.data
    assert sorted(z for z in range(10) if (labels[z] == 1).any()) == [1, 2, 3, 4, 5, 6, 7]
    again.close_controller()


def test_each_image_keeps_its_own_review_list_and_stops(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    first = viewer.add_image(moving_cell_stack(depth=10), name="first")
    second = viewer.add_image(moving_cell_stack(depth=10)[::-1].copy(), name="second")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    widget.image_menu.value = first
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 30, 26), True)
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    first_review, first_stops = controller.state.review, list(controller.state.stops)
    assert first_review is not None and first_review.image_id == str(first.unique_id)

    widget.image_menu.value = second
    assert controller.state.review is None and controller.state.stops == []
    viewer.dims.set_current_step(0, 5)
    controller.add_click_world((5, 30, 26), True)
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert controller.state.review is not None and controller.state.review.image_id == str(second.unique_id)

    widget.image_menu.value = first
    assert controller.state.review is first_review and controller.state.stops == first_stops
    widget.close_controller()


def test_fill_between_never_joins_two_objects(make_napari_viewer, qtbot, tmp_path):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from helpers.qt_mouse import canvas_widget

    viewer = make_napari_viewer()
    viewer.add_image(moving_cell_stack(depth=10), name="cells")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 52, 52), True)  # the static neighbour, not committed
    for z in (7, 6):  # the drifting cell on two adjacent slices
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 30, 18 + 2 * z), True)
    QTest.keyClick(canvas, Qt.Key_F)
    assert controller.propagation is None
    assert "does not overlap this one" in widget.status.value, widget.status.value
    assert not any(o.from_propagation for o in controller.state.objects.slices.values())

    viewer.dims.set_current_step(0, 3)
    controller.add_click_world((3, 30, 24), True)  # the same cell three slices down: F fills 4 and 5
    viewer.dims.set_current_step(0, 6)
    QTest.keyClick(canvas, Qt.Key_F)
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert "filled 2 slice(s) between slices 6 and 3" in widget.status.value, widget.status.value
    widget.close_controller()


def test_a_propagation_that_reaches_the_stack_ends_says_so(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(moving_cell_stack(depth=10), name="cells")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 52, 52), True)  # the neighbour is on every slice
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert _propagated(controller) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    status = widget.status.value
    assert "reached slice 9, the stack's end" in status and "reached slice 0, the stack's end" in status
    widget.close_controller()
