"""Nothing may lose, misplace or silently change a user's labels: each recipe from the plugin issue,
driven in a real viewer (real Qt mouse events on the canvas where the mouse matters)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from helpers.plugin import make_controller
from helpers.qt_mouse import camera_of, click, press_drag_release
from helpers.standins import DiskSegmenter, disk
from helpers.widgets import docked_widget


def shown_viewer(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)  # test only: a canvas of known size for the mouse
    return viewer


def test_panning_adds_no_click_and_a_click_adds_one(make_napari_viewer, qtbot, tmp_path):
    viewer = shown_viewer(make_napari_viewer)
    viewer.add_image(np.zeros((100, 120), np.float32))
    widget = docked_widget(viewer, tmp_path / "j")
    qtbot.wait(50)
    viewer.reset_view()
    points = widget.controller.points_layer
    center = tuple(camera_of(viewer).center)
    press_drag_release(viewer, (40, 40), screen_offset=(60, 80))  # a left-drag pan
    assert tuple(camera_of(viewer).center) != center  # napari really panned
    assert len(points.data) == 0 and not widget.controller.preview_layer.data.any()
    data_events = []
    points.events.data.connect(lambda event: data_events.append(str(event.action)))
    click(viewer, (50, 60))
    assert len(points.data) == 1 and widget.controller.preview_layer.data.any()
    np.testing.assert_allclose(points.data[0], (50, 60), atol=1.0)
    # The cheap click path: one "added" data event (each makes napari recompute the viewer's dims)
    # and no selection of the new point (napari's selection update costs more than the rest).
    assert data_events == ["added"] and not points.selected_data
    click(viewer, (20, 20), button=Qt.MouseButton.RightButton)
    assert list(points.features["positive"]) == [True, False]
    press_drag_release(viewer, (50, 50), screen_offset=(2, 1))  # a hand that shakes a little: still a click
    assert len(points.data) == 3
    widget.close_controller()


def test_commits_go_to_the_chosen_images_own_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    image_a = viewer.add_image(np.zeros((256, 256), np.float32), name="A", scale=(0.3, 0.3), translate=(5, 7))
    image_b = viewer.add_image(np.zeros((256, 256), np.float32), name="B")
    controller = make_controller(viewer, image_a)
    controller.add_click_world((5 + 0.3 * 100, 7 + 0.3 * 120), True)
    controller.commit()
    labels_a = controller.labels_layer
    assert labels_a.name == "A labels" and np.allclose(labels_a.scale, (0.3, 0.3))
    controller.set_image_layer(image_b)
    assert controller.labels_layer is None  # A's labels are not B's
    controller.add_click_world((50, 60), True)
    controller.commit()
    labels_b = controller.labels_layer
    assert labels_b is not labels_a and labels_b.name == "B labels" and np.allclose(labels_b.scale, (1, 1))
    np.testing.assert_array_equal(labels_b.data == 1, disk((256, 256), 50, 60))
    assert (
        set(np.unique(labels_a.data)) == {0, 1}
        and (labels_a.data == 1).sum() == disk((256, 256), 100, 120).sum()
    )
    # A labels layer chosen by the user that does not fit is refused with the reason
    try:
        controller.set_labels_layer(labels_a)
    except ValueError as error:
        assert "scale" in str(error)
    else:
        raise AssertionError("a labels layer with another scale must be refused")
    controller.set_image_layer(image_a)
    assert controller.labels_layer is labels_a  # back to A: its own labels again


def test_closing_the_widget_detaches_it_and_reopening_reuses_the_helpers(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32), name="cells")
    widget = docked_widget(viewer, tmp_path / "j")
    controller = widget.controller
    controller.add_click_world((10, 10), True)
    clicks = controller.points_layer
    bound = {str(k) for k in clicks.keymap}
    assert "Space" in bound
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    assert controller._closed
    assert not any(str(k) == "Space" for k in clicks.keymap)  # key bindings gone
    assert controller.mouse_callback not in image.mouse_drag_callbacks
    before = len(clicks.data)
    clicks.add([[20, 20]])  # the layer still exists (it has clicks) but no widget reacts any more
    assert controller.state is None and len(clicks.data) == before + 1
    again = docked_widget(viewer, tmp_path / "j")
    helpers = [layer for layer in viewer.layers if "FCFI" in layer.name]
    assert len(helpers) == 2  # reused, not duplicated
    assert again.controller.points_layer is clicks
    np.testing.assert_array_equal(
        again.controller.preview_layer.data > 0, disk((40, 40), 10, 10) | disk((40, 40), 20, 20)
    )
    again.controller.commit()
    assert len([layer for layer in viewer.layers if layer.name == "cells labels"]) == 1
    # closed with no clicks left: the empty helper layers go with it
    viewer.window.remove_dock_widget(again.native)
    assert not any("FCFI" in layer.name for layer in viewer.layers)


def test_markers_keep_a_small_fixed_size_on_screen(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((4096, 4096), np.uint8))
    widget = docked_widget(viewer, tmp_path / "j")
    controller = widget.controller
    controller.add_click_world((2048, 2048), True)
    assert controller.points_layer.canvas_size_limits[1] <= 12
    viewer.reset_view()
    controller.preview_layer.visible = False

    def green_pixels() -> int:
        shot = viewer.screenshot(canvas_only=True, flash=False)
        return int(((shot[..., 1] > 200) & (shot[..., 0] < 120) & (shot[..., 2] < 120)).sum())

    whole = green_pixels()
    assert 0 < whole < 400  # a few pixels, not 3 % of the image side
    viewer.camera.zoom = viewer.camera.zoom * 16
    close = green_pixels()
    assert 0.5 * whole < close < 2 * whole  # the same size on screen zoomed in
    controller.add_click_world((2048, 2100), True)  # a new marker gets the size of this zoom
    assert 0.5 * whole < green_pixels() - close < 2 * whole
    widget.close_controller()


def test_a_slice_without_clicks_shows_no_marker(make_napari_viewer, tmp_path):
    """napari draws a size-0 placeholder point at the grid's origin where a slice has no points: no lower
    marker size limit may turn it into a dot in the image's corner."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((8, 64, 64), np.uint8))  # 8 slices (3 would be taken for channels)
    widget = docked_widget(viewer, tmp_path / "j")
    controller = widget.controller
    viewer.dims.set_current_step(0, 0)
    controller.add_click_world((0, 32, 32), True)
    controller.preview_layer.visible = False
    viewer.dims.set_current_step(0, 2)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert int(shot[..., :3].max()) < 60, "a marker is drawn on a slice without clicks"
    viewer.dims.set_current_step(0, 0)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert ((shot[..., 1] > 200) & (shot[..., 0] < 120)).any()  # the click itself is drawn
    widget.close_controller()


