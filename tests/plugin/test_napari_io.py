"""napari's own GUI paths with the plugin installed: File > Open, drag and drop, File > Save, the widget's Save labels.

Opening goes through ``QtViewer._qt_open`` (what File > Open calls) and ``QtViewer.dropEvent`` (drag
and drop); any modal dialog ("Choose reader", an error box) fails the test (:mod:`helpers.modal`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
from qtpy.QtGui import QDropEvent

from helpers.modal import no_modal_dialogs
from helpers.widgets import docked_widget
from napari_fcfi.annotation.journal import LabelsJournal
from napari_fcfi.annotation.journal_records import change_record
from napari_fcfi.annotation.labels_tiff import read_labels_tiff, write_labels_tiff
from napari_fcfi.plugin.io import default_labels_path
from napari_fcfi.plugin.journaling import journal_folder_of
from napari_fcfi.plugin.layers import click_log_of

SCALE, TRANSLATE = (3.0, 0.5, 0.25), (1.0, -2.0, 10.0)


def open_file(viewer, path, route):
    """Open ``path`` as a user would: File > Open or dropping the file on the canvas."""
    qt_viewer = viewer.window._qt_viewer
    before = len(viewer.layers)
    with no_modal_dialogs():
        if route == "file_open":
            qt_viewer._qt_open([str(path)], stack=False)
        else:
            mime = QMimeData()
            mime.setUrls([QUrl.fromLocalFile(str(path))])
            qt_viewer.dropEvent(
                QDropEvent(
                    QPointF(5, 5),
                    Qt.DropAction.CopyAction,
                    mime,
                    Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier,
                )
            )
    return list(viewer.layers)[before:]


def tags_of(path):
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description
        return tif.pages[0].dtype, json.loads(description) if description.startswith("{") else {}


def journal_with_one_commit(folder, labels):
    journal = LabelsJournal.create(
        "image", {"label_shape": list(labels.shape), "dtype": str(labels.dtype)}, folder
    )
    journal.open_log()
    box = tuple((0, 1) for _ in range(labels.ndim - 2)) + ((0, 2), (0, 2))
    after = labels[tuple(slice(a, b) for a, b in box)]
    journal.append(change_record("commit", box, after, after > 0, label_id=1, clicks=[(0, 0, True)]))
    journal.close()
    assert journal.exists()
    return journal


@pytest.mark.parametrize("route", ["file_open", "drop"])
def test_a_plain_tiff_opens_with_napari_and_no_dialog(make_napari_viewer, tmp_path, route):
    image = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    viewer = make_napari_viewer()
    (layer,) = open_file(viewer, tmp_path / "cells.tif", route)
    assert type(layer).__name__ == "Image" and layer.source.reader_plugin == "napari"
    np.testing.assert_array_equal(layer.data, image)


@pytest.mark.parametrize(
    ("route", "dtype"), [("file_open", np.uint8), ("drop", np.uint16), ("file_open", np.int32)]
)
def test_fcfi_labels_open_as_labels_with_dtype_scale_translate(make_napari_viewer, tmp_path, route, dtype):
    labels = np.zeros((3, 20, 30), dtype)
    labels[1, 4:9, 5:15] = 7
    labels[2, 10:15, 2:8] = np.iinfo(dtype).max
    viewer = make_napari_viewer()
    viewer.add_labels(labels, name="cells labels", scale=SCALE, translate=TRANSLATE)
    (written,) = viewer.layers.save(str(tmp_path / "cells labels.fcfi"), selected=True)
    viewer.layers.clear()
    (layer,) = open_file(viewer, written, route)
    assert type(layer).__name__ == "Labels" and layer.source.reader_plugin == "napari-fcfi"
    assert layer.data.dtype == dtype and layer.name == "cells labels"
    np.testing.assert_array_equal(layer.data, labels)
    np.testing.assert_allclose(layer.scale, SCALE)
    np.testing.assert_allclose(layer.translate, TRANSLATE)


def test_legacy_fcfi_tiffs_open_with_napari_and_as_labels_once_renamed(make_napari_viewer, tmp_path):
    """Earlier versions wrote FCFI labels as ``.tif``: napari's reader has them now; ``.fcfi`` is ours."""
    labels = np.zeros((2, 10, 12), np.uint16)
    labels[1, 2:5, 3:9] = 3
    (legacy,) = write_labels_tiff(
        tmp_path / "old labels.tif", labels, {"scale": SCALE, "translate": (0, 5, 6)}
    )
    viewer = make_napari_viewer()
    (as_image,) = open_file(viewer, legacy, "file_open")
    assert type(as_image).__name__ == "Image" and as_image.source.reader_plugin == "napari"
    renamed = tmp_path / "old labels.fcfi"
    (tmp_path / "old labels.tif").rename(renamed)
    (layer,) = open_file(viewer, renamed, "drop")
    assert type(layer).__name__ == "Labels" and layer.data.dtype == np.uint16
    np.testing.assert_allclose(layer.scale, SCALE)
    np.testing.assert_allclose(layer.translate, (0, 5, 6))
    from napari_fcfi.plugin.io import default_labels_path

    assert default_labels_path(layer, as_image) == renamed  # Save labels writes back where it came from


