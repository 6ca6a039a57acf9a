"""The widget gets napari's public-only proxy of the viewer: its layers are proxies while layer events
carry the real layers. Removing a layer must still be recognised (issue 25 item 1), driven with the
real mouse, keys and the layer list's delete button."""

from __future__ import annotations

import numpy as np
from napari.utils._proxies import PublicOnlyProxy  # test only: what napari hands a plugin widget
from qtpy.QtCore import Qt

from helpers.qt_mouse import canvas_widget, click
from helpers.standins import DiskSegmenter, disk
from helpers.widgets import stand_in_model_cache
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner


def proxied_widget(viewer, tmp_path):
    widget = FCFIWidget(
        PublicOnlyProxy(viewer),
        model_cache=stand_in_model_cache(),
        segmenter_factory=DiskSegmenter,
        runner=ImmediateRunner(),
        journal_root=tmp_path / "j",
    )
    viewer.window.add_dock_widget(widget, name="FCFI", area="right")
    return widget


def press_key(viewer, qtbot, key, modifier=Qt.KeyboardModifier.NoModifier):
    canvas = canvas_widget(viewer)
    canvas.setFocus()
    qtbot.keyClick(canvas, key, modifier)


def test_commits_after_deleting_the_labels_layer_go_to_a_new_layer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)
    viewer.add_image(np.zeros((100, 120), np.float32), name="cells")
    widget = proxied_widget(viewer, tmp_path)
    qtbot.wait(50)
    viewer.reset_view()
    click(viewer, (30, 30))
    press_key(viewer, qtbot, Qt.Key.Key_Space)
    first = widget.controller.labels_layer
    assert first is not None and (np.asarray(first.data) == 1).sum() == disk((100, 120), 30, 30).sum()

    # delete it as a user does: select it in the layer list, press the trash button
    viewer.layers.selection.active = viewer.layers["cells labels"]
    viewer.window._qt_viewer.layerButtons.deleteButton.click()
    qtbot.wait(20)
    assert "cells labels" not in [layer.name for layer in viewer.layers]
    assert widget.controller.labels_layer is None and "was removed" in widget.status.value

    click(viewer, (70, 80))
    press_key(viewer, qtbot, Qt.Key.Key_Space)
    labels = [layer for layer in viewer.layers if layer.name.startswith("cells labels")]
    assert len(labels) == 1, "the commit must land in a labels layer the user can see"
    np.testing.assert_array_equal(np.asarray(labels[0].data) > 0, disk((100, 120), 70, 80))
    assert "committed label 1" in widget.status.value

    # removing the image takes its helper layers (proxies as well) with it, in one batch: napari runs a
    # full garbage collection (0.3-0.6 s) per removal outside a batch
    batches = []
    viewer.layers.events.end_batch.connect(lambda event: batches.append(event))
    viewer.layers.remove("cells")
    assert len(batches) == 1
    assert not any("FCFI" in layer.name for layer in viewer.layers)
    widget.close_controller()


def test_a_rotated_image_is_refused_with_a_message_and_takes_no_click(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)
    image = np.zeros((200, 220), np.float32)
    rotated = viewer.add_image(image, name="rotated", rotate=35)
    widget = proxied_widget(viewer, tmp_path)
    qtbot.wait(50)
    assert "rotated" in widget.status.value and widget.controller.image_layer is None
    assert not any("FCFI" in layer.name for layer in viewer.layers)  # no helpers on a wrong grid

    # an image rotated after it was chosen: a real click is refused with the reason, nothing is stored
    viewer.layers.remove(rotated)
    plain = viewer.add_image(image, name="plain")
    qtbot.wait(20)
    assert widget.controller.image_layer is plain
    plain.rotate = 20
    viewer.reset_view()
    viewer.layers.selection.active = widget.controller.points_layer
    click(viewer, tuple(np.asarray(plain.data_to_world((180, 47)))))
    assert len(widget.controller.points_layer.data) == 0
    assert "rotated" in widget.status.value
    plain.rotate = 0
    viewer.reset_view()
    click(viewer, (180, 47))  # back to scale/translate only: the click lands on the pixel under the cursor
    np.testing.assert_allclose(widget.controller.points_layer.data[0], (180, 47), atol=1.0)
    widget.close_controller()


def type_into(qtbot, spin_box, text):
    spin_box.setFocus()
    spin_box.selectAll()
    qtbot.keyClicks(spin_box, text)
    qtbot.keyClick(spin_box, Qt.Key.Key_Enter)


def test_typing_an_existing_label_id_warns_and_the_commit_is_refused(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)
    viewer.add_image(np.zeros((100, 120), np.float32), name="cells")
    widget = proxied_widget(viewer, tmp_path)
    qtbot.wait(50)
    viewer.reset_view()
    click(viewer, (30, 30))
    press_key(viewer, qtbot, Qt.Key.Key_Space)
    labels = widget.controller.labels_layer
    first = np.asarray(labels.data).copy()

    click(viewer, (70, 80))
    type_into(qtbot, widget.label_id.native, "1")  # the id of the object committed above
    assert widget.controller.settings.label_id == 1 and "already exists" in widget.status.value
    press_key(viewer, qtbot, Qt.Key.Key_Space)
    assert "already exists" in widget.status.value
    np.testing.assert_array_equal(np.asarray(labels.data), first)  # nothing merged into label 1
    assert widget.controller.current_object().clicks  # the object waits for a free id

    type_into(qtbot, widget.label_id.native, "7")
    assert "already exists" not in widget.status.value  # the warning went with the id it was about
    assert "label id 7" in widget.status.value
    press_key(viewer, qtbot, Qt.Key.Key_Space)
    np.testing.assert_array_equal(np.asarray(labels.data) == 7, disk((100, 120), 70, 80))
    np.testing.assert_array_equal(np.asarray(labels.data) == 1, first == 1)
    widget.close_controller()