def test_label_ids_beyond_the_dtype_are_refused_with_a_message(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32))
    labels = viewer.add_labels(np.zeros((40, 40), np.uint16))
    controller = make_controller(viewer, image)
    controller.set_labels_layer(labels)
    controller.update(label_id=70000)
    controller.add_click_world((20, 20), True)
    assert not controller.commit()
    assert "70000 does not fit" in viewer.status and "uint16" in viewer.status
    assert not labels.data.any() and len(controller.current_object().clicks) == 1  # nothing lost
    controller.update(label_id=65535)
    assert controller.commit() and (labels.data == 65535).sum() == disk((40, 40), 20, 20).sum()


def test_no_slivers_and_clean_paint_over(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((60, 60), np.float32))
    existing = np.zeros((60, 60), np.int32)
    existing[disk((60, 60), 30, 30, 7)] = 4
    labels = viewer.add_labels(existing.copy())
    controller = make_controller(viewer, image)
    controller.set_labels_layer(labels)
    controller.add_click_world((30, 31), True)  # a disk of radius 5 inside label 4's radius 7
    assert not controller.commit() and "sliver" in viewer.status
    np.testing.assert_array_equal(labels.data, existing)
    controller.update(overwrite=True)
    assert controller.commit()
    assert not (labels.data == 4).any()  # the thin ring label 4's boundary left joined the new object
    assert (labels.data == 5).sum() == (existing == 4).sum() + (
        disk((60, 60), 30, 31) & (existing == 0)
    ).sum()