def test_an_fcfi_file_that_is_not_a_labels_tiff_is_refused_clearly(tmp_path):
    from napari_fcfi.plugin.io import get_reader

    (tmp_path / "notes.fcfi").write_text("not a TIFF")
    with pytest.raises(ValueError, match="not an FCFI labels file"):
        get_reader(str(tmp_path / "notes.fcfi"))(str(tmp_path / "notes.fcfi"))
    tifffile.imwrite(tmp_path / "float.fcfi", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="not integer labels"):
        get_reader(str(tmp_path / "float.fcfi"))(str(tmp_path / "float.fcfi"))
    assert get_reader(str(tmp_path / "plain.tif")) is None


def test_napari_save_picks_the_fcfi_writer_for_fcfi_and_its_own_for_tif(make_napari_viewer, tmp_path):
    """What File > Save Selected Layers keeps, by the name typed and the file type chosen in its dialog."""
    from qtpy.QtWidgets import QFileDialog

    labels = np.zeros((3, 16, 16), np.uint16)
    labels[1, 3:9, 3:9] = 5
    viewer = make_napari_viewer()
    layer = viewer.add_labels(labels, name="cells labels", scale=SCALE, translate=TRANSLATE)
    journal = journal_with_one_commit(tmp_path / "journal", labels)
    layer.metadata["napari_fcfi"] = {"journal": str(journal.folder)}

    # napari's own writer for .tif: uint32, no scale/translate, the journal stays
    (plain,) = viewer.layers.save(str(tmp_path / "plain.tif"), selected=True)
    dtype, metadata = tags_of(plain)
    assert dtype == np.uint32 and "scale" not in metadata and "translate" not in metadata
    assert journal.exists()

    # ours for .fcfi: dtype, scale, translate; the journal goes
    (fcfi,) = viewer.layers.save(str(tmp_path / "cells.fcfi"), selected=True)
    data, meta = read_labels_tiff(fcfi)
    assert data.dtype == np.uint16 and meta["scale"] == SCALE and meta["translate"] == TRANSLATE
    np.testing.assert_array_equal(data, labels)
    assert not journal.exists()

    # the Save dialog: napari lists its own labels writer first; choosing "FCFI labels" writes .fcfi
    chosen = {}

    def save_dialog(parent, caption, directory, filter, options):  # noqa: A002 - Qt's keyword
        entries = filter.split(";;")
        chosen["filters"] = entries
        return str(tmp_path / chosen["name"]), next(e for e in entries if chosen["type"] in e)

    qt_viewer = viewer.window._qt_viewer
    original = QFileDialog.getSaveFileName
    QFileDialog.getSaveFileName = staticmethod(save_dialog)
    try:
        journal = journal_with_one_commit(tmp_path / "journal", labels)
        layer.metadata["napari_fcfi"] = {"journal": str(journal.folder)}
        chosen.update(name="from dialog", type="FCFI labels")
        qt_viewer._save_layers_dialog(selected=True)
        # both writers are offered; which comes first follows npe2's plugin discovery order
        assert any(f.startswith("napari builtins labels") for f in chosen["filters"])
        assert "FCFI interactive segmentation FCFI labels (*.fcfi)" in chosen["filters"]
        data, meta = read_labels_tiff(tmp_path / "from dialog.fcfi")
        assert data.dtype == np.uint16 and meta["scale"] == SCALE and not journal.exists()
        # typing .fcfi with napari's default file type fails loudly (napari's writer refuses the name)
        chosen.update(name="wrong type.fcfi", type="napari builtins labels")
        with pytest.raises(OSError, match="save failed"):
            qt_viewer._save_layers_dialog(selected=True)
        assert not (tmp_path / "wrong type.fcfi").exists()
    finally:
        QFileDialog.getSaveFileName = original


