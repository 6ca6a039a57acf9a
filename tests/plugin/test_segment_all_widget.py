"""Segment all in a real viewer: proposals → delete one → correct one with clicks → commit → accept all."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from helpers.qt_keys import press_key, redo, undo
from helpers.qt_mouse import canvas_widget, click
from helpers.standins import BlobNet, DiskSegmenter, disk
from helpers.widgets import docked_widget
from napari_fcfi.annotation.clicklog import ClickLog
from napari_fcfi.annotation.geometry import make_geometry
from napari_fcfi.annotation.replay import replay_click_log
from napari_fcfi.plugin.journaling import recorder_of
from napari_fcfi.plugin.models import ModelCache

SHAPE = (128, 128)
CENTRES = [(20, 20), (20, 64), (64, 30), (64, 90), (104, 100)]
RADIUS = 7


def nuclei() -> np.ndarray:
    image = np.full(SHAPE, 200, np.uint16)
    for r, c in CENTRES:
        image[disk(SHAPE, r, c, RADIUS)] = 3000
    return image


def proposals_on_nuclei(make_napari_viewer, tmp_path, ids, show=False):
    """The nuclei image in a viewer, the docked widget and a proposals layer holding a disk proposal per
    ``ids`` entry (proposal id -> index into CENTRES)."""
    viewer = make_napari_viewer(show=show)
    viewer.add_image(nuclei(), name="nuclei")
    widget = docked_widget(viewer, tmp_path / "journal")
    proposals = widget.segment_all_panel.proposals_layer(create=True)
    for proposal, centre in ids.items():
        proposals.data[disk(SHAPE, *CENTRES[centre], RADIUS)] = proposal
    return viewer, widget, proposals


def test_segment_all_delete_correct_commit_accept_all(make_napari_viewer, qtbot, tmp_path):
    image = nuclei()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(image, name="nuclei")
    mine = np.zeros(SHAPE, np.int32)
    mine[57:62, 86:95] = 40  # the user's own label over part of one nucleus: never overwritten
    users = viewer.add_labels(mine.copy(), name="mine")
    # segment-all runs the engine with a network whose masks follow the bright disks; clicks use the
    # disk stand-in (a negative click removes a disk of radius 5).
    cache = ModelCache(loader=lambda source, device: BlobNet(radius=RADIUS, brightness_weight=12.0).eval())
    widget = docked_widget(viewer, tmp_path / "journal", model_cache=cache)
    widget.labels_menu.value = users
    controller, panel = widget.controller, widget.segment_all_panel

    said: list[str] = []
    widget.status.changed.connect(said.append)
    panel.run_button.clicked.emit()  # in a napari worker thread
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    proposals = panel.proposals_layer()
    # the size it looked for is said: an estimate far off is the first thing a user would change
    assert "proposal(s) (object size 14 px, estimated: set Object size" in widget.status.value
    assert viewer.layers.selection.active is proposals  # so a click selects a proposal ...
    assert not [s for s in said if "is selected" in s], said  # ... which is no mistake to warn of
    viewer.layers.selection.active = viewer.layers["nuclei"]
    viewer.layers.selection.active = proposals
    assert widget.status.value.startswith("FCFI: clicks on the canvas select proposals"), widget.status.value
    assert proposals is not None and proposals not in [c for _, c in widget._labels_choices()]
    ids = {int(proposals.data[r, c]) for r, c in CENTRES}
    assert 0 not in ids and len(ids) == len(CENTRES)
    assert not (users.data != mine).any()  # nothing went into the user's labels

    # delete the first nucleus's proposal: click it on the canvas, press D
    viewer.layers.selection.active = proposals
    click(viewer, CENTRES[0])
    assert panel.selected == proposals.data[CENTRES[0]]
    qtbot.keyClick(canvas_widget(viewer), Qt.Key.Key_D)
    assert proposals.data[CENTRES[0]] == 0
    deleted = proposals.data.copy()
    undo(viewer)  # Ctrl+Z on the proposals layer brings the deleted proposal back ...
    assert proposals.data[CENTRES[0]] != 0 and "is back" in widget.status.value, widget.status.value
    redo(viewer)  # ... and Ctrl+Shift+Z deletes it again
    np.testing.assert_array_equal(proposals.data, deleted)
    click(viewer, (2, 2))  # beside every proposal: the status says what clicks do here
    assert widget.status.value.startswith("FCFI: no proposal there"), widget.status.value

    # correct the second: select, C, then a negative click on its edge, then Commit
    click(viewer, CENTRES[1])
    qtbot.keyClick(canvas_widget(viewer), Qt.Key.Key_C)
    obj = controller.current_object()
    assert obj.from_segment_all and obj.initial_mask[CENTRES[1]]
    assert viewer.layers.selection.active is controller.points_layer
    bite = (CENTRES[1][0], CENTRES[1][1] + RADIUS - 1)
    click(viewer, bite, button=Qt.MouseButton.RightButton)
    corrected = obj.mask.copy()
    assert not corrected[bite] and corrected[CENTRES[1]]
    widget.buttons["commit"].clicked.emit()
    corrected_id = int(users.data[CENTRES[1]])
    assert corrected_id and corrected_id != 40
    np.testing.assert_array_equal(users.data == corrected_id, corrected)
    # the proposals are the active layer again: the next click selects one, A / D / C act on it
    assert viewer.layers.selection.active is proposals
    assert widget.status.value.startswith("FCFI: committed label") and "select proposals again" in (
        widget.status.value
    ), widget.status.value
    click(viewer, CENTRES[2])
    assert controller.current_object(create=False) is None or not controller.current_object().has_object
    viewer.layers.selection.active = controller.points_layer

    # accept all while an object is in progress on two nuclei: the proposals it overlaps stay, the one
    # lying mostly on the user's label is refused (no sliver); the object stays as it was
    controller.add_click_world(CENTRES[2], True)
    controller.add_click_world(CENTRES[4], True)
    clicks = controller.current_object().clicks
    panel.accept_all_button.clicked.emit()
    assert widget.status.value.startswith(
        "FCFI: accepted 0 proposal(s); kept as proposals: 2 overlapping an object in progress (commit or "
        "reset it, then accept); 1 on existing labels (already annotated?"
    ), widget.status.value
    assert controller.current_object().clicks == clicks
    controller.reset_object()

    # accept the rest
    panel.accept_all_button.clicked.emit()
    assert (
        "accepted 2 proposal(s); kept as proposals: 1 on existing labels (already annotated?"
        in widget.status.value
    ), widget.status.value
    assert "paint over" not in widget.status.value, widget.status.value
    assert set(np.unique(proposals.data)) == {0, int(proposals.data[CENTRES[3]])}
    labels = users.data
    assert labels[CENTRES[0]] == 0  # deleted
    assert labels[CENTRES[2]] != 0 and labels[CENTRES[4]] != 0
    np.testing.assert_array_equal(labels[57:62, 86:95], mine[57:62, 86:95])  # the user's label is intact
    assert len(np.unique(labels)) == 1 + 1 + 3  # background, the user's label, 3 committed objects

    # the click log replays the labels exactly
    path = widget.save_click_log(tmp_path / "log.csv")
    log = ClickLog.load(path, plane_shape=SHAPE)
    assert sum(step.from_segment_all for record in log.records for step in record.steps) == 3
    replayed = replay_click_log(
        None, image, make_geometry(SHAPE), log, labels=mine.copy(), segmenter=DiskSegmenter(None)
    )
    np.testing.assert_array_equal(replayed, labels)
    viewer.screenshot(str(tmp_path / "segment_all.png"))

    # one Ctrl+Z on the labels layer takes the whole Accept all back, and the click log follows
    accepted = labels.copy()
    accepted_proposals = proposals.data.copy()
    id_after_accept = int(widget.label_id.value)
    assert id_after_accept == int(labels.max()) + 1
    viewer.layers.selection.active = users
    undo(viewer)
    assert users.data[CENTRES[2]] == 0 and users.data[CENTRES[4]] == 0
    assert users.data[CENTRES[1]] == corrected_id  # the commit before it stays
    assert [r.label_id for r in controller.click_log.records] == [corrected_id]
    # the widget follows: the label id box, the status, and the proposals are back to accept again
    assert int(widget.label_id.value) == controller.next_label_id() == int(users.data.max()) + 1
    assert int(widget.label_id.value) < id_after_accept
    assert "undo withdrew 2 object(s)" in widget.status.value, widget.status.value
    assert "2 proposal(s) back in 'nuclei FCFI proposals'" in widget.status.value
    for centre in (CENTRES[2], CENTRES[4]):
        back = proposals.data == proposals.data[centre]
        assert proposals.data[centre] and (accepted[back] != 0).all()
    assert proposals.data[CENTRES[3]]  # the refused one stayed
    journal = recorder_of(users).journal
    restored, scan = journal.restore()
    np.testing.assert_array_equal(restored, users.data)
    assert [r.label_id for r in scan.click_log(SHAPE)[0].records] == [corrected_id]
    redo(viewer)  # ... and one Ctrl+Shift+Z brings it back
    np.testing.assert_array_equal(users.data, accepted)
    assert len(controller.click_log.records) == 3
    np.testing.assert_array_equal(proposals.data, accepted_proposals)  # accepted again: gone from proposals
    assert int(widget.label_id.value) == id_after_accept
    assert "redo restored 2 object(s)" in widget.status.value, widget.status.value

    # Ctrl+Z with the proposals layer selected takes Accept all back too (the labels' last change)
    viewer.layers.selection.active = proposals
    undo(viewer)
    assert users.data[CENTRES[2]] == 0 and proposals.data[CENTRES[2]] != 0
    assert "2 proposal(s) back" in widget.status.value, widget.status.value
    # a new Segment all proposes the nuclei again; redoing the acceptance drops those duplicates
    panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert proposals.data[CENTRES[2]] != 0 and proposals.data[CENTRES[4]] != 0
    viewer.layers.selection.active = proposals
    redo(viewer)
    np.testing.assert_array_equal(users.data, accepted)
    assert proposals.data[CENTRES[2]] == 0 and proposals.data[CENTRES[4]] == 0
    assert "proposal(s) on them left" in widget.status.value, widget.status.value
    np.testing.assert_array_equal(journal.restore()[0], accepted)


def test_segment_all_on_every_slice_reports_the_total(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    constant = np.full(SHAPE, 200, np.uint16)
    viewer.add_image(np.stack([nuclei(), nuclei(), constant, constant, constant, constant]), name="stack")
    cache = ModelCache(loader=lambda source, device: BlobNet(radius=RADIUS, brightness_weight=12.0).eval())
    widget = docked_widget(viewer, tmp_path / "journal", model_cache=cache)
    panel = widget.segment_all_panel
    viewer.dims.set_current_step(0, 2)
    panel.start(threaded=False)  # this slice only: it is constant
    assert widget.status.value.startswith("FCFI: segment all: the image is constant"), widget.status.value

    panel.scope.value = "stack"
    panel.start(threaded=False)
    proposals = panel.proposals_layer().data
    found = [len(np.unique(proposals[z])) - 1 for z in range(6)]
    assert found == [len(CENTRES), len(CENTRES), 0, 0, 0, 0]
    assert f"FCFI: {len(CENTRES)} object(s) from {2 * len(CENTRES)} proposal(s) on 6 slices (linked" in (
        widget.status.value
    ), widget.status.value
    for r, c in CENTRES:  # linked: one id per nucleus through the stack
        assert proposals[0, r, c] == proposals[1, r, c] != 0

    # without linking, each slice's proposals are separate objects
    panel.link.value = False
    panel.start(threaded=False)
    unlinked = panel.proposals_layer().data
    assert len(set(np.unique(unlinked[:2]).tolist()) - {0}) == 2 * len(CENTRES)
    assert "each slice's separate" in widget.status.value, widget.status.value
    panel.link.value = True
    panel.start(threaded=False)
    proposals = panel.proposals_layer().data

    # accept one nucleus: one label id on both slices, one record in the click log
    controller = widget.controller
    viewer.dims.set_current_step(0, 1)
    nucleus = int(proposals[1][CENTRES[0]])
    panel.select(nucleus)
    assert panel.accept()
    labels = controller.labels_layer.data
    first = int(labels[0][CENTRES[0]])
    assert first and labels[1][CENTRES[0]] == first and (labels == first).sum() > 2 * 100
    assert not (proposals == nucleus).any()  # gone from both slices
    assert [r.label_id for r in controller.click_log.records] == [first]
    assert len(controller.click_log.records[0].slice_keys) == 2

    # correct another: the object in progress spans both slices, Commit writes both
    panel.select(int(proposals[1][CENTRES[1]]))
    assert panel.correct()
    assert controller.state.objects.members((1,)) == [(0,), (1,)]
    assert controller.commit()
    second = int(labels[1][CENTRES[1]])
    assert second not in (0, first) and labels[0][CENTRES[1]] == second

    assert panel.accept_all() == len(CENTRES) - 2
    assert len(np.unique(labels[0])) == len(np.unique(labels[1])) == len(CENTRES) + 1
    np.testing.assert_array_equal(labels[0] > 0, labels[1] > 0)
    np.testing.assert_array_equal(labels[0], labels[1])  # the same ids on both slices
    path = widget.save_click_log(tmp_path / "stack_log.csv")
    log = ClickLog.load(path, plane_shape=SHAPE)
    stack = viewer.layers["stack"].data
    replayed = replay_click_log(None, stack, make_geometry(stack.shape), log, segmenter=DiskSegmenter(None))
    np.testing.assert_array_equal(replayed, labels)

    # run again: every nucleus is labelled now, so nothing is proposed again
    panel.start(threaded=False)
    assert not panel.proposals_layer().data.any()
    assert f"{len(CENTRES)} object(s) already in 'stack labels' not proposed again" in widget.status.value, (
        widget.status.value
    )
    widget.close_controller()


def test_accepting_over_objects_in_progress_names_the_slices_plainly(make_napari_viewer, tmp_path):
    """The status said "slice(s) [(0,), (1,)] have ..." (raw tuples); it reads "slices 0, 1 have ..."."""
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([nuclei()] * 5), name="stack")  # 3 would read as channels
    widget = docked_widget(
        viewer,
        tmp_path / "journal",
        model_cache=ModelCache(loader=lambda source, device: BlobNet(radius=RADIUS).eval()),
    )
    controller, panel = widget.controller, widget.segment_all_panel
    proposals = panel.proposals_layer(create=True)
    for z in (0, 1):  # one nucleus linked over slices 0 and 1
        proposals.data[z][disk(SHAPE, *CENTRES[0], RADIUS)] = 7
    for z in (0, 1):  # the user's objects in progress on both, on the proposal
        viewer.dims.set_current_step(0, z)
        assert controller.add_click_world((z, *CENTRES[0]), True)
    viewer.dims.set_current_step(0, 1)
    assert not panel.accept(7)
    assert widget.status.value == (
        "FCFI: slices 0, 1 have an object in progress overlapping proposal 7; commit or reset it first"
    ), widget.status.value
    # Accept all cannot take it either: it says why and makes no empty labels layer
    assert panel.accept_all() == 0
    assert "kept as proposals: 1 overlapping an object in progress" in widget.status.value
    assert controller.labels_layer is None
    assert [layer.name for layer in viewer.layers if "labels" in layer.name] == []


def test_the_first_accept_keeps_the_proposals_layer_selected(make_napari_viewer, tmp_path):
    """The first commit creates the labels layer (napari selects it): the selection goes back to the
    proposals layer, so the next click still selects a proposal and A / D / Ctrl+Z still act on them."""
    viewer, widget, proposals = proposals_on_nuclei(make_napari_viewer, tmp_path, {3: 0, 4: 1})
    panel = widget.segment_all_panel
    viewer.layers.selection.active = proposals
    assert panel.accept(3)
    assert widget.controller.labels_layer is not None
    assert viewer.layers.selection.active is proposals
    assert widget.status.value.endswith("Ctrl+Z takes it back"), widget.status.value
    panel.history.undo(widget.controller.labels_layer)  # what Ctrl+Z on the proposals layer does
    assert not widget.controller.labels_layer.data.any() and proposals.data[CENTRES[0]] == 3
    # a corrected proposal, committed, then taken back by napari's undo: the proposal comes back too
    assert panel.correct(4) and proposals.data[CENTRES[1]] == 0
    assert "from a proposal" in widget.object_info.value, widget.object_info.value
    assert widget.controller.commit()
    labels = widget.controller.labels_layer
    assert labels.data[CENTRES[1]] != 0
    recorder_of(labels).undo()
    assert labels.data[CENTRES[1]] == 0 and proposals.data[CENTRES[1]] == 4
    assert "1 proposal(s) back" in widget.status.value, widget.status.value


def test_a_proposal_around_a_committed_label_is_not_accepted_as_a_ring(make_napari_viewer, tmp_path):
    """Retest 2026-12-06: a nucleus committed from one click (half of it), then Accept all committed the
    whole-nucleus proposal as a ring around the user's label (47 % of the proposal on it, under the
    sliver rule's cut). A proposal covering most of an existing label is that object again: kept."""
    viewer = make_napari_viewer()
    viewer.add_image(nuclei(), name="nuclei")
    mine = np.zeros(SHAPE, np.int32)
    mine[disk(SHAPE, *CENTRES[0], 4)] = 9  # the user's label: the core of nucleus 0 (radius 4 of 7)
    users = viewer.add_labels(mine.copy(), name="mine")
    widget = docked_widget(viewer, tmp_path / "journal")
    widget.labels_menu.value = users
    panel = widget.segment_all_panel
    proposals = panel.proposals_layer(create=True)
    proposals.data[disk(SHAPE, *CENTRES[0], RADIUS)] = 3  # the whole nucleus around label 9
    proposals.data[disk(SHAPE, *CENTRES[1], RADIUS)] = 4
    edge = np.zeros(SHAPE, bool)  # a neighbour's proposal touching label 9 by a few pixels: accepted
    edge[disk(SHAPE, CENTRES[0][0], CENTRES[0][1] + 9, 6)] = True
    proposals.data[edge] = 5
    assert not panel.accept(3)
    assert "proposal 3 covers most of label 9 (already annotated)" in widget.status.value, widget.status.value
    np.testing.assert_array_equal(users.data, mine)
    assert panel.accept_all() == 2
    assert "kept as proposals: 1 on existing labels (already annotated?" in widget.status.value
    assert proposals.data[CENTRES[0]] == 3 and proposals.data[CENTRES[1]] == 0
    np.testing.assert_array_equal(users.data == 9, mine == 9)  # no ring, label 9 untouched
    ring = disk(SHAPE, *CENTRES[0], RADIUS) & ~disk(SHAPE, *CENTRES[0], 4)
    assert not (users.data[ring & ~edge]).any()
    assert users.data[CENTRES[1]] not in (0, 9)
    assert panel.correct(3)  # C: the whole nucleus becomes the object in progress
    assert widget.controller.current_object().initial_mask[CENTRES[0]]


