"""Crash recovery: commits survive ``kill -9`` and come back bit for bit, without a model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest

from helpers.paths import REPO_ROOT
from helpers.widgets import docked_widget
from napari_fcfi.annotation.clicklog import ClickLog
from napari_fcfi.plugin.journaling import recorder_of
from napari_fcfi.plugin.models import ModelCache

CHILD = textwrap.dedent(
    """
    import sys, time
    from types import SimpleNamespace
    import numpy as np
    import napari
    sys.path.insert(0, {tests!r})
    from helpers.standins import DiskSegmenter
    from napari_fcfi.plugin.models import ModelCache
    from napari_fcfi.plugin.widget import FCFIWidget
    from napari_fcfi.plugin.worker import ImmediateRunner

    viewer = napari.Viewer(show=False)
    viewer.add_image(np.load({image!r}), name="cells")
    widget = FCFIWidget(viewer, model_cache=ModelCache(loader=lambda s, d: SimpleNamespace(name=s)),
                        segmenter_factory=DiskSegmenter, runner=ImmediateRunner(), journal_root={root!r})
    viewer.window.add_dock_widget(widget)
    c = widget.controller
    viewer.dims.set_current_step(0, 1)
    c.add_click_world((1, 20, 20), True); c.commit()
    c.add_click_world((1, 24, 24), True); c.commit()          # overlaps: background only
    c.update(overwrite=True)
    c.add_click_world((1, 40, 30), True); c.commit()
    c.update(overwrite=False)
    assert c.select_label(1); c.add_click_world((1, 18, 18), False); c.commit()  # an edit
    viewer.dims.set_current_step(0, 2)
    c.add_click_world((2, 10, 50), True); c.commit()
    np.save({labels!r}, c.labels_layer.data)
    widget.save_click_log({log!r})
    print("READY", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_commits_survive_kill_9_and_restore_exactly(make_napari_viewer, tmp_path):
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run") is None:
        pytest.skip("needs a display or xvfb-run for the crashing napari process")
    image = np.random.default_rng(3).random((4, 64, 64)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    root = tmp_path / "recovery"
    script = tmp_path / "child.py"
    script.write_text(
        CHILD.format(
            tests=str(REPO_ROOT / "tests"),
            image=str(tmp_path / "image.npy"),
            root=str(root),
            labels=str(tmp_path / "committed.npy"),
            log=str(tmp_path / "committed.csv"),
        )
    )
    command = [sys.executable, str(script)]
    if not os.environ.get("DISPLAY"):
        command = ["xvfb-run", "-a", *command]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.time() + 240
        line = ""
        while "READY" not in line:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                pytest.fail("the napari process died before committing: " + child.stderr.read()[-2000:])
            if time.time() > deadline:
                pytest.fail("the napari process did not commit in time")
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # kill -9, no cleanup of any kind
        child.wait(timeout=30)
    committed = np.load(tmp_path / "committed.npy")
    assert len(np.unique(committed)) == 5  # background + 4 labels

    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    loads = []
    widget = docked_widget(
        viewer, root, model_cache=ModelCache(loader=lambda s, d: loads.append(s) or SimpleNamespace(name=s))
    )
    assert not widget.recovery.native.isHidden()  # the widget offers to restore
    assert "4 object(s)" in widget.recovery_label.value
    widget.restore_button.clicked.emit()
    restored = widget.controller.labels_layer
    assert restored is not None, widget.status.value
    assert restored.name.endswith("(restored)") and restored.data.dtype == committed.dtype
    np.testing.assert_array_equal(restored.data, committed)
    assert loads == []  # restored without any model
    # the click log comes back with the labels: every object, its clicks and steps, the edit
    saved = ClickLog.load(tmp_path / "committed.csv", plane_shape=(64, 64)).records
    back = widget.controller.click_log.records
    assert [(r.label_id, r.edited, r.overwrite, r.clicks) for r in back] == [
        (r.label_id, r.edited, r.overwrite, r.clicks) for r in saved
    ]
    assert [[s.slice_key for s in r.steps] for r in back] == [[s.slice_key for s in r.steps] for r in saved]
    assert "click log of 5 commit(s)" in widget.status.value
    assert widget.recovery.native.isHidden()
    # new commits continue the same journal; discarding removes it
    viewer.dims.set_current_step(0, 0)
    widget.controller.add_click_world((0, 50, 50), True)
    assert widget.controller.commit()
    journal = recorder_of(restored).journal
    assert journal.folder == root.glob("*/*").__next__()  # the same journal, continued
    assert len(journal.scan().label_ids) == 5
    log, _ = journal.scan().click_log((64, 64))  # the continued journal holds all six objects
    assert [r.label_id for r in log.records] == [r.label_id for r in back]
    journal.discard()
    assert not journal.exists()
    widget.close_controller()
