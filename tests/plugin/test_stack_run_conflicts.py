"""What the user does to an object while its propagation or fill runs (review findings, 2026-12-06):
commit and edit wait for the run, undo + redo keep the click log exact, a fill never empties another
object's slice, a direction that ended at the user's slice records no stop, the keys go along the
panel's axis, and closing the dock with a prediction on its way loses nothing."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from helpers.qt_mouse import canvas_widget
from helpers.stack_runs import SIZE, drifting_cell, during, stack_widget
from helpers.standins import BrightRegionSegmenter, UnsureCopier, disk
from helpers.widgets import docked_widget
from napari_fcfi.annotation.clicklog import FillStep, PropagateStep
from napari_fcfi.annotation.replay import replay_click_log
from napari_fcfi.plugin.propagating import start_propagation
from napari_fcfi.plugin.stack_tools import start_fill
from napari_fcfi.plugin.worker import ImmediateRunner, JobResult


def test_commit_and_edit_of_the_running_object_wait_for_the_run(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    said = []

    def try_commit(run):
        said.append(controller.commit())
        said.append(widget.status.value)

    restore = during(controller, lambda run: run.done == 2, try_commit)
    run = start_propagation(controller, "up", threaded=False)
    restore()
    assert run is not None and not run.cancelled and said[0] is False
    assert "propagation or fill is still running; commit it when it ends" in said[1], said[1]
    assert controller.labels_layer is None or not np.asarray(controller.labels_layer.data).any()
    placed = sorted(p.index for p in run.predicted)
    assert placed == list(range(7, 13)) or placed == list(range(7, 14))
    assert controller.commit()  # after the run: every slice, and the click log replays it exactly
    labels = np.array(controller.labels_layer.data)
    assert sorted(z for z in range(14) if (labels[z] == 1).any()) == [6, *placed]
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)

    # editing a label on a slice of an object being propagated waits too
    viewer.dims.set_current_step(0, 3)
    controller.add_click_world((3, 24, 23), True)
    said.clear()

    def try_edit(run):
        viewer.dims.set_current_step(0, 3)
        said.append(controller.select_label(1) if (labels[3] == 1).any() else None)
        said.append(widget.status.value)

    labels[3][disk((SIZE, SIZE), 24, 23, 3)] = 1  # label 1 where the edit would start
    controller.labels_layer.data = labels
    restore = during(controller, lambda run: run.done == 1, try_edit)
    start_propagation(controller, "down", threaded=False)
    restore()
    assert said[0] is False and "edit it when it ends" in said[1], said
    assert controller.state.objects.slices[(3,)].edit_label is None
    widget.close_controller()


def test_an_object_gone_while_its_run_goes_on_ends_the_run_without_an_error(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    # the library's own commit (what any path that bypasses the widget's check does)
    restore = during(
        controller, lambda run: run.done == 2, lambda run: controller.state.session.committed((6,))
    )
    run = start_propagation(controller, "both", threaded=False)
    restore()
    widget.propagate_panel.track(run)
    assert run is not None and run.orphaned and run.cancelled and run.done == 2
    assert controller.propagation is None and not widget.propagate_panel.cancel_button.enabled
    assert "the object was committed, edited or reset while it ran" in widget.status.value
    assert not any(o.group is not None for o in controller.state.objects.slices.values())
    widget.close_controller()


def test_undo_and_redo_while_a_run_goes_on_keep_the_click_log_exact(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)

    def undo_redo(run):
        controller.undo()
        controller.redo()  # the three slices come back; the rest of the run is dropped

    restore = during(controller, lambda run: run.done == 3, undo_redo)
    run = start_propagation(controller, "both", threaded=False)
    restore()
    assert run is not None and run.redone and not run.discarded and run.done == 3
    assert "it stopped when you undid it, and the redo brought back what it had made" in widget.status.value
    assert controller.commit()
    labels = np.array(controller.labels_layer.data)
    assert sorted(z for z in range(14) if (labels[z] == 1).any()) == [5, 6, 7, 8]  # up and down take turns
    steps = [s for s in controller.click_log.records[0].steps if isinstance(s, PropagateStep)]
    assert sorted((s.direction, s.max_slices) for s in steps) == [("down", 1), ("up", 2)]
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)

    widget.close_controller()


def test_undo_while_a_fill_runs_then_redo_keeps_the_click_log_exact(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    for z in (2, 11):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)
    restore = during(controller, lambda run: run.done == 2, lambda run: controller.undo())
    run = start_fill(controller, threaded=False)
    restore()
    assert run is not None and run.discarded
    controller.redo()
    filled = sorted(k[0] for k, o in controller.state.objects.slices.items() if o.from_propagation)
    assert len(filled) == 2
    assert controller.commit()
    fill = next(s for s in controller.click_log.records[0].steps if isinstance(s, FillStep))
    assert fill.kept == tuple(filled)
    labels = np.array(controller.labels_layer.data)
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    widget.close_controller()


def test_fill_never_empties_another_objects_slice_between_the_ends(make_napari_viewer, qtbot, tmp_path):
    stack = drifting_cell()
    for z in range(14):
        stack[z][disk((SIZE, SIZE), 50, 50, 5)] = 200  # a still neighbour on every slice
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 50, 50), True)  # the neighbour, in progress on slice 4
    for z in (2, 6):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)
    QTest.keyClick(canvas, Qt.Key_F)
    assert controller.propagation is None
    assert "slice 4 between slices 2 and 6 holds another object in progress" in widget.status.value
    assert controller.state.objects.slices[(4,)].clicks  # untouched

    viewer.dims.set_current_step(0, 4)
    assert controller.commit()  # the neighbour is label 1 now; the fill may go on
    viewer.dims.set_current_step(0, 6)
    QTest.keyClick(canvas, Qt.Key_F)
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert "filled 3 slice(s) between slices 6 and 2" in widget.status.value, widget.status.value
    assert controller.commit()
    labels = np.array(controller.labels_layer.data)
    assert (labels[4] == 1).sum() == disk((SIZE, SIZE), 50, 50, 5).sum()  # the neighbour kept its label
    assert sorted(z for z in range(14) if (labels[z] == 2).any()) == [2, 3, 4, 5, 6]
    widget.close_controller()


def test_a_direction_ended_at_the_users_slice_records_no_stop(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 24, 22), True)

    def correct_slice_5(run):
        viewer.dims.set_current_step(0, 5)
        controller.add_click_world((5, 24, 25), True)

    restore = during(controller, lambda run: run.done == 1, correct_slice_5)
    run = start_propagation(controller, "up", threaded=False)
    restore()
    assert run is not None and run.blocked == {"up"}
    assert sorted(p.index for p in run.predicted) == [3, 4]
    assert controller.state.stops == []  # the object ends at 13, past the user's slice: not this run's stop
    assert "C continues" not in widget.status.value
    widget.close_controller()


def test_the_fill_key_goes_along_the_axis_of_the_panel(make_napari_viewer, qtbot, tmp_path):
    stack = np.full((8, 3, SIZE, SIZE), 10, np.uint16)  # t, z, y, x: 8 time points of 3 planes
    for t in range(8):
        for z in range(3):
            stack[t, z][disk((SIZE, SIZE), 24, 20 + t, 7)] = 200
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="movie")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    assert widget.propagate_panel.axis.value == 0  # the longest axis, t
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    viewer.dims.set_current_step(1, 1)
    for t in (1, 5):
        viewer.dims.set_current_step(0, t)
        controller.add_click_world((t, 1, 24, 20 + t), True)
    QTest.keyClick(canvas, Qt.Key_F)
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    # a slice of a 4D image is named by its whole key (t, z): "slice 5" alone could be z=5 or t=5
    assert "filled 3 slice(s) between slices (5, 1) and (1, 1)" in widget.status.value, widget.status.value
    filled = sorted(k for k, o in controller.state.objects.slices.items() if o.from_propagation)
    assert filled == [(2, 1), (3, 1), (4, 1)]
    QTest.keyClick(canvas, Qt.Key_Z, Qt.KeyboardModifier.ControlModifier)
    widget.propagate_panel.direction.value = "up"
    widget.propagate_panel.run_button.clicked.emit()  # from t=5 on: the movie ends at t=7
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert "propagated to 2 slice(s); it reached slice (7, 1), the stack's end" in widget.status.value
    widget.close_controller()


class HoldingRunner(ImmediateRunner):
    """Keeps the jobs until ``release()``: predictions on their way."""

    def __init__(self) -> None:
        super().__init__()
        self.held = []

    def submit(self, slot, generation, job) -> None:
        self.held.append((slot, generation, job))

    def release(self) -> None:
        held, self.held = self.held, []
        for slot, generation, job in held:
            self.on_result(JobResult(slot, generation, value=job()))


def test_closing_the_dock_with_a_prediction_on_its_way_predicts_it_again(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    runner = HoldingRunner()
    widget = stack_widget(viewer, tmp_path, runner=runner, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    runner.release()
    assert controller.state.objects.slices[(6,)].mask[24, 26]
    controller.add_click_world((6, 24, 32), False)  # its prediction never arrives in this dock
    assert controller.predictor.pending(controller.state.image_id, (6,))
    viewer.window.remove_dock_widget(widget.native)

    again = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    obj = again.controller.state.objects.slices[(6,)]
    assert len(obj.clicks) == 2
    qtbot.waitUntil(lambda: obj.mask is not None and not obj.mask[24, 32], timeout=10000)
    assert obj.mask[24, 22]  # the object minus the negative click's disk, not the stale one-click mask
    assert again.controller.commit()
    labels = np.asarray(again.controller.labels_layer.data[6])
    assert labels[24, 22] == 1 and labels[24, 32] == 0
    again.close_controller()


def test_a_new_threshold_counts_only_the_propagated_slices_it_cannot_recut(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 24, 24), True)
    run = start_propagation(controller, "up", 3, threaded=False)
    assert run is not None and run.done == 3
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)  # slice 6 corrected: it has clicks and a probability
    controller.update(threshold=0.6)
    assert "2 propagated or filled slice(s) keep the masks" in widget.status.value, widget.status.value
    widget.close_controller()


def test_a_rescaled_image_keeps_the_objects_in_progress_of_a_closed_dock(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 24, 24), True)
    start_propagation(controller, "up", 3, threaded=False)
    viewer.window.remove_dock_widget(widget.native)
    layer.scale = (2.0, 0.5, 0.5)  # the user sets the voxel size while the dock is closed

    again = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    made = sorted(k[0] for k, o in again.controller.state.objects.slices.items() if o.from_propagation)
    assert made == [5, 6, 7]
    again.close_controller()


def test_undo_and_redo_while_a_fill_runs_leave_no_gap(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    for z in (2, 11):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)
    restore = during(
        controller, lambda run: run.done == 2, lambda run: (controller.undo(), controller.redo())
    )
    run = start_fill(controller, threaded=False)
    restore()
    assert run is not None and run.redone and run.done == 8  # its unfinished slices come from one side
    assert controller.commit()
    labels = np.array(controller.labels_layer.data)
    assert [z for z in range(14) if labels[z].any()] == list(range(2, 12))
    replayed = replay_click_log(
        None, stack, controller.state.geometry, controller.click_log, segmenter=UnsureCopier(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    widget.close_controller()


def test_closing_the_dock_while_a_fill_runs_leaves_no_gap(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    for z in (2, 11):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)
    restore = during(
        controller,
        lambda run: run.done == 2,
        lambda run: viewer.window.remove_dock_widget(widget.native),
    )
    start_fill(controller, threaded=False)
    restore()
    again = stack_widget(viewer, tmp_path)
    made = sorted(k[0] for k, o in again.controller.state.objects.slices.items() if o.mask is not None)
    assert made == list(range(2, 12))
    again.close_controller()


def test_fill_never_replaces_the_users_corrections_between_its_ends(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    for z in (2, 6):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)
    viewer.dims.set_current_step(0, 5)
    controller.add_click_world((5, 24, 25), True)
    controller.add_click_world((5, 24, 31), False)  # the user's correction on slice 5, next to an end
    corrected = controller.state.objects.slices[(5,)].mask.copy()
    viewer.dims.set_current_step(0, 6)
    assert start_fill(controller, threaded=False) is None
    assert "slice 5 between slices 2 and 6 has your corrections of this object" in widget.status.value
    obj = controller.state.objects.slices[(5,)]
    assert len(obj.clicks) == 2 and np.array_equal(obj.mask, corrected)
    viewer.dims.set_current_step(0, 5)
    run = start_fill(controller, threaded=False)  # from the corrected slice: 3 and 4
    assert run is not None and sorted(p.index for p in run.predicted) == [3, 4]
    assert len(controller.state.objects.slices[(5,)].clicks) == 2
    widget.close_controller()


def test_another_object_committed_ahead_of_a_run_does_not_end_it(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    for z in range(14):
        stack[z][disk((SIZE, SIZE), 50, 50, 5)] = 200  # a still neighbour on every slice
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 24, 24), True)

    def annotate_the_neighbour_on_slice_9(run):
        viewer.dims.set_current_step(0, 9)
        controller.add_click_world((9, 50, 50), True)
        assert controller.commit()  # label 1 on slice 9; nothing in progress there any more
        viewer.dims.set_current_step(0, 4)

    restore = during(controller, lambda run: run.done == 1, annotate_the_neighbour_on_slice_9)
    run = start_propagation(controller, "up", threaded=False)
    restore()
    assert run is not None and sorted(p.index for p in run.predicted) == list(range(5, 13))
    assert not run.left_to_user and "left as you changed" not in widget.status.value
    widget.close_controller()


def test_a_commit_refused_for_a_running_run_is_not_a_refused_object(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    said = []
    restore = during(
        controller,
        lambda run: run.done == 2,
        lambda run: (controller.commit(), said.append(widget.status.value)),
    )
    start_propagation(controller, "up", threaded=False)
    restore()
    assert "still running" in said[0] and "Esc to discard" not in said[0], said[0]
    widget.close_controller()


def test_a_commit_waiting_for_its_prediction_when_the_dock_closes_is_done_by_the_next_dock(
    make_napari_viewer, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, runner=HoldingRunner(), segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    assert (
        controller.commit() is False
        and "commit will happen when the prediction finishes" in widget.status.value
    )
    viewer.window.remove_dock_widget(widget.native)  # closed right after pressing Space

    again = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    labels = again.controller.labels_layer
    assert labels is not None and (np.asarray(labels.data[6]) == 1).sum() > 100
    assert not again.controller.state.objects.slices[(6,)].has_object
    again.close_controller()