def test_accepting_into_a_multiscale_labels_layer(make_napari_viewer, tmp_path, monkeypatch):
    """Review 2026-12-06: the covered-label check read a multiscale labels layer (planes wider than
    8192 px) as one array: the second accept raised IndexError. Small planes made multiscale here."""
    from napari_fcfi.plugin import committing, pyramid

    monkeypatch.setattr(committing, "needs_pyramid", lambda shape: True)
    monkeypatch.setattr(pyramid, "COARSEST_SIDE", 64)  # levels of 128 and 64 px
    viewer = make_napari_viewer()
    viewer.add_image(nuclei(), name="nuclei")
    widget = docked_widget(viewer, tmp_path / "journal")
    panel = widget.segment_all_panel
    proposals = panel.proposals_layer(create=True)
    for proposal, centre in zip((3, 4, 5), CENTRES, strict=False):
        proposals.data[disk(SHAPE, *centre, RADIUS)] = proposal
    assert panel.accept(3)
    labels = widget.controller.labels_layer
    assert labels.multiscale
    assert panel.accept(4)  # was: IndexError
    proposals.data[disk(SHAPE, *CENTRES[0], RADIUS + 2)] = 6  # the first nucleus again, a little larger
    assert not panel.accept(6)
    assert "covers most of label" in widget.status.value, widget.status.value
    assert panel.accept_all() == 1  # proposal 5; 6 stays
    assert labels.data[0][CENTRES[2]] != 0 and proposals.data[CENTRES[0]] == 6


