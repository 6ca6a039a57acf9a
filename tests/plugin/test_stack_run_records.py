"""A run's record stays exact and its image's state consistent whatever ends it (code review, 2026-12-06):
a correction undone after the run, an error part way, the image removed, the image rescaled while no
dock annotated it, and a commit in a reopened dock while the closed dock's run still delivers."""

from __future__ import annotations

import numpy as np

from helpers.stack_runs import SIZE, drifting_cell, during, replays_exactly, stack_widget
from helpers.standins import BrightRegionSegmenter, UnsureCopier, disk
from napari_fcfi.annotation.clicklog import PropagateStep
from napari_fcfi.plugin.propagating import start_propagation
from napari_fcfi.plugin.stack_tools import start_fill


def test_undoing_a_correction_made_while_the_run_went_on_keeps_the_record_cut(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)

    def correct_then_cancel(run):
        viewer.dims.set_current_step(0, 7)  # just placed by the run
        controller.add_click_world((7, 24, 27), True)  # its history keeps the object's steps as they are now
        controller.reset_object()  # Esc: cancels the run

    restore = during(controller, lambda run: run.done == 2, correct_then_cancel)
    run = start_propagation(controller, "up", threaded=False)
    restore()
    assert run is not None and run.cancelled
    controller.undo()  # the correction goes; the object's steps come back from that action's copy
    viewer.dims.set_current_step(0, 6)
    assert controller.commit()
    steps = [s for s in controller.click_log.records[0].steps if isinstance(s, PropagateStep)]
    assert [(s.direction, s.max_slices) for s in steps] == [("up", run.done)]
    replays_exactly(controller, stack)
    widget.close_controller()


class FailsOnce(UnsureCopier):
    """A transient error (CUDA out of memory) on the n-th image it is given."""

    left: int | None = None

    def set_image(self, *args, **kwargs):
        if FailsOnce.left is not None:
            FailsOnce.left -= 1
            if FailsOnce.left == 0:
                FailsOnce.left = None
                raise RuntimeError("CUDA out of memory")
        return super().set_image(*args, **kwargs)


def test_a_run_that_fails_part_way_keeps_its_slices_and_an_exact_record(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=FailsOnce)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    FailsOnce.left = 4
    run = start_propagation(controller, "up", threaded=False)
    assert run is not None and run.failed and 0 < run.done < 6
    assert "the run failed: CUDA out of memory" in widget.status.value
    assert controller.propagation is None and controller.state.session.running is None
    assert controller.commit()
    labels = replays_exactly(controller, stack)
    assert [z for z in range(14) if labels[z].any()] == list(range(6, 7 + run.done))
    widget.close_controller()


def test_removing_the_image_stops_its_run(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    nuclei = viewer.add_image(drifting_cell(), name="nuclei")
    other = viewer.add_image(drifting_cell(), name="other")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    controller.set_image_layer(nuclei)
    viewer.dims.set_current_step(0, 3)
    controller.add_click_world((3, 24, 23), True)
    restore = during(controller, lambda run: run.done == 2, lambda run: viewer.layers.remove(nuclei))
    run = start_propagation(controller, "up", threaded=False)
    restore()
    assert run is not None and run.cancelled and run.done == 2
    assert "its image was removed" in widget.status.value, widget.status.value
    assert controller.propagation is None
    controller.set_image_layer(other)  # the other image can propagate at once
    viewer.dims.set_current_step(0, 3)
    controller.add_click_world((3, 24, 23), True)
    assert start_propagation(controller, "up", 2, threaded=False) is not None
    widget.close_controller()


def test_a_rescaled_image_gets_its_helper_layers_realigned(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 4)
    controller.add_click_world((4, 24, 24), True)
    start_propagation(controller, "up", 3, threaded=False)
    viewer.window.remove_dock_widget(widget.native)
    layer.scale = (2.0, 0.5, 0.5)  # the voxel size set while no dock annotates

    again = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    state = again.controller.state
    clicks = state.clicks_layer
    np.testing.assert_allclose(clicks.data_to_world(clicks.data[0]), layer.data_to_world((4, 24, 24)))
    np.testing.assert_allclose(tuple(state.preview_layer.scale), (0.5, 0.5))
    made = sorted(k[0] for k, o in state.objects.slices.items() if o.from_propagation)
    assert made == [5, 6, 7]
    again.close_controller()


def test_a_reopened_dock_waits_for_the_closed_docks_run(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="nuclei")
    widget = stack_widget(viewer, tmp_path)
    controller = widget.controller
    for z in (2, 11):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)
    seen = {}

    def close_reopen_commit(run):
        viewer.window.remove_dock_widget(widget.native)
        seen["again"] = again = stack_widget(viewer, tmp_path)
        viewer.dims.set_current_step(0, 11)
        seen["committed"] = again.controller.commit()
        seen["status"] = again.status.value
        seen["propagate"] = start_propagation(again.controller, "up", 1, threaded=False)

    restore = during(controller, lambda run: run.done == 2, close_reopen_commit)
    start_fill(controller, threaded=False)
    restore()
    assert seen["committed"] is False and "still running" in seen["status"], seen["status"]
    assert seen["propagate"] is None  # one run at a time on an image, whichever dock started it
    again = seen["again"]
    assert again.controller.state.session.running is None  # the old run ended: now it commits
    viewer.dims.set_current_step(0, 11)
    assert again.controller.commit()
    labels = replays_exactly(again.controller, stack)
    assert [z for z in range(14) if labels[z].any()] == list(range(2, 12))
    again.close_controller()