def test_hidden_clicks_layer_takes_no_clicks(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((30, 30), np.float32))
    controller = make_controller(viewer, image)
    controller.points_layer.visible = False
    assert not controller.add_click_world((10, 10), True)
    assert "hidden" in viewer.status and len(controller.points_layer.data) == 0


def test_a_click_on_a_blank_image_says_the_mask_is_a_guess(make_napari_viewer):
    from helpers.standins import BlobNet
    from napari_fcfi.engine import InteractiveSegmenter

    viewer = make_napari_viewer()
    blank = viewer.add_image(np.full((48, 48), 9, np.uint16), name="blank")
    cells = viewer.add_image(np.pad(np.full((16, 16), 900, np.uint16), 16), name="cells")

    def factory(model):
        return InteractiveSegmenter(BlobNet(radius=5.0, brightness_weight=8.0).eval(), input_size=48)

    controller = make_controller(viewer, blank, factory=factory)
    controller.add_click_world((24, 24), True)
    assert "no contrast" in viewer.status and "guess" in viewer.status
    assert controller.current_object().mask is not None  # the user still gets the mask, told what it is
    controller.set_image_layer(cells)
    viewer.status = ""
    controller.add_click_world((24, 24), True)
    assert "no contrast" not in viewer.status
    # a click on pixels without data (NaN: outside a stitched field) is told too (retest 2026-12-06)
    holed = np.pad(np.full((16, 16), 900.0, np.float32), 16)
    holed[:10, :10] = np.nan
    controller.set_image_layer(viewer.add_image(holed, name="holed"))
    viewer.status = ""
    controller.add_click_world((5, 5), True)
    assert "without data" in viewer.status and "guess" in viewer.status, viewer.status
    controller.reset_object()
    viewer.status = ""
    controller.add_click_world((24, 24), True)
    assert "without data" not in viewer.status
    # in a stack the message names its slice: it stays on screen after the user moves on
    stack = np.stack([np.pad(np.full((16, 16), 900, np.uint16), 16)] * 3)
    stack[1] = 9
    controller.set_image_layer(viewer.add_image(stack, name="stack"))
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 24, 24), True)
    assert "no contrast" in viewer.status and viewer.status.endswith("(slice 1)"), viewer.status


def test_a_labels_layer_with_every_id_in_use_is_shown_as_full(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.float32), name="a")
    full = viewer.add_labels(np.arange(256, dtype=np.uint8).reshape(16, 16), name="full")
    widget = docked_widget(viewer, tmp_path / "j")
    widget.labels_menu.value = full
    assert not widget.label_id.enabled and "in use" in widget.label_id.tooltip
    assert "every label id of 'full' (uint8) is in use" in widget.status.value
    widget.controller.add_click_world((8, 8), True)
    assert not widget.controller.commit()
    np.testing.assert_array_equal(full.data, np.arange(256).reshape(16, 16))  # nothing overwritten
    widget.labels_menu.value = viewer.add_labels(np.zeros((16, 16), np.uint16), name="roomy")
    assert widget.label_id.enabled and widget.label_id.value == 1
    assert "label id 1 is free" in widget.status.value  # the "full" message does not outlive it
    widget.close_controller()