def test_accepting_beside_an_object_in_progress_keeps_it_and_its_undo(make_napari_viewer, tmp_path):
    """Accept and Accept all refused every proposal of the slice (in 2D: the image) while any object was
    in progress there. Only a proposal overlapping it is held back now; the object keeps its clicks and
    its undo history, and the click log still replays the labels."""
    image = nuclei()
    _viewer, widget, proposals = proposals_on_nuclei(make_napari_viewer, tmp_path, {3: 0, 4: 1, 5: 2})
    controller, panel = widget.controller, widget.segment_all_panel
    assert controller.add_click_world(CENTRES[2], True)
    assert controller.add_click_world((CENTRES[2][0], CENTRES[2][1] + 5), False)
    obj = controller.current_object()
    predictor = controller.predictor
    pending = predictor.pending
    predictor.pending = lambda image_id, key: True  # its prediction on its way (retest: "24 overlapping")
    assert not panel.accept(3)
    assert widget.status.value.startswith("FCFI: the object in progress is still being predicted")
    assert panel.accept_all() == 0 and "3 on slice(s) whose object in progress is still being predicted" in (
        widget.status.value
    )
    predictor.pending = pending
    controller.update(label_id=50)  # the id the user chose for their object: an accept does not take it
    clock = controller.state.history.clock
    assert panel.accept(3)
    assert controller.state.history.changed_since((), clock)  # a run going on leaves the slice
    labels = controller.labels_layer
    assert labels.data[CENTRES[0]] not in (0, 50) and controller.settings.label_id == 50
    assert labels.data[CENTRES[0]] != 0 and proposals.data[CENTRES[0]] == 0
    assert not panel.accept(5)  # the proposal under the object in progress stays
    assert "overlapping proposal 5" in widget.status.value, widget.status.value
    assert panel.accept_all() == 1 and set(np.unique(proposals.data)) == {0, 5}
    assert controller.current_object() is obj and len(obj.clicks) == 2
    controller.undo()  # the object's own history is intact: its last click goes
    assert len(controller.current_object().clicks) == 1
    assert controller.commit()
    assert labels.data[CENTRES[2]] == 50
    assert len(np.unique(labels.data)) == 4  # background, two accepted, the committed object
    path = widget.save_click_log(tmp_path / "log.csv")
    replayed = replay_click_log(
        None,
        image,
        make_geometry(SHAPE),
        ClickLog.load(path, plane_shape=SHAPE),
        segmenter=DiskSegmenter(None),
    )
    np.testing.assert_array_equal(replayed, labels.data)


