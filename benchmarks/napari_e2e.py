"""End-to-end latency in napari: from a real mouse click on the canvas to the preview drawn.

Runs a real napari viewer (shown, under Xvfb) with the FCFI dock widget, its background
:class:`~napari_fcfi.plugin.worker.ThreadedRunner` and the FCFI engine. Each click is a real Qt
mouse press and release sent to napari's canvas widget (the path a user's mouse takes: Qt -> vispy ->
napari's mouse dispatch -> the plugin). Per click it records:

* ``dispatch``: press/release handling on the main thread (the click/drag decision, the point added
  to the clicks layer, the slice's clicks rebuilt, the prediction submitted, the widget's info line),
  with its main-thread CPU time (``dispatch_cpu``);
* ``queue``: submit -> the worker thread starts the job;
* ``engine``: the job on the worker thread (engine ``add_click`` and the full-plane mask), with the
  engine's network time (``network``);
* ``deliver``: the result's arrival on the main thread until the preview layer holds the new mask,
  with its main-thread CPU time (``deliver_cpu``);
* ``draw``: the next canvas paint after the preview changed (vispy's draw event, first to last
  handler);
* ``pick``: vispy's offscreen picking render on the mouse press (part of ``dispatch``; vispy renders
  the scene to find the visual under the cursor on every press, with or without the plugin);
* ``e2e``: press -> preview drawn.

``main_thread_cpu`` = ``dispatch_cpu - pick_cpu + deliver_cpu``: the work on napari's main thread per
click, without the canvas renders (draw and pick; the responsiveness target is < 20 ms).

Needs a display: run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/napari_e2e.py --model default \
        --image-sizes 256 2048 8192 --objects 3 --clicks 4 --out benchmarks/measurements/napari_e2e.json

Uses synthetic uint16 nucleus images (``napari_fcfi.bench.synthetic.synthetic_nuclei_image``).
Reaching napari's canvas widget needs its private ``window._qt_viewer``: acceptable for a benchmark
script, never done by the plugin itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from napari_fcfi.bench.image_driven_outputs import ImageDrivenOutputs
from napari_fcfi.bench.machine import load_average, machine_info
from napari_fcfi.bench.models import DEFAULT_BUNDLED_PRESET, build_benchmark_model
from napari_fcfi.bench.synthetic import engine_click_plan, synthetic_nuclei_image
from napari_fcfi.bench.timing import summarize_ms


class _Stamps:
    """Time stamps of one click, filled by the instrumentation below."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.submitted = self.started = self.finished = None
        self.deliver_start = self.deliver_end = self.deliver_cpu = None
        self.draw_start = self.draw_end = None
        self.network = None
        self.pick_s = self.pick_cpu = 0.0


def _instrument(widget: Any, viewer: Any, stamps: _Stamps, profiler: Any = None) -> None:
    controller = widget.controller
    runner = controller.runner
    original_submit = runner.submit

    def submit(slot: Any, generation: int, job: Any) -> None:
        stamps.submitted = time.perf_counter()

        def timed_job() -> Any:
            stamps.started = time.perf_counter()
            try:
                return job()
            finally:
                stamps.finished = time.perf_counter()

        original_submit(slot, generation, timed_job)

    runner.submit = submit
    original_deliver = controller._on_prediction

    def on_prediction(prediction: Any) -> None:
        start, cpu = time.perf_counter(), time.thread_time()
        if profiler is not None:
            profiler.enable()
        original_deliver(prediction)
        if profiler is not None:
            profiler.disable()
        stamps.deliver_cpu = time.thread_time() - cpu
        stamps.deliver_start, stamps.deliver_end = start, time.perf_counter()
        stamps.draw_start = stamps.draw_end = None

    controller.predictor.on_prediction = on_prediction
    scene = viewer.window._qt_viewer.canvas._scene_canvas

    def draw_started(event: Any) -> None:
        if stamps.deliver_end is not None and stamps.draw_start is None:
            stamps.draw_start = time.perf_counter()

    def draw_ended(event: Any) -> None:
        if stamps.draw_start is not None and stamps.draw_end is None:
            stamps.draw_end = time.perf_counter()

    original_pick = scene._render_picking

    def render_picking(*args: Any, **kwargs: Any) -> Any:
        # vispy renders the scene offscreen on every mouse press to find the visual under the cursor
        # (napari's canvas, not the plugin): timed apart, like the draw.
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return original_pick(*args, **kwargs)
        finally:
            stamps.pick_s += time.perf_counter() - start
            stamps.pick_cpu += time.thread_time() - cpu

    scene._render_picking = render_picking
    scene.events.draw.connect(draw_started, position="first")
    scene.events.draw.connect(draw_ended, position="last")