def test_a_refused_commit_says_the_object_stays_and_a_far_click_does_not_merge_into_it(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((60, 60), np.float32))
    existing = np.zeros((60, 60), np.int32)
    existing[disk((60, 60), 30, 30, 7)] = 4
    labels = viewer.add_labels(existing.copy())
    controller = make_controller(viewer, image)
    controller.set_labels_layer(labels)
    controller.add_click_world((30, 31), True)  # inside label 4: the commit is refused (a sliver)
    assert not controller.commit()
    assert "sliver" in viewer.status and "stays in progress" in viewer.status and "Esc" in viewer.status
    obj = controller.current_object()
    assert not controller.add_click_world((10, 50), True)  # meant for another nucleus: not merged
    assert "still in progress" in viewer.status and "Esc" in viewer.status, viewer.status
    assert len(obj.clicks) == 1 and not obj.mask[10, 50]
    assert controller.add_click_world((30, 38), True)  # corrections of the object itself still work
    assert controller.add_click_world((30, 26), False)
    assert len(controller.current_object().clicks) == 3
    controller.reset_object()  # Esc: the refused object goes, the next click starts a new one
    assert controller.add_click_world((10, 50), True)
    assert controller.commit()
    np.testing.assert_array_equal(labels.data == 5, disk((60, 60), 10, 50))
    np.testing.assert_array_equal(labels.data == 4, existing == 4)


def test_a_refused_object_is_remembered_on_its_slice_while_another_slice_commits(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((3, 60, 60), np.float32))
    existing = np.zeros((3, 60, 60), np.int32)
    existing[0][disk((60, 60), 30, 30, 7)] = 4
    labels = viewer.add_labels(existing.copy())
    controller = make_controller(viewer, image)
    controller.set_labels_layer(labels)
    viewer.dims.set_current_step(0, 0)
    controller.add_click_world((0, 30, 31), True)  # inside label 4: refused (a sliver)
    assert not controller.commit()
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 10, 10), True)
    assert controller.commit()  # another slice's commit
    viewer.dims.set_current_step(0, 0)
    assert not controller.add_click_world((0, 10, 50), True)  # still not merged into the refused one
    assert "still in progress" in viewer.status


def test_a_commit_refused_after_its_prediction_arrives_says_the_object_stays(make_napari_viewer, qtbot):
    from napari_fcfi.plugin.worker import ThreadedRunner

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((60, 60), np.float32))
    existing = np.zeros((60, 60), np.int32)
    existing[disk((60, 60), 30, 30, 7)] = 4
    labels = viewer.add_labels(existing.copy())
    controller = make_controller(
        viewer, image, runner=ThreadedRunner(), factory=lambda model: DiskSegmenter(model, delay=0.3)
    )
    controller.set_labels_layer(labels)
    controller.add_click_world((30, 31), True)
    assert not controller.commit() and "when the prediction finishes" in viewer.status  # deferred
    qtbot.waitUntil(lambda: "stays in progress" in viewer.status, timeout=10000)
    assert "sliver" in viewer.status
    assert not controller.add_click_world((10, 50), True) and "still in progress" in viewer.status
    controller.close()


def test_the_label_id_box_shows_no_id_when_a_uint8_layer_is_full(make_napari_viewer, tmp_path):
    """It kept showing the id of the layer before (2 after a first commit) while disabled."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.float32), name="a")
    widget = docked_widget(viewer, tmp_path / "j")
    widget.controller.add_click_world((8, 8), True)
    assert widget.controller.commit() and widget.label_id.value == 2
    full = viewer.add_labels(np.arange(256, dtype=np.uint8).reshape(16, 16), name="full")
    widget.labels_menu.value = full
    assert not widget.label_id.enabled and widget.label_id.value == 0
    assert widget.label_id.label == "Label id: none free"
    assert "every label id of 'full' (uint8) is in use" in widget.status.value
    full.data = np.where(full.data == 7, 0, full.data).astype(np.uint8)  # the user frees id 7
    widget.labels_menu.value = viewer.layers["a labels"]
    widget.labels_menu.value = full
    assert widget.label_id.enabled and widget.label_id.value == 7 and widget.label_id.label == "Label id"
    widget.close_controller()
