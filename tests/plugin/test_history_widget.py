"""One action history per image, driven with the real mouse and keys (issue 25 items 4 and 9):
Ctrl+Z / Ctrl+Shift+Z walk clicks, propagations, resets and edits both ways; Esc on one slice of a
propagated object takes back only what it says and can be undone."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from helpers.qt_mouse import canvas_widget, click
from helpers.standins import BrightRegionSegmenter, disk
from helpers.widgets import docked_widget

CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


def moving_cell_stack(depth=10, size=64):
    stack = np.full((depth, size, size), 10, np.uint16)
    for z in range(1, 8):
        stack[z][disk((size, size), 30, 18 + 2 * z, 7)] = 200
    return stack


def press(viewer, qtbot, key, modifiers=Qt.KeyboardModifier.NoModifier):
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    qtbot.keyClick(canvas, key, modifiers)


def objects_state(state):
    """Clicks and masks of every slice (what undo/redo must bring back exactly)."""
    return {
        key: (obj.clicks, None if obj.mask is None else obj.mask.copy())
        for key, obj in state.objects.slices.items()
        if obj.has_object
    }


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key][0] == b[key][0], key
        assert (a[key][1] is None) == (b[key][1] is None), key
        if a[key][1] is not None:
            np.testing.assert_array_equal(a[key][1], b[key][1])


def test_undo_redo_of_propagation_reset_and_edit_with_real_keys(make_napari_viewer, qtbot, tmp_path):
    stack = moving_cell_stack()
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)
    viewer.add_image(stack, name="cells")
    widget = docked_widget(viewer, tmp_path / "journal", segmenter_factory=BrightRegionSegmenter)
    qtbot.wait(50)
    viewer.reset_view()
    controller, state = widget.controller, widget.controller.state
    points = controller.points_layer

    viewer.dims.set_current_step(0, 4)
    click(viewer, (30, 26))
    widget.propagate_panel.direction.value = "both"
    widget.propagate_panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: controller.propagation is None, timeout=20000)
    propagated = objects_state(state)
    assert sorted(k[0] for k in propagated) == [1, 2, 3, 4, 5, 6, 7]

    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)  # the propagation goes, the click on slice 4 stays
    assert sorted(objects_state(state)) == [(4,)] and "undid the propagation" in widget.status.value
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)  # redo: back exactly, no network run needed
    assert_same(objects_state(state), propagated)
    assert "redid the propagation" in widget.status.value

    # a correction on slice 6, then Esc there: only that correction goes, and it is undoable
    viewer.dims.set_current_step(0, 6)
    click(viewer, (30, 37), button=Qt.MouseButton.RightButton)
    corrected = objects_state(state)
    assert not corrected[(6,)][1][30, 37] and len(points.data) == 2
    press(viewer, qtbot, Qt.Key.Key_Escape)
    assert "corrections were reset" in widget.status.value
    assert_same(objects_state(state), propagated)
    assert len(points.data) == 1
    np.testing.assert_array_equal(controller.preview_layer.data > 0, propagated[(6,)][1])
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert_same(objects_state(state), corrected)
    assert len(points.data) == 2 and "nothing to undo" not in widget.status.value

    # Esc on a propagated slice without corrections: the whole object goes, said so, and comes back
    viewer.dims.set_current_step(0, 5)
    press(viewer, qtbot, Qt.Key.Key_Escape)
    assert "on all 7 slices" in widget.status.value and "Ctrl+Z" in widget.status.value
    assert objects_state(state) == {} and len(points.data) == 0
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert_same(objects_state(state), corrected)
    assert len(points.data) == 2 and len(state.objects.groups) == 1
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)  # redo the reset, undo it again
    assert objects_state(state) == {}
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert_same(objects_state(state), corrected)

    # undo walks back further in order: the correction click, the propagation, the first click
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert_same(objects_state(state), propagated)
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert objects_state(state) == {} and len(points.data) == 0
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert "nothing to undo" in widget.status.value
    for _ in range(3):
        press(viewer, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert_same(objects_state(state), corrected)

    press(viewer, qtbot, Qt.Key.Key_Space)  # commit: one label on every slice, history of it gone
    labels = controller.labels_layer.data
    assert sorted(int(z) for z in np.nonzero(labels.any(axis=(1, 2)))[0]) == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(labels[6] == 1, corrected[(6,)][1])
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
    assert "nothing to undo" in widget.status.value and (controller.labels_layer.data == 1).any()
    widget.close_controller()


def test_ctrl_z_on_the_clicks_after_a_commit_points_to_the_labels_layer(make_napari_viewer, qtbot, tmp_path):
    """Issue: Ctrl+Z with the clicks or image layer selected after a commit said only "nothing to
    undo"; it must say how the commit is undone (napari's Ctrl+Z on the labels layer), and then that works."""
    from helpers.qt_keys import undo

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)
    viewer.add_image(moving_cell_stack()[4], name="cell")
    widget = docked_widget(viewer, tmp_path / "journal", segmenter_factory=BrightRegionSegmenter)
    qtbot.wait(50)
    controller = widget.controller
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)  # nothing committed yet: the plain message
    assert widget.status.value == "FCFI: nothing to undo"
    controller.add_click_world((30, 26), True)
    assert controller.commit()
    labels = controller.labels_layer
    for active in (controller.points_layer, viewer.layers["cell"]):
        viewer.layers.selection.active = active
        press(viewer, qtbot, Qt.Key.Key_Z, CTRL)
        status = widget.status.value
        assert "undo the commit of label 1" in status and repr(labels.name) in status, status
        assert (labels.data == 1).any()  # never undone behind the user's back
    assert widget.label_id.value == 2
    viewer.layers.selection.active = labels  # what the status says to do
    undo(viewer)
    assert not labels.data.any() and len(controller.click_log) == 0
    # the widget hears of napari's undo: the status says what went, the label id box is free again
    assert widget.status.value.startswith("FCFI: undo withdrew 1 object(s) (label 1) from"), (
        widget.status.value
    )
    assert widget.label_id.value == 1
    labels.paint((10, 10), 7)  # napari's brush (one undo item of its own)
    undo(viewer)
    assert not labels.data.any()
    assert widget.status.value.startswith("FCFI: undo took back an edit of"), widget.status.value
    undo(viewer)  # nothing left: said, so the status does not keep the last undo's words
    assert widget.status.value == f"FCFI: nothing to undo in {labels.name!r}", widget.status.value
    viewer.layers.selection.active = controller.points_layer
    press(viewer, qtbot, Qt.Key.Key_Z, CTRL)  # the commit is gone: nothing left anywhere
    assert widget.status.value == "FCFI: nothing to undo"
    widget.close_controller()
