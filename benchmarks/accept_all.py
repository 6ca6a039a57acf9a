"""Accept all in napari: main-thread time to commit every segment-all proposal of a slice.

Opens a real napari viewer (shown, under Xvfb) with the FCFI dock widget on a ``--size`` x ``--size``
image, puts ``--objects`` disk-shaped proposals into the proposals layer (as Segment all leaves
them; the network is not timed here) and presses Accept all. Reports the wall time from the press
until napari handled every event it queued, per proposal too, and the longest the GUI thread went
without processing events (what a user feels as a freeze). ``--profile`` prints the 25 costliest
functions.

Needs a display::

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/accept_all.py --objects 80 --size 512
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from types import SimpleNamespace

import numpy as np


def proposals(size: int, count: int, radius: int) -> np.ndarray:
    """``count`` disks on a grid (ids 1..count), apart from each other."""
    labels = np.zeros((size, size), np.int32)
    per_row = int(np.ceil(np.sqrt(count)))
    step = size // per_row
    rows, cols = np.ogrid[:size, :size]
    for index in range(count):
        r, c = (index // per_row) * step + step // 2, (index % per_row) * step + step // 2
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = index + 1
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=80)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--radius", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_fcfi.plugin.models import ModelCache
    from napari_fcfi.plugin.widget import FCFIWidget
    from napari_fcfi.plugin.worker import ImmediateRunner

    viewer = napari.Viewer(show=True)
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size)).astype(np.uint8)
    viewer.add_image(image, name="nuclei")
    cache = ModelCache(loader=lambda source, device: SimpleNamespace(name=source))
    widget = FCFIWidget(viewer, model_cache=cache, runner=ImmediateRunner(), journal_root=tempfile.mkdtemp())
    viewer.window.add_dock_widget(widget)
    panel = widget.segment_all_panel
    layer = panel.proposals_layer(create=True)
    layer.data[...] = proposals(args.size, args.objects, args.radius)
    layer.refresh()
    app = QApplication.instance()
    app.processEvents()

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:  # runs whenever the GUI thread processes events
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    last[0] = start
    if profiler:
        profiler.enable()
    panel.accept_all_button.clicked.emit()
    app.processEvents()
    elapsed = time.perf_counter() - start
    if profiler:
        profiler.disable()
    tick()
    timer.stop()
    committed = len(np.unique(widget.controller.labels_layer.data)) - 1
    print(
        f"accept all: {args.objects} proposals on {args.size}x{args.size}: {elapsed:.2f} s "
        f"({1000 * elapsed / args.objects:.1f} ms per proposal), {committed} committed, "
        f"longest GUI freeze {1000 * max(gaps):.0f} ms"
    )
    print(widget.status.value)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    viewer.close()


if __name__ == "__main__":
    main()
