"""The dock on a small screen, and what the widget says: scrolling, wrapped status, names, channels, selection."""

from __future__ import annotations

import numpy as np
from plugin.test_widget import fake_cache, make_widget
from qtpy.QtCore import QPoint
from qtpy.QtWidgets import QApplication, QScrollArea

from helpers.qt_mouse import click as qt_click
from helpers.standins import DiskSegmenter
from napari_fcfi.plugin.channels import channel_choices, guess_channels, misplaced_channel_axis
from napari_fcfi.plugin.models import DEFAULT_MODEL
from napari_fcfi.plugin.widget import FCFIWidget


def _inside_viewport(scroll: QScrollArea, widget) -> bool:
    top_left = widget.mapTo(scroll.viewport(), QPoint(0, 0))
    bottom = top_left.y() + widget.height()
    return top_left.y() >= 0 and bottom <= scroll.viewport().height()


def test_dock_scrolls_in_a_768_px_high_window(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.float32), name="a")
    widget = make_widget(viewer, tmp_path)
    window = viewer.window._qt_window
    window.resize(1024, 768)
    for _ in range(3):
        QApplication.processEvents()
    assert window.height() <= 768, "the dock forces napari taller than the screen"
    scroll = widget.form.root_native_widget
    assert isinstance(scroll, QScrollArea) and scroll.isVisible()
    assert scroll.minimumSizeHint().height() < 200  # the form never sets napari's minimum height
    assert scroll.viewport().height() < widget.form.native.sizeHint().height()  # it does not fit: it scrolls
    assert scroll.verticalScrollBar().maximum() > 0
    # every control can be reached: scrolling brings the last ones into view
    widget.status.value = "FCFI: " + "a long message that must wrap instead of widening the dock " * 3
    QApplication.processEvents()
    for control in (widget.buttons["commit"], widget.adapt_panel.save_button):
        scroll.ensureWidgetVisible(control.native)
        QApplication.processEvents()
        assert _inside_viewport(scroll, control.native), control
    # the status line is below the scrolling form, in view wherever the form is scrolled to
    status = widget.status.native
    assert not scroll.isAncestorOf(status) and status.isVisible()
    for position in (0, scroll.verticalScrollBar().maximum()):
        scroll.verticalScrollBar().setValue(position)
        QApplication.processEvents()
        top = status.mapTo(widget.native, QPoint(0, 0)).y()
        assert top >= 0 and top + status.height() <= widget.native.height()
    assert widget.status.native.wordWrap()
    assert widget.native.width() <= 480  # the long status wrapped instead of widening the dock
    scroll.verticalScrollBar().setValue(0)
    viewer.screenshot(str(tmp_path / "dock_768.png"), canvas_only=False)


def test_names_say_what_they_do(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="a")
    widget = make_widget(viewer, tmp_path)
    assert widget.propagate_panel.direction.label == "Direction"  # "Propagate" is only the button
    assert "min" in widget.adapt_panel.minutes.label
    assert widget.adapt_panel.save_file.label.startswith("Save adapted to")


def test_model_menu_names_the_model_in_use(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="a")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    controller.model_cache.put("adapted from default", "cpu", object())
    controller.update(model_source="adapted from default")  # what a kept adaptation does
    assert widget.model_menu.value == "adapted from default"
    assert widget.model_info.value.startswith("adapted from default")
    viewer.add_labels(np.zeros((64, 64), np.uint8))  # napari resets the menus' choices: the entry stays
    assert widget.model_menu.value == "adapted from default"
    assert controller.settings.model_source == "adapted from default"
    widget.model_menu.value = DEFAULT_MODEL
    assert controller.settings.model_source == DEFAULT_MODEL
    widget.model_menu.value = "adapted from default"  # still offered after a revert
    assert controller.settings.model_source == "adapted from default"


def test_click_with_the_labels_layer_selected_says_where_it_went(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.float32), name="a")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    qt_click(viewer, (20, 20))
    assert controller.commit()
    labels = controller.labels_layer
    viewer.layers.selection.active = labels
    assert "'a labels' is selected" in widget.status.value and "to annotate" in widget.status.value
    qt_click(viewer, (40, 40))  # napari sends it to the labels layer (pan/zoom): no FCFI click
    assert len(controller.points_layer.data) == 0
    viewer.layers.selection.active = controller.points_layer
    qt_click(viewer, (40, 40))
    assert len(controller.points_layer.data) == 1