def test_the_fcfi_writer_names_its_files_and_never_replaces_a_file_it_renamed_to(tmp_path):
    from napari_fcfi.plugin.io import write_labels

    labels = np.ones((4, 5), np.uint8)
    assert write_labels(str(tmp_path / "a"), labels, {}) == [str(tmp_path / "a.fcfi")]
    assert write_labels(str(tmp_path / "b.tif"), labels, {}) == [str(tmp_path / "b.fcfi")]
    assert write_labels(str(tmp_path / "c.v2"), labels, {}) == [str(tmp_path / "c.v2.fcfi")]
    before = (tmp_path / "b.fcfi").read_bytes()
    with pytest.raises(FileExistsError, match="b.fcfi exists"):
        write_labels(str(tmp_path / "b.tiff"), labels * 2, {})
    assert (tmp_path / "b.fcfi").read_bytes() == before
    assert write_labels(str(tmp_path / "b.fcfi"), labels * 2, {}) == [
        str(tmp_path / "b.fcfi")
    ]  # asked for: replaced


def make_widget(viewer, tmp_path):

    widget = docked_widget(viewer, tmp_path / "journals", name="FCFI", area="right")
    return widget


def world(data_position):
    return tuple(p * s + t for p, s, t in zip(data_position, SCALE, TRANSLATE, strict=True))


def test_widget_save_labels_writes_beside_the_image_and_clears_the_journal(make_napari_viewer, tmp_path):
    from napari_fcfi.plugin.commit_flow import recovery_offers
    from napari_fcfi.plugin.journaling import journal_folder_of

    (tmp_path / "data").mkdir()
    tifffile.imwrite(
        tmp_path / "data" / "cells.tif", np.random.default_rng(1).random((3, 40, 40), np.float32)
    )
    viewer = make_napari_viewer()
    (image,) = open_file(viewer, tmp_path / "data" / "cells.tif", "file_open")
    image.scale, image.translate = SCALE, TRANSLATE
    image.axis_labels = ("z", "y", "x")  # a 3-slice stack, not 3 channels (the widget's guess for (3, Y, X))
    labels = viewer.add_labels(
        np.zeros((3, 40, 40), np.uint16), name="cells labels", scale=SCALE, translate=TRANSLATE
    )
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    widget.image_menu.value = image
    widget.labels_menu.value = labels
    beside = tmp_path / "data" / "cells labels.fcfi"
    assert widget.labels_file.value == beside  # where Save labels will write, shown before it does
    viewer.dims.set_current_step(0, 1)
    assert controller.add_click_world(world((1, 20, 20)), True) and controller.commit()
    journal = LabelsJournal(journal_folder_of(labels))
    assert journal.exists()

    # napari's own Save to .tif keeps neither the dtype nor the scale, and keeps the journal
    viewer.layers.selection = {labels}
    (plain,) = viewer.layers.save(str(tmp_path / "napari.tif"), selected=True)
    assert tags_of(plain)[0] == np.uint32 and "scale" not in tags_of(plain)[1] and journal.exists()

    widget.save_labels_button.native.click()  # the real Qt button
    data, meta = read_labels_tiff(beside)
    assert data.dtype == np.uint16 and meta["scale"] == SCALE and meta["translate"] == TRANSLATE
    np.testing.assert_array_equal(data, labels.data)
    assert data[1, 20, 20] == 1 and not journal.exists() and not recovery_offers(controller)
    assert str(beside) in widget.status.value

    # a later commit journals again; the next Save writes the same file and clears it again
    assert controller.add_click_world(world((1, 5, 30)), True) and controller.commit()
    journal = LabelsJournal(journal_folder_of(labels))  # the layer's next change started a new journal
    assert journal.exists()
    widget.save_labels_button.native.click()
    assert read_labels_tiff(beside)[0][1, 5, 30] == 2 and not journal.exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cells labels.fcfi", "cells.tif"]

    # a path typed in the labels file is used, named .fcfi
    widget.labels_file.value = tmp_path / "elsewhere.tif"
    widget.save_labels_button.native.click()
    assert (tmp_path / "elsewhere.fcfi").is_file() and "elsewhere.fcfi" in widget.status.value
    widget.close_controller()