def _send_click(viewer: Any, row: float, col: float, positive: bool) -> None:
    from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    widget = viewer.window._qt_viewer.canvas.native
    scene = getattr(viewer, "scene", None)  # napari >= 0.9: viewer.scene.camera
    camera = scene.camera if scene is not None else viewer.camera
    center_y, center_x = camera.center[-2:]
    point = QPointF(
        (col - center_x) * camera.zoom + widget.width() / 2,
        (row - center_y) * camera.zoom + widget.height() / 2,
    )
    button = Qt.MouseButton.LeftButton if positive else Qt.MouseButton.RightButton
    global_point = QPointF(widget.mapToGlobal(QPoint(int(point.x()), int(point.y()))))
    for kind, buttons in (
        (QEvent.Type.MouseButtonPress, button),
        (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton),
    ):
        QApplication.sendEvent(
            widget, QMouseEvent(kind, point, global_point, button, buttons, Qt.KeyboardModifier.NoModifier)
        )


def measure_napari(
    net: Any,
    model_name: str,
    image_size: int,
    objects: int,
    clicks_per_object: int,
    timeout_s: float = 300.0,
    threads: int | None = None,
    profiler: Any = None,
) -> dict[str, Any]:
    """Per-click end-to-end timings on one synthetic image in a fresh, shown viewer."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_fcfi.plugin.models import ModelCache
    from napari_fcfi.plugin.widget import FCFIWidget

    image, nuclei = synthetic_nuclei_image(image_size, seed=0)
    plans = engine_click_plan(nuclei, clicks_per_object, objects + 1)  # +1: an untimed warm-up object
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    app = QApplication.instance()
    cache = ModelCache(loader=lambda source, device: net)
    cache.put(model_name, "cpu", net)
    viewer.add_image(image, name="nuclei")
    widget = FCFIWidget(viewer, model_cache=cache)
    viewer.window.add_dock_widget(widget, name="FCFI", area="right")
    controller = widget.controller
    controller.update(model_source=model_name, device="cpu")
    if threads is not None:
        controller.update(cpu_threads=threads)
    stamps = _Stamps()
    _instrument(widget, viewer, stamps, profiler)
    viewer.reset_view()
    app.processEvents()

    def wait_for(condition: Any) -> None:
        deadline = time.perf_counter() + timeout_s
        while not condition():
            if time.perf_counter() > deadline:
                raise TimeoutError("no preview within the time limit")
            app.processEvents()
            time.sleep(0.0005)

    records = []
    try:
        for index, plan in enumerate(plans):
            for row, col, positive in plan:
                stamps.reset()
                app.processEvents()
                start, cpu_start = time.perf_counter(), time.thread_time()
                if profiler is not None and index > 0:
                    profiler.enable()
                _send_click(viewer, float(row), float(col), positive)
                if profiler is not None:
                    profiler.disable()
                dispatched, dispatch_cpu = time.perf_counter(), time.thread_time() - cpu_start
                wait_for(lambda: stamps.deliver_end is not None)
                wait_for(lambda: stamps.draw_end is not None)
                obj = controller.current_object(create=False)
                if index == 0:
                    continue  # warm-up object
                records.append(
                    {
                        "e2e_s": stamps.draw_end - start,
                        "dispatch_s": dispatched - start,
                        "dispatch_cpu_s": dispatch_cpu,
                        "queue_s": stamps.started - stamps.submitted,
                        "engine_s": stamps.finished - stamps.started,
                        "deliver_s": stamps.deliver_end - stamps.deliver_start,
                        "deliver_cpu_s": stamps.deliver_cpu,
                        "pick_s": stamps.pick_s,
                        "pick_cpu_s": stamps.pick_cpu,
                        "main_thread_cpu_s": dispatch_cpu - stamps.pick_cpu + stamps.deliver_cpu,
                        "draw_s": stamps.draw_end - stamps.draw_start,
                        "clicks_on_object": 0 if obj is None else len(obj.clicks),
                    }
                )
            controller.reset_object()
            app.processEvents()
    finally:
        widget.close_controller()
        viewer.close()

    def stats(key: str) -> dict[str, float]:
        return summarize_ms([r[key] for r in records if r[key] is not None])

    return {
        "model": model_name,
        "image": f"{image_size}x{image_size} uint16",
        "image_size": image_size,
        "threads": torch.get_num_threads(),
        "clicks": len(records),
        "e2e": stats("e2e_s"),
        "dispatch": stats("dispatch_s"),
        "dispatch_cpu": stats("dispatch_cpu_s"),
        "queue": stats("queue_s"),
        "engine": stats("engine_s"),
        "deliver": stats("deliver_s"),
        "deliver_cpu": stats("deliver_cpu_s"),
        "pick": stats("pick_s"),
        "pick_cpu": stats("pick_cpu_s"),
        "main_thread_cpu": stats("main_thread_cpu_s"),
        "draw": stats("draw_s"),
        "load_average": load_average(),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ("e2e", "dispatch", "pick", "queue", "engine", "deliver", "draw", "main_thread_cpu")
    lines = [
        "napari end to end per click (ms, medians; p95 of e2e in brackets)",
        f"{'model':<22} {'image':<18} {'n':>3} {'e2e':>7} {'(p95)':>7} "
        + " ".join(f"{c[:10]:>10}" for c in columns[1:]),
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<22} {r['image']:<18} {r['clicks']:>3} {r['e2e']['median_ms']:>7.1f} "
            f"{r['e2e']['p95_ms']:>7.1f} " + " ".join(f"{r[c]['median_ms']:>10.1f}" for c in columns[1:])
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="a `fcfi bench --models` entry (default: default)")
    parser.add_argument("--bundled-preset", default=DEFAULT_BUNDLED_PRESET)
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[512, 8192])
    parser.add_argument("--objects", type=int, default=4, help="timed objects per image (default 4)")
    parser.add_argument("--clicks", type=int, default=5, help="clicks per object (default 5)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads for inference (the plugin's cpu_threads; default: the plugin's, cores - 1)",
    )
    parser.add_argument(
        "--outputs",
        choices=["auto", "model", "image"],
        default="auto",
        help="'image': the network runs but predicts the bright nucleus under the click (see "
        "napari_fcfi.bench.image_driven_outputs.ImageDrivenOutputs); "
        "'auto' (default): 'image' for random weights",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write a cProfile of the main thread's click dispatch and result delivery (pstats file)",
    )
    args = parser.parse_args(argv)
    profiler = None
    if args.profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    net, info = build_benchmark_model(args.model, args.bundled_preset)
    outputs = (
        args.outputs if args.outputs != "auto" else ("image" if info["weights"] == "random" else "model")
    )
    if outputs == "image":
        net = ImageDrivenOutputs(net)
    info["outputs"] = outputs
    rows = []
    for size in args.image_sizes:
        row = measure_napari(
            net, info["model"], size, args.objects, args.clicks, threads=args.threads, profiler=profiler
        )
        row["outputs"] = outputs
        rows.append(row)
        print(
            f"napari {info['model']} {row['image']}: e2e median {row['e2e']['median_ms']:.1f} ms "
            f"(engine {row['engine']['median_ms']:.1f} ms, main-thread CPU {row['main_thread_cpu']['median_ms']:.1f} ms)",
            flush=True,
        )
    print()
    print(format_table(rows))
    if profiler is not None:
        import pstats

        profiler.dump_stats(str(args.profile))
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    if args.out is not None:
        results = {
            "machine": machine_info(),
            "command": "python benchmarks/napari_e2e.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "model": info,
            "napari_e2e": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
