"""Propagation in a real viewer: annotate, propagate, correct a slice, propagate again, undo, commit."""

from __future__ import annotations

import numpy as np

from helpers.standins import BrightRegionSegmenter, disk
from helpers.widgets import docked_widget


def moving_cell_stack(depth=10, size=64):
    """A bright disk drifting right on slices 1..7 and a second, static disk (a neighbour) on every slice."""
    stack = np.full((depth, size, size), 10, np.uint16)
    for z in range(1, 8):
        stack[z][disk((size, size), 30, 18 + 2 * z, 7)] = 200
    for z in range(depth):
        stack[z][disk((size, size), 52, 52, 5)] = 200
    return stack


def test_annotate_propagate_correct_repropagate_undo_commit(make_napari_viewer, qtbot, tmp_path):
    stack = moving_cell_stack()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells", scale=(2.0, 0.5, 0.5))
    widget = docked_widget(viewer, tmp_path / "journal", segmenter_factory=BrightRegionSegmenter)
    controller = widget.controller
    panel = widget.propagate_panel
    assert panel.enabled and panel.axis.choices == (0,)

    def world(z, row, col):
        return (2.0 * z, 0.5 * row, 0.5 * col)

    viewer.dims.set_point(0, world(4, 0, 0)[0])
    controller.add_click_world(world(4, 30, 26), True)  # annotate slice 4
    panel.direction.value = "both"
    panel.run_button.clicked.emit()  # in a napari worker thread
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    state = controller.state
    reached = sorted(k[0] for k, o in state.objects.slices.items() if o.mask is not None and o.mask.any())
    assert reached == [1, 2, 3, 4, 5, 6, 7]  # slices 0, 8, 9 have no object: it ends by itself
    assert "propagated to 6 slice(s)" in widget.status.value
    assert "spans 7 slices" in widget.object_info.value

    # correct slice 6 (a negative click removes a bite), then propagate up again from there
    viewer.dims.set_point(0, world(6, 0, 0)[0])
    np.testing.assert_array_equal(controller.preview_layer.data > 0, state.objects.slices[(6,)].mask)
    controller.add_click_world(world(6, 30, 37), False)
    corrected = state.objects.slices[(6,)].mask.copy()
    assert not corrected[30, 37] and corrected.sum() < (stack[6] > 100).sum()
    panel.direction.value = "up"
    panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    assert state.objects.slices[(7,)].initial_mask is not None

    # undo takes back the second propagation in one step (slice 7 as the first propagation left it)
    controller.undo()
    assert state.objects.slices[(7,)].from_propagation
    first_seven = state.objects.slices[(7,)].mask.copy()
    np.testing.assert_array_equal(first_seven, (stack[7] > 100) & ~disk((64, 64), 52, 52, 5))
    assert state.objects.slices[(6,)].clicks  # the correction on slice 6 stays

    controller.commit()  # one label id on every slice of the object
    labels = controller.labels_layer.data
    assert labels.shape == stack.shape and np.allclose(controller.labels_layer.scale, (2.0, 0.5, 0.5))
    for z in range(10):
        if z in (1, 2, 3, 4, 5, 7):
            np.testing.assert_array_equal(labels[z] == 1, (stack[z] > 100) & ~disk((64, 64), 52, 52, 5))
        elif z == 6:
            np.testing.assert_array_equal(labels[z] == 1, corrected)
        else:
            assert not labels[z].any()
    assert not (labels == 2).any() and len(state.objects.groups) == 0
    record = controller.click_log.records[0]
    assert [type(s).__name__ for s in record.steps].count("PropagateStep") == 1  # the undone one is gone
    widget.close_controller()


def test_propagation_can_be_cancelled_keeping_what_was_done(make_napari_viewer, qtbot, tmp_path):
    import time

    stack = moving_cell_stack(depth=10)

    class SlowSegmenter(BrightRegionSegmenter):
        def add_click(self, row, col, positive):
            time.sleep(0.3)
            return super().add_click(row, col, positive)

    viewer = make_napari_viewer()
    viewer.add_image(stack)
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=SlowSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 30, 20), True)
    widget.propagate_panel.direction.value = "up"
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.propagate_panel.progress.value >= 1, timeout=20000)
    controller.reset_object()  # Esc while it runs: cancel, keep the slices done
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    done = sorted(k[0] for k, o in controller.state.objects.slices.items() if o.from_propagation)
    assert 1 <= len(done) < 6 and done == list(range(2, 2 + len(done)))
    assert "cancelled" in widget.status.value
    widget.close_controller()


def test_esc_on_another_image_resets_there_and_leaves_the_propagation_running(
    make_napari_viewer, qtbot, tmp_path
):
    import time

    stack = moving_cell_stack(depth=10)

    class SlowSegmenter(BrightRegionSegmenter):
        def add_click(self, row, col, positive):
            time.sleep(0.3)
            return super().add_click(row, col, positive)

    viewer = make_napari_viewer()
    stack_layer = viewer.add_image(stack, name="stack")
    widget = docked_widget(viewer, tmp_path / "j", segmenter_factory=SlowSegmenter)
    controller = widget.controller
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 30, 20), True)
    widget.propagate_panel.direction.value = "up"
    widget.propagate_panel.run_button.clicked.emit()
    run = controller.propagation
    assert run is not None

    flat = viewer.add_image(stack[3], name="flat")  # a second, 2D image, annotated while the stack propagates
    widget.image_menu.value = flat
    assert controller.state.layer is flat
    controller.add_click_world((30, 24), True)
    assert controller.current_object(create=False).has_object
    controller.reset_object()  # Esc here: this image's object goes, the stack's propagation goes on
    obj = controller.current_object(create=False)
    assert obj is None or not obj.has_object
    assert not run.cancelled

    qtbot.waitUntil(lambda: controller.propagation is None, timeout=30000)
    # the status names the image it ran on: its keys (N, C, Ctrl+Z) act on the image chosen
    assert "FCFI: 'stack': propagated to 6 slice(s)" in widget.status.value, widget.status.value
    assert "choose 'stack' in Image, then Ctrl+Z" in widget.status.value
    widget.image_menu.value = stack_layer
    done = sorted(k[0] for k, o in controller.state.objects.slices.items() if o.from_propagation)
    assert done == [2, 3, 4, 5, 6, 7]  # it ran to the object's end
    widget.close_controller()