def test_reopened_labels_of_an_image_take_the_next_commits(make_napari_viewer, tmp_path):
    """A later session: the image and its saved labels opened again; commits go into those labels
    with fresh ids, never into a new layer of the same name."""
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "cells.tif", np.random.default_rng(1).random((40, 40), np.float32))
    viewer = make_napari_viewer()
    (image,) = open_file(viewer, tmp_path / "data" / "cells.tif", "file_open")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    assert controller.add_click_world((20, 20), True) and controller.commit()
    widget.save_labels_button.native.click()
    saved = tmp_path / "data" / "cells labels.fcfi"
    assert saved.is_file()
    viewer.window.remove_dock_widget(widget.native)  # the user closes the dock, then the layers
    viewer.layers.clear()

    opened = open_file(viewer, tmp_path / "data" / "cells.tif", "file_open")
    assert len(opened) == 1, [layer.name for layer in viewer.layers]
    (image,) = opened
    (reopened,) = open_file(viewer, saved, "file_open")
    assert reopened.name == "cells labels" and reopened.data[20, 20] == 1
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    widget.image_menu.value = image
    assert controller.labels_layer is reopened
    assert controller.add_click_world((5, 30), True) and controller.commit()
    assert [
        layer.name for layer in viewer.layers if layer._type_string == "labels" and "FCFI" not in layer.name
    ] == ["cells labels"]
    assert reopened.data[5, 30] == 2 and reopened.data[20, 20] == 1  # a fresh id; the old object kept
    widget.close_controller()


def test_labels_opened_after_the_dock_are_the_images_labels_at_once(make_napari_viewer, tmp_path):
    """Retest 2026-12-06: the saved labels opened after the widget had picked the image stayed out of
    the widget until the next commit (Labels menu empty, label id 1 although 1 exists, Save labels: "no
    labels to save yet"). They are the image's labels as soon as they are opened."""
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "cells.tif", np.random.default_rng(1).random((40, 40), np.float32))
    saved = np.zeros((40, 40), np.uint16)
    saved[18:23, 18:23] = 1
    write_labels_tiff(str(tmp_path / "data" / "cells labels.fcfi"), saved, {"name": "cells labels"})
    viewer = make_napari_viewer()
    (image,) = open_file(viewer, tmp_path / "data" / "cells.tif", "file_open")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    assert controller.state is not None and controller.labels_layer is None
    viewer.add_labels(np.zeros((40, 40), np.uint8), name="something else")  # not the image's: not taken
    assert controller.labels_layer is None
    (reopened,) = open_file(viewer, tmp_path / "data" / "cells labels.fcfi", "file_open")
    assert controller.labels_layer is reopened
    assert widget.labels_menu.value is reopened
    assert int(widget.label_id.value) == 2
    widget.save_labels_button.native.click()
    assert "no labels to save" not in widget.status.value, widget.status.value
    widget.close_controller()