def test_an_undone_or_reset_correction_gives_the_proposal_back(make_napari_viewer, qtbot, tmp_path):
    """Correct (C) could not be taken back: Ctrl+Z stopped at its clicks and Esc dropped the object, and
    the proposal was gone either way. Both give it back now; redo takes it again."""
    viewer, widget, proposals = proposals_on_nuclei(make_napari_viewer, tmp_path, {3: 0, 4: 1}, show=True)
    controller = widget.controller
    proposal = proposals.data == 3
    viewer.layers.selection.active = proposals
    click(viewer, CENTRES[0])
    qtbot.keyClick(canvas_widget(viewer), Qt.Key.Key_C)
    assert proposals.data[CENTRES[0]] == 0 and viewer.layers.selection.active is controller.points_layer
    click(viewer, (CENTRES[0][0], CENTRES[0][1] + RADIUS - 1), button=Qt.MouseButton.RightButton)
    assert len(controller.current_object().clicks) == 1
    undo(viewer)  # the correction click
    assert controller.current_object().from_segment_all and not controller.current_object().clicks
    undo(viewer)  # the correction itself: the proposal is back, nothing in progress
    np.testing.assert_array_equal(proposals.data == 3, proposal)
    assert not controller.current_object().has_object
    assert "undid the proposal correction; proposal 3 is back in" in widget.status.value, widget.status.value
    redo(viewer)
    assert proposals.data[CENTRES[0]] == 0 and controller.current_object().from_segment_all
    assert "proposal 3 left" in widget.status.value, widget.status.value
    press_key(viewer, Qt.Key.Key_Escape)  # reset the object: the proposal is back
    np.testing.assert_array_equal(proposals.data == 3, proposal)
    assert widget.status.value.startswith("FCFI: the object was reset; proposal 3 is back in"), (
        widget.status.value
    )
    undo(viewer)  # the reset: the object again, the proposal leaves
    assert proposals.data[CENTRES[0]] == 0 and controller.current_object().has_object
    assert proposals.data[CENTRES[1]] == 4  # the other proposal never moved
    # once committed, a later undo of another object does not bring it back (the labels' undo does)
    widget.buttons["commit"].clicked.emit()
    assert controller.labels_layer.data[CENTRES[0]] != 0
    viewer.layers.selection.active = controller.points_layer
    assert controller.add_click_world(CENTRES[2], True)
    undo(viewer)
    assert proposals.data[CENTRES[0]] == 0