def test_a_small_leading_axis_is_taken_for_channels(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 40, 50), np.float32), name="cyx")
    widget = FCFIWidget(
        viewer, model_cache=fake_cache(), segmenter_factory=DiskSegmenter, journal_root=tmp_path / "j"
    )
    assert widget.channel_menu.value == (0, None)
    assert widget.controller.geometry.label_shape == (40, 50)
    assert "axis 0 taken as 3 channels" in widget.status.value and "grayscale" in widget.status.value
    widget.channel_menu.value = (None, None)  # the user says it is a stack
    assert widget.controller.geometry.label_shape == (3, 40, 50)
    viewer.dims.set_current_step(0, 0)
    assert widget.controller.add_click_world((0, 20, 20), True)
    widget.controller.commit()  # (done when the prediction arrives)
    qtbot.waitUntil(lambda: widget.controller.labels_layer is not None, timeout=20000)
    stacked = widget.controller.labels_layer
    # back to channels: those labels no longer fit; the status says so (retest 2026-12-06: silent)
    widget.channel_menu.value = (0, None)
    assert widget.controller.labels_layer is None and stacked in viewer.layers
    assert "'cyx labels' does not fit the image read this way" in widget.status.value, widget.status.value
    widget.channel_menu.value = (None, None)
    assert widget.controller.labels_layer is stacked
    # one channel chosen: the canvas shows it (retest: it kept showing channel 0, annotated blind)
    viewer.dims.set_current_step(0, 0)
    widget.channel_menu.value = (0, 2)
    assert viewer.dims.current_step[0] == 2

    stack = viewer.add_image(np.zeros((12, 40, 50), np.float32), name="zyx")
    assert guess_channels(stack) == ((None, None), "")
    named = viewer.add_image(
        np.zeros((3, 40, 50), np.float32), name="short stack", axis_labels=("z", "y", "x")
    )
    assert guess_channels(named)[0] == (None, None)
    tagged = viewer.add_image(np.zeros((6, 40, 50), np.float32), name="six", metadata={"axes": "CYX"})
    # six channels: the network sees at most three at once, so channel 0 (no composite is offered)
    assert guess_channels(tagged)[0] == (0, 0) and "axis 0 is named 'c'" in guess_channels(tagged)[1]
    assert (0, None) not in [value for _text, value in channel_choices(tagged)]
    rgba = viewer.add_image(np.zeros((4, 40, 50), np.uint8), name="rgba", metadata={"axes": "CYX"})
    assert guess_channels(rgba)[0] == (0, None)  # 4 channels of uint8: RGBA, one composite
    # four unnamed entries of uint16: a short stack (no composite fits four such channels)
    short = viewer.add_image(np.zeros((4, 40, 50), np.uint16), name="four")
    assert guess_channels(short) == ((None, None), "")
    widget.reset_choices()
    widget.image_menu.value = short
    assert widget.controller.geometry.label_shape == (4, 40, 50)
    widget.reset_choices()  # (napari does this for a docked widget)
    widget.image_menu.value = stack
    assert widget.controller.geometry.label_shape == (12, 40, 50)

    # ImageJ's Z, C, Y, X: napari cannot align labels with a second-axis channel; the widget says how to
    # split it, and propagates along the 20 slices, not across the 2 channels
    zcyx = viewer.add_image(np.zeros((20, 2, 40, 50), np.uint16), name="zcyx")
    widget.reset_choices()
    widget.image_menu.value = zcyx
    assert "axis 1 (2 entries) looks like channels" in widget.status.value, widget.status.value
    assert "channel_axis=1" in widget.status.value  # napari's Split Stack would split axis 0 (the slices)
    assert widget.propagate_panel.axis.value == 0
    named = viewer.add_image(
        np.zeros((3, 5, 40, 50), np.uint16), name="tcyx", axis_labels=("t", "c", "y", "x")
    )
    assert misplaced_channel_axis(named) == 1
    czyx = viewer.add_image(np.zeros((2, 20, 40, 50), np.uint16), name="czyx")
    assert misplaced_channel_axis(czyx) is None
    tzyx = viewer.add_image(np.zeros((3, 20, 40, 50), np.uint16), name="tzyx")
    widget.reset_choices()
    widget.image_menu.value = tzyx
    assert "looks like channels" not in widget.status.value
    assert widget.propagate_panel.axis.value == 1  # z (20 slices), not t (3 time points)
    widget.close_controller()


