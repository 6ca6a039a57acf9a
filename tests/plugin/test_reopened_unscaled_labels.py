"""Labels of a scaled image saved with napari's own .tif writer (which keeps no scale or translate) and
opened again: the plugin offers them (most likely the same labels) and gives them the image's scale,
or says which layer it passed over and why; never a silent new layer whose ids repeat the old ones."""

from __future__ import annotations

import numpy as np

from helpers.standins import disk
from helpers.widgets import docked_widget

SCALE, TRANSLATE = (0.5, 0.5), (10.0, -4.0)
SHAPE = (60, 60)


def world(row, col):
    return (row * SCALE[0] + TRANSLATE[0], col * SCALE[1] + TRANSLATE[1])


def annotated_then_reopened(make_napari_viewer, tmp_path, file_name):
    """A scaled image, one committed object, its labels saved by napari to ``file_name`` (.tif) and
    opened again as labels in place of the original layer."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros(SHAPE, np.float32), name="cells", scale=SCALE, translate=TRANSLATE)
    widget = docked_widget(viewer, tmp_path / "j")
    controller = widget.controller
    assert controller.add_click_world(world(20, 20), True) and controller.commit()
    original = controller.labels_layer
    viewer.layers.selection = {original}
    (written,) = viewer.layers.save(str(tmp_path / file_name), selected=True, plugin="napari")
    viewer.layers.remove(original)
    (reopened,) = viewer.open(written, plugin="napari", layer_type="labels")
    assert reopened.data[20, 20] == 1
    return viewer, widget, reopened


def test_reopened_own_labels_get_the_image_scale_and_take_the_next_commit(make_napari_viewer, tmp_path):
    viewer, widget, reopened = annotated_then_reopened(make_napari_viewer, tmp_path, "cells labels.tif")
    controller = widget.controller
    # the image's own labels: taken (and given the image's scale) as soon as they are opened
    assert controller.labels_layer is reopened and tuple(reopened.scale) == SCALE
    assert controller.add_click_world(world(45, 45), True) and controller.commit()
    assert controller.labels_layer is reopened and tuple(reopened.scale) == SCALE
    assert tuple(reopened.translate) == TRANSLATE
    assert reopened.data[45, 45] == 2 and reopened.data[20, 20] == 1  # a fresh id, the old object kept
    status = widget.status.value
    assert "into 'cells labels'" in status and "had scale 1" in status and "(0.5, 0.5)" in status, status
    assert [layer.name for layer in viewer.layers if layer.name.startswith("cells labels")] == [
        "cells labels"
    ]
    widget.close_controller()


def test_reopened_labels_of_another_name_are_offered_and_named_when_passed_over(make_napari_viewer, tmp_path):
    viewer, widget, reopened = annotated_then_reopened(make_napari_viewer, tmp_path, "export.tif")
    controller = widget.controller
    assert tuple(reopened.scale) == (1, 1)  # napari's .tif keeps no scale; another name: not taken
    assert reopened in [layer for _, layer in widget._labels_choices()]  # offered in the Labels menu
    # not chosen: the next commit goes to a new layer, and the status says why 'export' was not used
    assert controller.add_click_world(world(45, 45), True) and controller.commit()
    status = widget.status.value
    assert "'export' was not used" in status and "scale 1" in status and "choose it under Labels" in status
    assert tuple(reopened.scale) == (1, 1)  # never changed unless chosen
    viewer.layers.remove(controller.labels_layer)
    # chosen: it takes the image's scale and translate, and the next commit goes into it
    widget.labels_menu.value = reopened
    assert tuple(reopened.scale) == SCALE and tuple(reopened.translate) == TRANSLATE
    assert "'export' had scale 1" in widget.status.value, widget.status.value
    assert controller.add_click_world(world(45, 10), True) and controller.commit()
    np.testing.assert_array_equal(reopened.data == 2, disk(SHAPE, 45, 10))
    assert reopened.data[20, 20] == 1
    widget.close_controller()


def test_labels_made_for_another_unscaled_image_are_not_offered_nor_rescaled(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    plain = viewer.add_image(np.zeros(SHAPE, np.float32), name="plain")
    viewer.add_image(np.zeros(SHAPE, np.float32), name="cells", scale=SCALE, translate=TRANSLATE)
    widget = docked_widget(viewer, tmp_path / "j")
    widget.image_menu.value = plain
    controller = widget.controller
    assert controller.add_click_world((20, 20), True) and controller.commit()
    plains = controller.labels_layer  # "plain labels": scale 1, made for the unscaled image
    widget.image_menu.value = viewer.layers["cells"]
    assert plains not in [layer for _, layer in widget._labels_choices()]
    assert controller.add_click_world(world(40, 40), True) and controller.commit()
    assert controller.labels_layer is not plains and tuple(plains.scale) == (1, 1)
    widget.close_controller()