def test_save_labels_default_never_replaces_a_file_and_says_when_there_is_nothing(
    make_napari_viewer, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))  # an image not from a file: labels go to the home folder
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(2).random((30, 30), np.float32), name="sample")
    widget = make_widget(viewer, tmp_path)
    assert widget.save_labels() is None and "no labels to save" in widget.status.value
    (tmp_path / "sample labels.fcfi").write_bytes(b"someone's earlier work")
    assert widget.controller.add_click_world((15, 15), True) and widget.controller.commit()
    assert widget.labels_file.value == tmp_path / "sample labels 2.fcfi"  # the image's own layer, created now
    written = widget.save_labels(widget.labels_file.value)
    assert written == tmp_path / "sample labels 2.fcfi" and read_labels_tiff(written)[0].dtype == np.uint32
    assert (tmp_path / "sample labels.fcfi").read_bytes() == b"someone's earlier work"
    widget.close_controller()


@pytest.mark.parametrize("relative", [False, True])  # True: `napari data/cells.tif` from a shell
def test_save_labels_follows_a_napari_file_save_of_the_layer(
    make_napari_viewer, tmp_path, monkeypatch, relative
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "cells.tif", np.random.default_rng(3).random((40, 40), np.float32))
    viewer = make_napari_viewer()
    (image,) = open_file(
        viewer, "data/cells.tif" if relative else tmp_path / "data" / "cells.tif", "file_open"
    )
    widget = make_widget(viewer, tmp_path)
    widget.image_menu.value = image
    assert widget.controller.add_click_world((20, 20), True) and widget.controller.commit()
    labels = widget.controller.labels_layer
    offered = widget.labels_file.value
    assert offered.parent == tmp_path / "data"

    # File > Save of the labels layer, the FCFI file type, under a name of the user's choosing
    viewer.layers.selection = {labels}
    (mine,) = viewer.layers.save(str(tmp_path / "mine.fcfi"), selected=True)
    viewer.layers.selection.active = image  # the field shows the file napari saved to (retest)
    assert widget.labels_file.value == tmp_path / "mine.fcfi"
    assert widget.controller.add_click_world((5, 30), True) and widget.controller.commit()
    widget.save_labels_button.native.click()  # the field still shows its first offer: not typed by the user
    assert read_labels_tiff(mine)[0][5, 30] == 2 and not offered.exists()  # no second file
    assert widget.labels_file.value == tmp_path / "mine.fcfi" and "mine.fcfi" in widget.status.value

    # a path the user typed wins over the layer's last file
    widget.labels_file.value = tmp_path / "typed.fcfi"
    widget.save_labels_button.native.click()
    assert (tmp_path / "typed.fcfi").is_file()
    widget.close_controller()


def test_saving_a_duplicated_layer_leaves_the_originals_file(make_napari_viewer, tmp_path):
    import napari

    from napari_fcfi.plugin.io import default_labels_path, save_labels_layer
    from napari_fcfi.plugin.layers import TAG

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((8, 8), np.float32), name="cells")
    labels = viewer.add_labels(
        np.ones((8, 8), np.int32), name="cells labels", metadata={TAG: {"labels_of": "x"}}
    )
    save_labels_layer(labels, tmp_path / "original.fcfi")
    # napari's Layer > Duplicate copies the metadata dict, not the dicts inside it
    copy = viewer.add_labels(labels.data.copy(), name="cells labels copy", metadata=dict(labels.metadata))
    napari.save_layers(str(tmp_path / "copy.fcfi"), [copy], plugin="napari-fcfi")
    assert default_labels_path(labels, image) == tmp_path / "original.fcfi"
    # never split from the original (no dock, no journal): a file of its own, never the original's
    assert default_labels_path(copy, image) != tmp_path / "original.fcfi"


def test_save_click_log_without_a_name_writes_beside_the_labels_file(make_napari_viewer, tmp_path):
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "cells.tif", np.random.default_rng(4).random((40, 40), np.float32))
    viewer = make_napari_viewer()
    (image,) = open_file(viewer, tmp_path / "data" / "cells.tif", "file_open")
    widget = make_widget(viewer, tmp_path)
    widget.image_menu.value = image
    assert widget.save_click_log(None) is None and "no committed objects" in widget.status.value
    assert widget.controller.add_click_world((20, 20), True) and widget.controller.commit()
    (tmp_path / "data" / "cells labels clicks.csv").write_text("someone's earlier log")
    written = widget.save_click_log(None)  # the empty field: a name is chosen, never replacing a file
    assert written == tmp_path / "data" / "cells labels clicks 2.csv" and str(written) in widget.status.value
    assert (tmp_path / "data" / "cells labels clicks.csv").read_text() == "someone's earlier log"
    widget.close_controller()


