"""Every change to a labels layer the plugin writes into is journaled: FCFI commits, napari's brush,
eraser and fill, and napari's own Ctrl+Z / Ctrl+Shift+Z, driven with real Qt mouse and key events."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from helpers.qt_keys import redo, undo
from helpers.qt_mouse import click, press_drag_release
from helpers.standins import DiskSegmenter
from helpers.widgets import docked_widget, stand_in_model_cache
from napari_fcfi.annotation.journal import journals_for_image
from napari_fcfi.plugin.journaling import history_item_change, recorder_of
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner


def restored_copy(layer):
    labels, scan = recorder_of(layer).journal.restore()
    return labels, scan


@pytest.fixture
def painting_viewer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 700)  # test only: a canvas of known size for the mouse
    viewer.add_image(np.random.default_rng(1).random((80, 90)).astype(np.float32), name="cells")
    widget = docked_widget(viewer, tmp_path / "journals")
    qtbot.wait(50)
    viewer.reset_view()
    yield viewer, widget
    widget.close_controller()


def test_brush_erase_fill_and_napari_undo_redo_restore_bit_for_bit(painting_viewer, qtbot):
    viewer, widget = painting_viewer
    controller = widget.controller
    controller.add_click_world((30, 30), True)
    assert controller.commit()
    labels = controller.labels_layer
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.brush_size = 6
    labels.selected_label = 5
    press_drag_release(viewer, (10, 10), (40, 70))  # a brush stroke across the committed nucleus
    assert (labels.data == 5).sum() > 50
    labels.mode = "erase"
    press_drag_release(viewer, (20, 20), (35, 35))
    labels.mode = "fill"
    labels.selected_label = 9
    click(viewer, (70, 10))  # fills the background
    assert (labels.data == 9).sum() > 1000
    undo(viewer)  # napari's Ctrl+Z on the labels layer takes the fill back
    assert not (labels.data == 9).any()
    undo(viewer)  # ... and the erase
    redo(viewer)  # Ctrl+Shift+Z: the erase again
    labels.mode = "pan_zoom"
    viewer.layers.selection.active = controller.points_layer
    controller.add_click_world((60, 60), True)
    assert controller.commit()
    restored, scan = restored_copy(labels)
    np.testing.assert_array_equal(restored, labels.data)
    assert restored.dtype == labels.data.dtype
    kinds = [c.kind for c in scan.changes]
    assert kinds.count("commit") == 2 and kinds.count("paint") == 3 and "undo" in kinds and "redo" in kinds
    assert len(scan.label_ids) == 2


def test_undoing_a_commit_with_napari_ctrl_z_does_not_come_back(painting_viewer):
    viewer, widget = painting_viewer
    controller = widget.controller
    controller.add_click_world((30, 30), True)
    assert controller.commit()
    controller.add_click_world((60, 60), True)
    assert controller.commit()
    labels = controller.labels_layer
    viewer.layers.selection.active = labels
    undo(viewer)  # the user takes the second commit back with napari's own undo
    assert set(np.unique(labels.data)) == {0, 1}
    restored, _ = restored_copy(labels)
    np.testing.assert_array_equal(restored, labels.data)


def test_napari_undo_and_redo_of_commits_keep_the_click_log_in_step(painting_viewer, tmp_path):
    from napari_fcfi.annotation.clicklog import ClickLog
    from napari_fcfi.annotation.geometry import make_geometry
    from napari_fcfi.annotation.replay import replay_click_log

    viewer, widget = painting_viewer
    controller = widget.controller
    image = viewer.layers["cells"].data

    def replayed():
        log = ClickLog.load(widget.save_click_log(tmp_path / "log.csv"), plane_shape=image.shape)
        return replay_click_log(None, image, make_geometry(image.shape), log, segmenter=DiskSegmenter(None))

    for centre in ((20, 20), (50, 60)):
        controller.add_click_world(centre, True)
        assert controller.commit()
    labels = controller.labels_layer
    viewer.layers.selection.active = labels
    undo(viewer)  # napari's Ctrl+Z takes label 2 back: the click log follows
    assert len(controller.click_log.records) == 1
    np.testing.assert_array_equal(replayed(), labels.data)
    redo(viewer)  # ... and brings it back
    assert [r.label_id for r in controller.click_log.records] == [1, 2]
    np.testing.assert_array_equal(replayed(), labels.data)

    undo(viewer)
    viewer.layers.selection.active = controller.points_layer
    controller.add_click_world((60, 20), True)  # a new object gets the freed id 2
    assert controller.commit() and labels.data[60, 20] == 2
    assert [r.label_id for r in controller.click_log.records] == [1, 2]
    np.testing.assert_array_equal(replayed(), labels.data)  # the saved log replays what is on screen


def test_the_journal_restores_the_click_log_through_undo_and_redo(painting_viewer):
    viewer, widget = painting_viewer
    controller = widget.controller
    for centre in ((20, 20), (50, 60), (30, 70)):
        controller.add_click_world(centre, True)
        controller.add_click_world((centre[0] + 3, centre[1] + 3), False)
        assert controller.commit()
    labels = controller.labels_layer
    viewer.layers.selection.active = labels
    undo(viewer)  # label 3 leaves the click log ...
    undo(viewer)  # ... and label 2
    redo(viewer)  # label 2 comes back

    def described(log):
        return [(r.label_id, r.clicks, [s.slice_key for s in r.steps]) for r in log.records]

    log, refs = recorder_of(labels).journal.scan().click_log((80, 90))
    assert described(log) == described(controller.click_log)
    assert [r.label_id for r in log.records] == [1, 2] and len(refs) == 3
    assert log.records[0].clicks == [(20, 20, True), (23, 23, False)]


def test_a_journal_started_after_a_save_lists_the_click_log_so_far(painting_viewer, tmp_path):
    viewer, widget = painting_viewer
    controller = widget.controller
    controller.add_click_world((20, 20), True)
    assert controller.commit()
    labels = controller.labels_layer
    first = recorder_of(labels).journal
    first.discard()  # as the FCFI writer does once the labels are saved
    controller.add_click_world((50, 60), True)
    assert controller.commit()
    journal = recorder_of(labels).journal
    assert journal.folder != first.folder
    log, _ = journal.scan().click_log((80, 90))
    assert [r.label_id for r in log.records] == [1, 2]


def test_grouped_commits_after_a_save_keep_the_journals_click_log_true_through_undo(painting_viewer):
    from napari_fcfi.plugin.commit_flow import commits_as_one

    viewer, widget = painting_viewer
    controller = widget.controller
    for centre in ((20, 20), (50, 60)):
        controller.add_click_world(centre, True)
        assert controller.commit()
    labels = controller.labels_layer
    recorder_of(labels).journal.discard()  # as the FCFI writer does once the labels are saved
    with commits_as_one(controller, controller.state):  # as Accept all does
        for centre in ((20, 70), (60, 20)):
            controller.add_click_world(centre, True)
            assert controller.commit()
    journal = recorder_of(labels).journal
    scan = journal.scan()
    assert scan.label_ids == [3, 4]  # the unsaved objects; 1 and 2 are only listed
    assert [r.label_id for r in scan.click_log((80, 90))[0].records] == [1, 2, 3, 4]
    viewer.layers.selection.active = labels
    undo(viewer)  # one Ctrl+Z: both grouped objects
    assert [r.label_id for r in controller.click_log.records] == [1, 2]
    restored, scan = journal.restore()
    np.testing.assert_array_equal(restored, labels.data)
    assert [r.label_id for r in scan.click_log((80, 90))[0].records] == [1, 2]


def test_a_failure_inside_grouped_commits_keeps_what_was_written_undoable_and_journaled(painting_viewer):
    from napari_fcfi.plugin.commit_flow import commits_as_one

    viewer, widget = painting_viewer
    controller = widget.controller
    with pytest.raises(RuntimeError, match="disk full"), commits_as_one(controller, controller.state):
        controller.add_click_world((20, 20), True)
        assert controller.commit()
        raise RuntimeError("disk full")
    labels = controller.labels_layer
    assert labels.data[20, 20] == 1
    restored, scan = recorder_of(labels).journal.restore()
    np.testing.assert_array_equal(restored, labels.data)
    assert [r.label_id for r in scan.click_log((80, 90))[0].records] == [1]
    viewer.layers.selection.active = labels
    undo(viewer)
    assert labels.data[20, 20] == 0 and not controller.click_log.records


def test_a_layer_with_content_starts_its_journal_with_that_content(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((50, 60), np.float32), name="cells")
    existing = np.zeros((50, 60), np.uint16)
    existing[5:15, 5:15] = 3  # work loaded from a file, not from this journal
    labels = viewer.add_labels(existing.copy(), name="mine")
    widget = docked_widget(viewer, tmp_path / "journals")
    widget.labels_menu.value = labels
    widget.controller.add_click_world((30, 30), True)
    assert widget.controller.commit()
    labels.data_setitem((np.array([1]), np.array([1])), 7)  # a script's write through napari's API
    labels.data = labels.data[::-1].copy()  # and a replacement of the whole array
    restored, scan = restored_copy(labels)
    np.testing.assert_array_equal(restored, labels.data)
    assert restored.dtype == np.uint16 and scan.changes[0].kind == "base"
    widget.close_controller()


def test_saving_with_the_fcfi_writer_ends_the_journal_and_the_next_change_starts_one(
    make_napari_viewer, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((50, 60), np.float32), name="cells")
    widget = docked_widget(viewer, tmp_path / "journals")
    widget.controller.add_click_world((30, 30), True)
    assert widget.controller.commit()
    labels = widget.controller.labels_layer
    first = recorder_of(labels).folder
    labels.save(str(tmp_path / "saved.fcfi"), plugin="napari-fcfi")
    assert not journals_for_image(widget.controller.state.fingerprint, tmp_path / "journals")
    widget.controller.add_click_world((10, 10), True)
    assert widget.controller.commit()
    assert recorder_of(labels).folder != first
    restored, scan = restored_copy(labels)
    np.testing.assert_array_equal(restored, labels.data)
    assert scan.changes[0].kind == "base"  # the saved labels, then the new commit
    widget.close_controller()


def test_history_items_become_one_change_in_order():
    atom = SimpleNamespace(
        slice_key=(slice(2, 4), slice(0, 3)),
        mask=np.array([[1, 0, 1], [0, 1, 0]], bool),
        new_value=4,
        old_values=np.zeros(3),
    )
    later = ((np.array([2, 5]), np.array([0, 1])), np.array([4, 0]), np.array([8, 9]))
    box, values, changed = history_item_change([atom, later], (6, 6), np.uint8)
    assert box == ((2, 6), (0, 3))
    labels = np.zeros((6, 6), np.uint8)
    labels[2:6, 0:3][changed] = values[changed]
    expected = np.zeros((6, 6), np.uint8)
    expected[2:4, 0:3][atom.mask] = 4
    expected[2, 0], expected[5, 1] = 8, 9
    np.testing.assert_array_equal(labels, expected)


def test_journaling_works_through_the_viewer_proxy_napari_gives_plugins(make_napari_viewer, tmp_path):
    from napari.utils._proxies import PublicOnlyProxy  # test only: what napari hands a docked plugin

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((50, 60), np.float32), name="cells")
    widget = FCFIWidget(
        PublicOnlyProxy(viewer),
        model_cache=stand_in_model_cache(),
        segmenter_factory=DiskSegmenter,
        runner=ImmediateRunner(),
        journal_root=tmp_path / "j",
    )
    widget.controller.add_click_world((30, 30), True)
    assert widget.controller.commit()
    labels = next(layer for layer in viewer.layers if layer.name == "cells labels")  # the real layer
    labels.paint((10, 10), 4)  # napari's brush, called as its mouse binding does
    restored, scan = restored_copy(labels)
    np.testing.assert_array_equal(restored, labels.data)
    assert [c.kind for c in scan.changes] == ["commit", "paint"]
    widget.close_controller()


def test_a_journal_that_cannot_be_written_is_reported_and_the_commit_still_happens(
    make_napari_viewer, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((50, 60), np.float32), name="cells")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the journals would go")
    widget = docked_widget(viewer, blocked)
    widget.controller.add_click_world((30, 30), True)
    with pytest.warns(RuntimeWarning, match="cannot be written.*save your labels"):
        committed = widget.controller.commit()
    assert committed and (widget.controller.labels_layer.data == 1).any()
    widget.controller.labels_layer.paint((10, 10), 4)  # the brush still paints (the failure was said once)
    assert widget.controller.labels_layer.data[10, 10] == 4
    widget.close_controller()


def test_one_ctrl_z_takes_back_a_commit_on_every_slice(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.random.default_rng(2).random((6, 60, 60)).astype(np.float32), name="stack")
    widget = docked_widget(viewer, tmp_path / "journals")
    controller = widget.controller
    state = controller.state
    masks = {(z,): np.zeros((60, 60), bool) for z in range(3)}
    for z, mask in masks.items():
        mask[20 : 30 + z[0], 20:30] = True
    obj = state.objects.start_from_masks(masks)  # one object over three slices (e.g. linked proposals)
    viewer.dims.set_current_step(0, obj.key[0])
    assert controller.commit()
    labels = controller.labels_layer
    assert all((labels.data[z] == 1).sum() == masks[(z,)].sum() for z in range(3))
    viewer.layers.selection.active = labels
    undo(viewer)  # one Ctrl+Z: the whole object, on every slice
    assert not labels.data.any()
    assert len(controller.click_log.records) == 0
    redo(viewer)
    assert all((labels.data[z] == 1).sum() == masks[(z,)].sum() for z in range(3))
    assert len(controller.click_log.records) == 1
    restored, _ = restored_copy(labels)
    np.testing.assert_array_equal(restored, labels.data)
    widget.close_controller()


def test_an_empty_journal_is_not_offered_for_restore(make_napari_viewer, tmp_path):
    from helpers.plugin import make_controller
    from napari_fcfi.annotation.journal import LabelsJournal
    from napari_fcfi.plugin.commit_flow import fingerprint_of, recovery_offers

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(5).random((32, 32), np.float32), name="cells")
    controller = make_controller(viewer, image, journal_root=tmp_path / "journals")
    journal = LabelsJournal.create(
        fingerprint_of(controller.state), {"label_shape": [32, 32], "dtype": "uint16"}, tmp_path / "journals"
    )
    journal.open_log()  # a session that crashed before its first commit: an empty log
    journal.close()
    assert journal.exists() and journal.scan().intact == 0
    assert recovery_offers(controller) == []  # "0 entries intact" with a Restore that can only fail: no
    controller.close()