def test_another_object_committed_between_a_fills_ends_leaves_the_fill_undoable(make_napari_viewer, tmp_path):
    stack = drifting_cell()
    for z in range(14):
        stack[z][disk((SIZE, SIZE), 50, 50, 5)] = 200  # a still neighbour on every slice
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    for z in (2, 11):
        viewer.dims.set_current_step(0, z)
        controller.add_click_world((z, 24, 20 + z), True)

    def commit_the_neighbour_on_slice_8(run):
        viewer.dims.set_current_step(0, 8)
        controller.add_click_world((8, 50, 50), True)
        assert controller.commit()  # label 1 on slice 8, between the fill's ends, not reached yet

    viewer.dims.set_current_step(0, 8)
    assert controller.current_object() is not None  # looked at before the fill: the fill's action touches it
    viewer.dims.set_current_step(0, 11)
    restore = during(controller, lambda run: run.done == 1, commit_the_neighbour_on_slice_8)
    run = start_fill(controller, threaded=False)
    restore()
    assert run is not None and run.done == 8  # slice 8 filled too: the neighbour was another object
    controller.undo()  # takes the whole fill back
    assert not any(o.from_propagation for o in controller.state.objects.slices.values())
    assert "undid the fill" in widget.status.value, widget.status.value
    assert (np.asarray(controller.labels_layer.data[8]) == 1).sum() == disk((SIZE, SIZE), 50, 50, 5).sum()
    widget.close_controller()


def test_a_reopened_dock_keeps_the_stops_and_review_of_the_closed_docks_run(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    seen = {}

    def close_the_dock(run):
        viewer.window.remove_dock_widget(widget.native)
        seen["again"] = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)

    restore = during(controller, lambda run: run.done == 2, close_the_dock)
    run = start_propagation(controller, "both", threaded=False)
    restore()
    assert run is not None and run.dock_closed
    state = seen["again"].controller.state
    assert state.review is not None and state.review.keys  # N walks them in the new dock
    made = sorted(k[0] for k, o in state.objects.slices.items() if o.from_propagation)
    assert [k[0] for k in state.review.keys if k[0] not in made] == []
    seen["again"].close_controller()


def test_esc_just_after_a_run_ended_does_not_reset_the_object(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(drifting_cell(), name="nuclei")
    widget = stack_widget(viewer, tmp_path, segmenter=BrightRegionSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 6)
    controller.add_click_world((6, 24, 26), True)
    run = start_propagation(controller, "up", 3, threaded=False)
    assert run is not None and run.done == 3
    controller.reset_object()  # meant to cancel the run, which had just ended
    assert "had already ended; Esc again resets the object" in widget.status.value
    assert sorted(k[0] for k, o in controller.state.objects.slices.items() if o.has_object) == [6, 7, 8, 9]
    controller.reset_object()  # Esc again: now it resets, as asked
    assert "the object was reset on all 4 slices" in widget.status.value, widget.status.value
    assert not any(o.has_object for o in controller.state.objects.slices.values())
    widget.close_controller()