def test_segment_all_again_leaves_out_labelled_objects(make_napari_viewer, qtbot, tmp_path):
    """Segment all run again proposed every nucleus already accepted once more (Accept all then kept
    them as "on existing labels")."""
    viewer = make_napari_viewer()
    viewer.add_image(nuclei(), name="nuclei")
    cache = ModelCache(loader=lambda source, device: BlobNet(radius=RADIUS, brightness_weight=12.0).eval())
    widget = docked_widget(viewer, tmp_path / "journal", model_cache=cache)
    panel = widget.segment_all_panel
    panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert "estimated: set Object size" in widget.status.value, widget.status.value
    proposals = panel.proposals_layer()
    for centre in CENTRES[:3]:
        assert panel.accept(int(proposals.data[centre]))
    labels = widget.controller.labels_layer
    panel.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)
    assert widget.status.value.startswith(
        f"FCFI: 2 proposal(s) (object size 14 px, estimated: set Object size if the proposals are too big or "
        f"small); 3 object(s) already in {labels.name!r} not proposed again"
    ), widget.status.value
    assert all(proposals.data[centre] == 0 for centre in CENTRES[:3])
    assert all(proposals.data[centre] != 0 for centre in CENTRES[3:])
    assert panel.accept_all() == 2 and len(np.unique(labels.data)) == 1 + len(CENTRES)