def test_long_names_and_the_recovery_banner_keep_every_button_in_the_dock(make_napari_viewer, tmp_path):
    from qtpy.QtWidgets import QPushButton

    viewer = make_napari_viewer(show=True)
    name = "2026-12-05_confocal_HeLa_H2B-GFP_timelapse_position_17_deconvolved_max_projection_" * 2
    viewer.add_image(np.zeros((64, 64), np.float32), name=name)
    widget = make_widget(viewer, tmp_path)
    window = viewer.window._qt_window
    window.resize(1280, 900)
    controller = widget.controller
    controller.add_click_world((30, 30), True)
    assert controller.commit()
    viewer.layers.remove(controller.labels_layer)  # its journal is now offered for recovery
    widget.recovery.refresh(force=True)
    for _ in range(3):
        QApplication.processEvents()
    assert widget.recovery.visible and widget.recovery.offers
    assert widget.native.width() <= 480, widget.native.width()
    assert widget.native.minimumSizeHint().width() <= 460  # nothing asks for more than the dock
    for button in widget.native.findChildren(QPushButton):
        if not button.isVisible():
            continue
        left = button.mapTo(widget.native, QPoint(0, 0)).x()
        assert left >= 0 and left + button.width() <= widget.native.width(), button.text()
    viewer.screenshot(str(tmp_path / "long_names.png"), canvas_only=False)


def test_the_recovery_banner_wraps_its_text_instead_of_eliding_it(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    name = "2026-12-05_confocal_HeLa_H2B-GFP_timelapse_position_17_deconvolved"
    viewer.add_image(np.zeros((64, 64), np.float32), name=name)
    widget = make_widget(viewer, tmp_path)
    viewer.window._qt_window.resize(1280, 900)
    controller = widget.controller
    controller.add_click_world((30, 30), True)
    assert controller.commit()
    viewer.layers.remove(controller.labels_layer)  # its journal is now offered for recovery
    widget.recovery.refresh(force=True)
    for _ in range(3):
        QApplication.processEvents()
    banner = widget.recovery
    assert banner.visible
    shown = {label: label.native.text().replace("\u200b", "") for label in (banner.title, banner.details)}
    assert name in shown[banner.title] and f"{name} labels" in shown[banner.details]  # whole, not elided
    assert "…" not in shown[banner.title] + shown[banner.details]
    for label in (banner.title, banner.details):
        native = label.native
        assert native.wordWrap()
        assert native.height() >= native.heightForWidth(native.width()), native.text()  # no line cut off
        right = native.mapTo(widget.native, QPoint(0, 0)).x() + native.width()
        assert right <= widget.native.width()
    assert widget.native.width() <= 480, widget.native.width()
    widget.close_controller()


def test_later_hides_the_recovery_banner_until_another_image_was_chosen(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    first = viewer.add_image(np.zeros((64, 64), np.float32), name="first")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    controller.add_click_world((30, 30), True)
    assert controller.commit()
    viewer.layers.remove(controller.labels_layer)  # its journal is now offered for recovery
    widget.recovery.refresh(force=True)
    assert not widget.recovery.native.isHidden() and widget.recovery.offers
    widget.recovery.later_button.clicked.emit()
    assert widget.recovery.native.isHidden() and "unsaved work kept on disk" in widget.status.value
    widget.recovery.refresh(force=True)  # a commit, a layer change: still hidden for this image
    assert widget.recovery.native.isHidden() and widget.recovery.offers
    second = viewer.add_image(np.ones((64, 64), np.float32), name="second")
    widget.reset_choices()
    widget.image_menu.value = second
    widget.image_menu.value = first  # back: the offer shows again, nothing was lost
    assert not widget.recovery.native.isHidden() and len(widget.recovery.offers) == 1
    widget.close_controller()


def test_recovery_menu_entries_keep_when_and_how_much_and_cut_the_name():
    from napari_fcfi.plugin.recovery_banner import elide

    entry = "1. 12-06 04:30:12 · 20 obj, 3 edit(s) · '00071198d059ba7f_image labels'"
    shown = elide(entry, 56, keep_start=True)
    assert len(shown) == 56 and shown.startswith("1. 12-06 04:30:12 · 20 obj, 3 edit(s) · '0007")
    assert shown.endswith("…") and elide("short", 56, keep_start=True) == "short"
    assert elide(entry, 21) == "1. 12-06 0…ge labels'"  # the middle cut, for names alone