def test_a_duplicated_labels_layer_has_its_own_click_log_journal_and_file(make_napari_viewer, tmp_path):
    """napari's Layer > Duplicate copies metadata shallowly: the copy shared the original's FCFI dict,
    so a commit into the original went into the copy's click log too, the copy's Save labels offered the
    original's file, and saving the copy ended the original's crash journal."""
    from napari.layers._layer_actions import _duplicate_layer  # what Layer > Duplicate Layer runs

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(5).random((40, 40), np.float32), name="cells")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    assert controller.add_click_world((10, 10), True) and controller.commit()
    labels = controller.labels_layer
    widget.labels_file.value = tmp_path / "original.fcfi"
    widget.save_labels_button.native.click()
    assert controller.add_click_world((30, 30), True) and controller.commit()  # unsaved work, journaled
    journal = LabelsJournal(journal_folder_of(labels))
    assert journal.exists()

    viewer.layers.selection = {labels}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers[f"{labels.name} copy"]
    assert controller.add_click_world((10, 30), True) and controller.commit()  # into the original
    assert len(click_log_of(labels).records) == 3 and len(click_log_of(copy).records) == 2
    assert default_labels_path(copy, None) != tmp_path / "original.fcfi"

    copy.data[0:5, 0:5] = 9  # the copy differs: saving it keeps the original's crash journal
    viewer.layers.selection = {copy}
    viewer.layers.save(str(tmp_path / "copy.fcfi"), selected=True, plugin="napari-fcfi")
    assert journal.exists() and read_labels_tiff(tmp_path / "original.fcfi")[0][30, 30] == 0
    restored, _scan = journal.restore()
    np.testing.assert_array_equal(restored, labels.data)
    viewer.layers.selection = {labels}
    viewer.layers.save(str(tmp_path / "original.fcfi"), selected=True, plugin="napari-fcfi")
    assert not journal.exists()  # saved: the journal has done its job
    widget.close_controller()


def test_a_duplicate_of_a_labels_layer_without_a_journal_gets_its_own_file_and_click_log(
    make_napari_viewer, tmp_path
):
    """Review: only a journaled layer's copy was split at once; a layer saved with File > Save and then
    duplicated gave the copy its file (Save labels of the copy would replace it) and its click log."""
    from napari.layers._layer_actions import _duplicate_layer

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32), name="cells")
    widget = make_widget(viewer, tmp_path)  # its controller splits every inserted layer
    labels = viewer.add_labels(np.zeros((40, 40), np.int32), name="mine")
    click_log_of(labels)  # an FCFI dict, no journal
    viewer.layers.selection = {labels}
    viewer.layers.save(str(tmp_path / "mine.fcfi"), selected=True, plugin="napari-fcfi")
    _duplicate_layer(viewer.layers)
    copy = viewer.layers["mine copy"]
    assert default_labels_path(copy, image) != tmp_path / "mine.fcfi"
    assert default_labels_path(labels, image) == tmp_path / "mine.fcfi"
    assert click_log_of(copy) is not click_log_of(labels)
    widget.close_controller()

    # no dock, no journal: the copy shares the dict until its first use, which drops the file
    viewer.layers.selection = {labels}
    _duplicate_layer(viewer.layers)
    second = viewer.layers["mine copy [1]"] if "mine copy [1]" in viewer.layers else viewer.layers[-1]
    viewer.layers.selection = {second}
    viewer.layers.save(str(tmp_path / "second.fcfi"), selected=True, plugin="napari-fcfi")
    assert default_labels_path(labels, image) == tmp_path / "mine.fcfi"
