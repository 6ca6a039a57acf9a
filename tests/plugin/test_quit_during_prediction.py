"""Quitting napari while a prediction runs ends the process cleanly (issue 25 item 10).

A real child process: napari with the plugin docked through its manifest, the bundled model, a
2048 x 2048 image, clicks that start a prediction, then the window is closed while it runs. Before
the fix the interpreter finalised under the running inference thread and the process aborted
(exit 134).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np, napari
    from qtpy.QtCore import QTimer
    size = 2048
    viewer = napari.Viewer(show=True)
    image = np.random.default_rng(0).normal(100, 10, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    image[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < 40 ** 2] += 200
    viewer.add_image(image, name="big")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-fcfi", "FCFI interactive segmentation")
    def clicks():
        for i in range(4):
            widget.controller.add_click_world((size // 2 + i, size // 2), True)
        print("busy", widget.controller.busy, flush=True)
    QTimer.singleShot(800, clicks)
    QTimer.singleShot(1000, viewer.close)  # while the model loads / the first prediction runs
    napari.run()
    print("event loop ended", flush=True)
""")


@pytest.mark.slow
def test_closing_napari_during_a_prediction_exits_cleanly(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", NAPARI_FCFI_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert "busy True" in done.stdout, output  # the close really came while the prediction ran
    assert done.returncode == 0, output
    assert "event loop ended" in done.stdout and "deleted" not in output, output
