"""Crash recovery keeps sessions and layers apart, skips damage, and covers napari's own label tools.

Real napari child processes: one session closed without saving, then one that ignores the offer,
commits to two labels layers (uint32 and uint16), paints and erases with napari's brush (real Qt
mouse), takes a commit back with napari's Ctrl+Z (real key), closes and reopens the dock, and is
killed with SIGKILL. Issue 24 (damage, brush strokes) and issue 25 items 2 and 3.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from napari.layers import Labels

from helpers.crash import needs_display, run_session, value_of
from helpers.widgets import docked_widget
from napari_fcfi.annotation.journal_records import MAGIC
from napari_fcfi.plugin.commit_flow import discard_offer, restore_offer

SETUP = """
IMAGE, ROOT, OUT = {image!r}, {root!r}, {out!r}
"""

EARLIER = """
viewer = napari.Viewer(show=False)
viewer.add_image(np.load(IMAGE), name="cells", axis_labels=("z", "y", "x"))
widget = fcfi_widget(viewer, ROOT)
viewer.window.add_dock_widget(widget)
c = widget.controller
viewer.dims.set_current_step(0, 1)
c.add_click_world((1, 20, 20), True); assert c.commit()
c.add_click_world((1, 45, 45), True); assert c.commit()
np.save(OUT + "/earlier.npy", c.labels_layer.data)
viewer.close()  # closed without saving
print("CLOSED", flush=True)
"""

CRASH = """
from qtpy.QtWidgets import QApplication
from helpers.qt_keys import undo
from helpers.qt_mouse import press_drag_release

viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1000, 700)
viewer.add_image(np.load(IMAGE), name="cells", axis_labels=("z", "y", "x"))
widget = fcfi_widget(viewer, ROOT)
dock = viewer.window.add_dock_widget(widget)
QApplication.processEvents()
viewer.reset_view()
c = widget.controller
viewer.dims.set_current_step(0, 1)
print("OFFERS", len(widget.recovery.offers), flush=True)
c.add_click_world((1, 20, 20), True); assert c.commit()  # the offer is ignored: a new journal
first = c.labels_layer
print("OFFERS_AFTER_COMMIT", len(widget.recovery.offers), widget.recovery.native.isHidden(), flush=True)
second = viewer.add_labels(np.zeros((4, 64, 64), np.uint16), name="second")
widget.labels_menu.value = second
c.add_click_world((1, 40, 40), True); assert c.commit()
c.add_click_world((1, 12, 50), True); assert c.commit()
viewer.layers.selection.active = second
undo(viewer)  # napari's own Ctrl+Z on the labels layer takes the last commit back
print("SECOND_IDS", sorted(np.unique(second.data).tolist()), flush=True)
widget.labels_menu.value = first
viewer.layers.selection.active = first
first.mode = "paint"; first.selected_label = 7; first.brush_size = 5
press_drag_release(viewer, (10, 10), (30, 55))  # a brush stroke
first.mode = "erase"
press_drag_release(viewer, (15, 15), (25, 25))
first.mode = "pan_zoom"
print("PAINTED", int((first.data == 7).sum()), flush=True)
viewer.window.remove_dock_widget(dock)  # close the dock ...
QApplication.processEvents()
widget2 = fcfi_widget(viewer, ROOT)  # ... and open it again
viewer.window.add_dock_widget(widget2)
print("OFFERS_REOPENED", len(widget2.recovery.offers), flush=True)
c2 = widget2.controller
print("TARGET", c2.labels_layer.name, flush=True)
np.save(OUT + "/first_before_last.npy", first.data)
c2.add_click_world((1, 50, 20), True); assert c2.commit()
np.save(OUT + "/first.npy", first.data)
np.save(OUT + "/second.npy", second.data)
print("READY", flush=True)
time.sleep(600)
"""


def fcfi_widget(viewer, root):
    widget = docked_widget(viewer, root)
    return widget


def restore_all(viewer, widget):
    before = {layer.name for layer in viewer.layers}
    while widget.recovery.offers:
        widget.recovery.choice.value = 0
        widget.restore_button.clicked.emit()
    return [layer for layer in viewer.layers if isinstance(layer, Labels) and layer.name not in before]


def damage(root):
    """Flip a byte in the earlier session's first commit, cut the crashed layer's last entry in half,
    break the second layer's header and drop a foreign file beside it."""
    folders = {}
    for header in root.glob("*/*/journal.json"):
        scan_text = header.read_text()
        log = next(header.parent.glob("log-*.fcj"))
        kind = (
            "second"
            if '"second"' in scan_text
            else (
                "first"
                if len(list(header.parent.glob("log-*"))) and b'"paint"' in log.read_bytes()
                else "earlier"
            )
        )
        folders[kind] = header.parent
    earlier = folders["earlier"] / "log-000.fcj"
    data = bytearray(earlier.read_bytes())
    starts = [i for i in range(len(data)) if data.startswith(MAGIC, i)]
    data[(starts[1] + starts[2]) // 2] ^= 0x5A  # inside the first commit
    earlier.write_bytes(bytes(data))
    first = folders["first"] / "log-000.fcj"
    data = first.read_bytes()
    starts = [i for i in range(len(data)) if data.startswith(MAGIC, i)] + [len(data)]
    # the last labels change (click-log records may follow it) and everything after it: a cut-off tail
    last = max(a for a, b in zip(starts, starts[1:]) if b'"kind":"object"' not in data[a:b])
    following = starts[starts.index(last) + 1]
    first.write_bytes(data[: last + (following - last) // 2])
    (folders["second"] / "journal.json").write_text("{not json")
    (folders["second"] / "notes.txt").write_text("copied here by hand")
    return folders


@pytest.mark.slow
def test_sessions_and_layers_restore_apart_exactly_even_when_damaged(make_napari_viewer, tmp_path):
    needs_display()
    image = np.random.default_rng(3).random((4, 64, 64)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    root = tmp_path / "recovery"
    setup = SETUP.format(image=str(tmp_path / "image.npy"), root=str(root), out=str(tmp_path))
    run_session(setup + EARLIER, tmp_path, "earlier", kill=False)
    lines = run_session(setup + CRASH, tmp_path, "crash")
    assert value_of(lines, "OFFERS") == "1"  # the earlier session, offered
    assert value_of(lines, "OFFERS_AFTER_COMMIT") == "1 False"  # still offered after a commit
    assert value_of(lines, "SECOND_IDS") == "[0, 1]"  # napari's undo took the second commit back
    assert int(value_of(lines, "PAINTED")) > 30
    assert value_of(lines, "OFFERS_REOPENED") == "1"  # the labels on screen are not offered
    assert value_of(lines, "TARGET") == "cells labels"
    earlier, first, second = (np.load(tmp_path / f"{n}.npy") for n in ("earlier", "first", "second"))
    first_before_last = np.load(tmp_path / "first_before_last.npy")
    damaged_root = tmp_path / "damaged"
    shutil.copytree(root, damaged_root)

    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", axis_labels=("z", "y", "x"))  # 4 slices, not channels
    widget = fcfi_widget(viewer, root)
    offers = list(widget.recovery.offers)
    assert len(offers) == 3 and not widget.recovery.native.isHidden()
    assert len({o.describe() for o in offers}) == 3  # told apart: layer name, times, counts
    restored = restore_all(viewer, widget)
    assert len(restored) == 3 and widget.recovery.native.isHidden()
    matches = {
        name: [
            layer
            for layer in restored
            if layer.data.dtype == array.dtype and np.array_equal(layer.data, array)
        ]
        for name, array in (("earlier", earlier), ("first", first), ("second", second))
    }
    assert all(len(found) == 1 for found in matches.values()), {k: len(v) for k, v in matches.items()}
    assert matches["second"][0].data.dtype == np.uint16 and matches["first"][0].data.dtype == np.uint32
    # Nothing twice: a stale offer neither duplicates nor deletes labels on screen.
    count = len(viewer.layers)
    assert restore_offer(widget.controller, offers[0]) in restored and len(viewer.layers) == count
    assert not discard_offer(widget.controller, offers[0]) and offers[0].journal.exists()
    widget.close_controller()

    damage(damaged_root)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", axis_labels=("z", "y", "x"))  # 4 slices, not channels
    widget = fcfi_widget(viewer, damaged_root)
    offers = list(widget.recovery.offers)
    assert len(offers) == 3
    assert sorted(o.scan.damaged for o in offers) == [0, 1, 1]
    assert any("notes.txt" in p for o in offers for p in o.scan.problems)
    assert any("journal.json" in p for o in offers for p in o.scan.problems)
    shown = []
    for index in range(3):
        widget.recovery.choice.value = index
        shown.append(widget.recovery.details.value)
    assert sum("1 damaged" in text for text in shown) == 2 and any("log-000.fcj" in text for text in shown)
    with pytest.warns(UserWarning):
        restored = restore_all(viewer, widget)
    assert len(restored) == 3
    earlier_without_first = np.where(earlier == 1, 0, earlier)
    for array in (earlier_without_first, first_before_last, second):
        assert (
            sum(layer.data.dtype == array.dtype and np.array_equal(layer.data, array) for layer in restored)
            == 1
        )
    widget.close_controller()
