"""Quitting napari while a prediction or a propagation runs ends the process cleanly (issue 25 item 10).

Real child processes: napari with the plugin docked through its manifest, the bundled model, a
2048 x 2048 image with clicks that start a prediction (or a stack being propagated), then the window
is closed while that runs. Before the fix the interpreter finalised under the running inference
thread and the process aborted (exit 134), and results reached deleted Qt widgets ("wrapped C/C++
object ... has been deleted").
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

PROPAGATION_SCRIPT = textwrap.dedent("""
    import numpy as np, napari
    from qtpy.QtCore import QTimer
    viewer = napari.Viewer(show=True)
    depth, size = 40, 512
    stack = np.random.default_rng(0).normal(100, 10, (depth, size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    stack[:, (yy - 256) ** 2 + (xx - 256) ** 2 < 30 ** 2] += 200
    viewer.add_image(stack, name="stack")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-fcfi", "FCFI interactive segmentation")
    controller = widget.controller
    def click():
        viewer.dims.set_current_step(0, 20)
        controller.add_click_world((20, 256, 256), True)
    def propagate():
        if controller.busy:  # the click's prediction is not in yet: try again shortly
            QTimer.singleShot(200, propagate)
            return
        widget.propagate_panel.direction.value = "both"
        widget.propagate_panel.run_button.clicked.emit()
        print("busy", controller.propagation is not None, flush=True)
        QTimer.singleShot(1000, viewer.close)  # while slices are still being propagated
    QTimer.singleShot(500, click)
    QTimer.singleShot(1500, propagate)
    napari.run()
    print("event loop ended", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("script", [SCRIPT, PROPAGATION_SCRIPT], ids=["prediction", "propagation"])
def test_closing_napari_while_work_runs_exits_cleanly(tmp_path, script):
    env = dict(os.environ, OMP_NUM_THREADS="1", NAPARI_FCFI_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert "busy True" in done.stdout, output  # the close really came while the work ran
    assert done.returncode == 0, output
    assert "event loop ended" in done.stdout, output
    assert "deleted" not in output and "Traceback" not in output, output
