"""Main-thread cost per propagated or filled slice in napari (the UI must stay responsive: <= 20 ms).

A real napari viewer (under Xvfb) with the FCFI dock widget and a 21 x 512 x 512 stack (the stack of
``propagation_speed.py``). The worker thread's engine is a stand-in (the bright region at the click),
because the network runs off the main thread and does not change what the main thread does per slice:
take the slice's mask, make it the slice's object in progress (with its undo record), count it, update
the progress bar and, for the slice on screen, the preview. That handler (``place_mask``) is timed,
wall and main-thread CPU, for a propagation through 20 slices and a fill between slices 0 and 20::

    xvfb-run -a python benchmarks/propagation_main_thread.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import napari

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from propagation_speed import benchmark_stack

from helpers.standins import BrightRegionSegmenter
from napari_fcfi.plugin import propagating, stack_tools
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    image, labels, label = benchmark_stack(512, 21, 0)
    image = (image > image.mean() + image.std()).astype(
        "uint16"
    ) * 1000 + 10  # bright objects for the stand-in
    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name="stack")
    widget = FCFIWidget(
        viewer,
        model_cache=ModelCache(loader=lambda s, d: SimpleNamespace(name=s)),
        segmenter_factory=BrightRegionSegmenter,
        runner=ImmediateRunner(),
    )
    viewer.window.add_dock_widget(widget)
    controller, app = widget.controller, napari.qt.get_qapp()
    timings: dict[str, list[tuple[float, float]]] = {"propagate": [], "fill": []}
    current = ["propagate"]
    original = propagating.place_mask

    def timed(*a, **k):
        wall, cpu = time.perf_counter(), time.thread_time()
        original(*a, **k)
        timings[current[0]].append((time.perf_counter() - wall, time.thread_time() - cpu))

    propagating.place_mask = stack_tools.place_mask = timed
    first_rows, first_cols = (labels[0] == label).nonzero()
    start = (int(first_rows.mean()), int(first_cols.mean()))
    for _ in range(args.runs):
        viewer.dims.set_current_step(0, 0)
        controller.reset_object()
        controller.add_click_world((0, *start), True)
        current[0] = "propagate"
        widget.propagate_panel.direction.value = "up"
        widget.propagate_panel.run_button.clicked.emit()
        while controller.propagation is not None:
            app.processEvents()
        last = max(k[0] for k, o in controller.state.objects.slices.items() if o.mask is not None)
        controller.undo()
        viewer.dims.set_current_step(0, last)
        rows, cols = (labels[last] == label).nonzero()
        controller.add_click_world((last, int(rows.mean()), int(cols.mean())), True)
        while controller.predictor.pending(controller.state.image_id, (last,)):
            app.processEvents()
        viewer.dims.set_current_step(0, 0)
        current[0] = "fill"
        widget.propagate_panel.fill_button.clicked.emit()
        while controller.propagation is not None:
            app.processEvents()
        controller.undo()
    for what, values in timings.items():
        if values:
            wall = statistics.median(v[0] for v in values) * 1000
            cpu = statistics.median(v[1] for v in values) * 1000
            worst = max(v[0] for v in values) * 1000
            print(
                f"{what}: {len(values)} slices, main thread per slice median {wall:.1f} ms wall "
                f"({cpu:.1f} ms CPU), max {worst:.1f} ms; load average {os.getloadavg()[0]:.1f}"
            )
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