def test_a_correction_given_back_then_accepted_is_not_undone_over_its_label(make_napari_viewer, tmp_path):
    """Review: Correct, Esc (the proposal back), Accept, then Ctrl+Z undid the reset and put the
    corrected object in progress again over the label just committed."""
    _viewer, widget, proposals = proposals_on_nuclei(make_napari_viewer, tmp_path, {3: 0})
    controller, panel = widget.controller, widget.segment_all_panel
    assert panel.correct(3)
    controller.reset_object()
    assert proposals.data[CENTRES[0]] == 3
    assert panel.accept(3)
    assert controller.labels_layer.data[CENTRES[0]] != 0
    controller.undo()
    assert not controller.current_object().has_object and proposals.data[CENTRES[0]] == 0
    assert "nothing to undo in the clicks" in widget.status.value, widget.status.value


def test_a_deleted_proposal_that_cannot_come_back_leaves_the_history(make_napari_viewer, tmp_path):
    """Retest: delete a proposal, Segment all again (a newer proposal in its place), Ctrl+Z said it
    cannot come back, and Ctrl+Shift+Z then said it was deleted again although nothing changed."""
    _viewer, widget, proposals = proposals_on_nuclei(make_napari_viewer, tmp_path, {6: 0})
    panel = widget.segment_all_panel
    assert panel.delete(6)
    proposals.data[disk(SHAPE, *CENTRES[0], RADIUS)] = 9  # a rerun proposed it again, with another id
    panel.history.undo(None)
    assert "holds a newer proposal" in widget.status.value, widget.status.value
    panel.history.redo(None)
    assert widget.status.value.startswith("FCFI: nothing to redo in the proposals"), widget.status.value
    assert (proposals.data == 9).sum() == disk(SHAPE, *CENTRES[0], RADIUS).sum()


def test_a_proposal_under_an_object_committed_with_clicks_leaves_and_undo_brings_it_back(
    make_napari_viewer, tmp_path
):
    """Retest: a nucleus committed with clicks kept its proposal on top of the new label (Accept all then
    kept it as "on existing labels")."""
    viewer, widget, proposals = proposals_on_nuclei(make_napari_viewer, tmp_path, {3: 0, 4: 1})
    controller = widget.controller
    viewer.layers.selection.active = controller.points_layer
    assert controller.add_click_world(CENTRES[0], True) and controller.commit()
    labels = controller.labels_layer
    assert labels.data[CENTRES[0]] != 0 and proposals.data[CENTRES[0]] == 0
    assert proposals.data[CENTRES[1]] == 4  # the other proposal stays
    assert "1 proposal(s) under it left" in widget.status.value, widget.status.value
    recorder_of(labels).undo()  # napari's Ctrl+Z on the labels layer
    assert labels.data[CENTRES[0]] == 0 and proposals.data[CENTRES[0]] == 3
    recorder_of(labels).redo()
    assert labels.data[CENTRES[0]] != 0 and proposals.data[CENTRES[0]] == 0
