"""Commits on a very large image in napari: main-thread time per commit and the memory of the labels.

Opens a real napari viewer (shown, under Xvfb) with the FCFI dock widget and a lazily computed dask
image of ``--size`` x ``--size`` pixels. Per object: a real Qt mouse click on the canvas at a new place
(the prediction is a stand-in that returns a sparse disk, so only the plugin's and napari's costs
are timed), then a real Space key press on the canvas (the commit shortcut). Per commit it records
the main-thread wall and CPU time from the key press until napari has handled every event the
commit queued (the labels layer's update and the canvas redraw included: Qt events are processed
until none is left). The first commit creates the labels layer; it is reported apart.

Memory: resident memory of the process before the first commit, after it (the labels layer and
napari's view of it) and its peak (Linux ``VmHWM``), in MiB.

Needs a display::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/large_commit.py \
        --size 20000 --commits 6 --out benchmarks/measurements/large_commit.json

Reaching napari's canvas widget needs its private ``window._qt_viewer``: acceptable for a benchmark
script, never done by the plugin itself.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.engine.windows import Box, Patch

RADIUS = 60


class SparseDiskSegmenter:
    """Engine stand-in for huge planes: the object is a disk at the first positive click (sparse form)."""

    def __init__(self, model: Any) -> None:
        self.threshold = DEFAULT_THRESHOLD
        self._clicks: list[tuple[int, int, bool]] = []
        self.shape = (0, 0)

    def set_image(
        self, image: Any, channel_axis: Any = None, channel: Any = None, initial_mask: Any = None
    ) -> None:
        self.shape = tuple(image.shape[:2])  # never read the pixels: the plane is lazy

    def add_click(self, row: int, col: int, positive: bool) -> None:
        self._clicks.append((int(row), int(col), bool(positive)))

    def undo(self) -> None:
        if self._clicks:
            self._clicks.pop()

    @property
    def probability_patch(self) -> Patch | None:
        if not self._clicks:
            return None
        row, col, _ = self._clicks[0]
        r0, c0 = max(row - RADIUS, 0), max(col - RADIUS, 0)
        r1, c1 = min(row + RADIUS, self.shape[0] - 1), min(col + RADIUS, self.shape[1] - 1)
        rows, cols = np.ogrid[r0 : r1 + 1, c0 : c1 + 1]
        values = ((rows - row) ** 2 + (cols - col) ** 2 <= RADIUS**2).astype(np.float32)
        return Patch.from_array(Box(r0, r1, c0, c1), values)


def _rss_mib(key: str = "VmRSS") -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1)) / 1024


def _drain(app: Any) -> None:
    """Process Qt events until none is left (napari's queued updates and the canvas redraw)."""
    for _ in range(5):
        app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--commits", type=int, default=6)
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a cProfile of the later commits here"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import dask.array as da
    import napari
    from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
    from qtpy.QtGui import QKeyEvent, QMouseEvent
    from qtpy.QtWidgets import QApplication

    from napari_fcfi.plugin.layers import image_data
    from napari_fcfi.plugin.models import ModelCache
    from napari_fcfi.plugin.widget import FCFIWidget
    from napari_fcfi.plugin.worker import ImmediateRunner

    size = args.size
    # A lazily computed dask image (cheap to compute: the plugin's costs, not the image's, are measured).
    rows = da.arange(size, chunks=2048, dtype=np.uint16)[:, None] % 64
    image = (rows * 50 + da.zeros((size, size), chunks=(2048, 2048), dtype=np.uint16)).astype(np.uint16)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.add_image(image, name="huge", contrast_limits=(0, 4000))
    cache = ModelCache(loader=lambda source, device: SimpleNamespace(name=source))
    widget = FCFIWidget(
        viewer, model_cache=cache, segmenter_factory=SparseDiskSegmenter, runner=ImmediateRunner()
    )
    viewer.window.add_dock_widget(widget, name="FCFI", area="right")
    app = QApplication.instance()
    canvas = viewer.window._qt_viewer.canvas.native
    _drain(app)

    def send_click(world_yx: tuple[float, float]) -> None:
        camera = viewer.camera
        x = (world_yx[1] - camera.center[-1]) * camera.zoom + canvas.width() / 2
        y = (world_yx[0] - camera.center[-2]) * camera.zoom + canvas.height() / 2
        point = QPointF(x, y)
        global_point = QPointF(canvas.mapToGlobal(QPoint(int(x), int(y))))
        for kind, button, buttons in (
            (QEvent.Type.MouseButtonPress, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton),
            (QEvent.Type.MouseButtonRelease, Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton),
        ):
            QApplication.sendEvent(
                canvas,
                QMouseEvent(kind, point, global_point, button, buttons, Qt.KeyboardModifier.NoModifier),
            )
            app.processEvents()

    def press_space() -> None:
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            QApplication.sendEvent(
                canvas, QKeyEvent(kind, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " ")
            )

    rss_before = _rss_mib()
    commits = []
    profiler = None
    for index in range(args.commits):
        center = (size * (0.2 + 0.6 * ((index * 0.37) % 1)), size * (0.2 + 0.6 * ((index * 0.61) % 1)))
        viewer.camera.center = center
        viewer.camera.zoom = 2.0
        _drain(app)
        send_click(center)
        _drain(app)
        obj = widget.controller.current_object(create=False)
        assert obj is not None and obj.mask is not None, "the click made no object"
        if args.profile is not None and index == 1:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        wall, cpu = time.perf_counter(), time.thread_time()
        press_space()
        _drain(app)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        labels = widget.controller.labels_layer
        assert labels is not None and int(image_data(labels)[int(center[0]), int(center[1])]) > 0, (
            f"commit {index} did not paint: {widget.status.value}"
        )
        commits.append({"wall_ms": round(1000 * wall, 1), "cpu_ms": round(1000 * cpu, 1)})
        print(
            f"commit {index}: {1000 * wall:.0f} ms wall, {1000 * cpu:.0f} ms main-thread CPU; {widget.status.value}",
            flush=True,
        )
        if index == 0:
            rss_after_first = _rss_mib()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(args.profile))
    later = commits[1:]
    result = {
        "size": size,
        "labels_dtype": str(widget.controller.labels_layer.data.dtype),
        "labels_multiscale": bool(widget.controller.labels_layer.multiscale),
        "labels_levels": [list(level.shape) for level in widget.controller.labels_layer.data]
        if widget.controller.labels_layer.multiscale
        else None,
        "first_commit": commits[0],
        "later_commits_median_ms": {k: float(np.median([c[k] for c in later])) for k in ("wall_ms", "cpu_ms")}
        if later
        else None,
        "later_commits_max_ms": {k: float(np.max([c[k] for c in later])) for k in ("wall_ms", "cpu_ms")}
        if later
        else None,
        "commits": commits,
        "rss_mib": {
            "before_first_commit": round(rss_before),
            "after_first_commit": round(rss_after_first),
            "at_end": round(_rss_mib()),
            "peak": round(_rss_mib("VmHWM")),
        },
    }
    print(json.dumps({k: v for k, v in result.items() if k != "commits"}, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
