"""End-to-end latency in napari: from a click event to the preview layer updated.

Runs a real (headless) napari viewer with the plugin's :class:`SegmentationController`, its real
background :class:`ThreadedRunner` and the FCFI engine. Each click is sent through napari's own
mouse dispatch (``mouse_press_callbacks`` / ``mouse_release_callbacks`` on the clicks layer, the
path a real mouse click takes after vispy); the clock stops when the controller has written the
new mask into the preview layer (its ``set_data`` event) for that click. Per click it also records:

* ``dispatch``: the press/release callbacks on the main thread (adds the point, submits the job),
  also as main-thread CPU time (``dispatch_cpu``),
* ``queue``: submit -> the worker thread starts the job,
* ``job``: the job on the worker thread (engine ``add_click`` plus the mask copy), also as that
  thread's CPU time (``job_cpu``, robust on a loaded machine when torch runs one thread); the
  engine's own ``last_timing`` splits it into network and engine time,
* ``deliver``: job done -> preview layer data set (Qt signal to the main thread, preview plane
  built, napari's layer refresh).

Needs a display: run under Xvfb::

    xvfb-run -a python benchmarks/napari_e2e.py --model default --image-sizes 512 8192 \
        --objects 4 --clicks 5 --threads 1 --out benchmarks/measurements/napari_e2e.json

``--show`` opens the viewer window (then the time also includes painting, which a hidden viewer
skips). Uses synthetic uint16 nucleus images (``napari_fcfi.bench.synthetic.synthetic_nuclei_image``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from napari_fcfi.bench.image_driven_outputs import ImageDrivenOutputs
from napari_fcfi.bench.machine import load_average, machine_info
from napari_fcfi.bench.models import DEFAULT_BUNDLED_PRESET, build_benchmark_model
from napari_fcfi.bench.synthetic import engine_click_plan, synthetic_nuclei_image
from napari_fcfi.bench.timing import summarize_ms


def _dispatch_click(layer: Any, world_position: tuple[float, ...], button: int = 1) -> None:
    """Press and release at ``world_position`` through napari's mouse callback dispatch."""
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    try:
        import wrapt

        wrap = wrapt.ObjectProxy  # napari persists the press event in such a proxy
    except ImportError:  # pragma: no cover - wrapt ships with napari
        wrap = lambda event: event
    for kind, dispatch in (
        ("mouse_press", mouse_press_callbacks),
        ("mouse_release", mouse_release_callbacks),
    ):
        event = SimpleNamespace(
            type=kind, position=world_position, button=button, modifiers=(), handled=False, is_dragging=False
        )
        dispatch(layer, wrap(event))


class _JobClock:
    """Wraps the controller's runner to time-stamp submit, job start and job end."""

    def __init__(self, runner: Any) -> None:
        self.submitted: float | None = None
        self.started: float | None = None
        self.finished: float | None = None
        self.job_cpu: float | None = None
        original = runner.submit

        def submit(slot: Any, generation: int, job: Any) -> None:
            self.submitted = time.perf_counter()

            def timed_job() -> Any:
                self.started, cpu = time.perf_counter(), time.thread_time()
                try:
                    return job()
                finally:
                    self.finished = time.perf_counter()
                    self.job_cpu = time.thread_time() - cpu

            original(slot, generation, timed_job)

        runner.submit = submit

    def reset(self) -> None:
        self.submitted = self.started = self.finished = self.job_cpu = None


def measure_napari(
    net: Any,
    model_name: str,
    image_size: int,
    objects: int,
    clicks_per_object: int,
    show: bool = False,
    timeout_s: float = 300.0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Per-click end-to-end timings on one synthetic image in a fresh viewer.

    ``threads``: torch CPU threads for the plugin's inference (its ``cpu_threads`` setting);
    None keeps the plugin's default.
    """
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_fcfi.plugin.controller import SegmentationController
    from napari_fcfi.plugin.models import ModelCache

    image, nuclei = synthetic_nuclei_image(image_size, seed=0)
    plans = engine_click_plan(nuclei, clicks_per_object, objects + 1)  # +1: an untimed warm-up object
    viewer = napari.Viewer(show=show)
    app = QApplication.instance()
    cache = ModelCache(loader=lambda source, device: net)
    cache.put(model_name, "cpu", net)
    controller = SegmentationController(viewer, cache, model_source=model_name, device="cpu")
    if threads is not None:
        controller.cpu_threads = threads  # the plugin applies it on its inference thread
    clock = _JobClock(controller.runner)
    image_layer = viewer.add_image(image, name="nuclei")
    controller.set_image_layer(image_layer)
    preview_times: list[float] = []

    waiting = QEventLoop()

    def on_preview_data(event: Any) -> None:
        preview_times.append(time.perf_counter())
        waiting.quit()

    # The controller rewrites the preview in place and refreshes it (``set_data``); a full
    # replacement of the plane emits ``set_data`` as well.
    controller.preview_layer.events.set_data.connect(on_preview_data)

    def is_shown(generation_before: int) -> bool:
        session = controller.current_session(create=False)
        return session is not None and session.generation > generation_before and session.up_to_date

    def wait_until_shown(generation_before: int) -> None:
        # A blocking Qt event loop (no polling): on 2 cores a spinning main thread would slow
        # the worker thread down and inflate the very time being measured.
        deadline = time.perf_counter() + timeout_s
        while not is_shown(generation_before):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no preview update within {timeout_s} s")
            QTimer.singleShot(int(min(remaining, 1.0) * 1000) + 1, waiting.quit)
            waiting.exec_()
        while controller.busy:  # let the runner's idle signal arrive before the next click
            app.processEvents()
            time.sleep(0.001)

    records = []
    try:
        for index, plan in enumerate(plans):
            for row, col, positive in plan:
                session = controller.current_session()
                generation = session.generation
                clock.reset()
                preview_times.clear()
                start, cpu_start = time.perf_counter(), time.thread_time()
                _dispatch_click(
                    controller.points_layer, (float(row), float(col)), button=1 if positive else 2
                )
                dispatched, dispatch_cpu = time.perf_counter(), time.thread_time() - cpu_start
                wait_until_shown(generation)
                if not preview_times or clock.finished is None:
                    raise RuntimeError("the click did not reach the engine / preview layer")
                shown = preview_times[-1]
                timing = dict(session.engine.segmenter.last_timing)
                if index == 0:
                    continue  # warm-up object
                records.append(
                    {
                        "e2e_s": shown - start,
                        "dispatch_s": dispatched - start,
                        "dispatch_cpu_s": dispatch_cpu,
                        "job_cpu_s": clock.job_cpu,
                        "queue_s": clock.started - clock.submitted,
                        "job_s": clock.finished - clock.started,
                        "deliver_s": shown - clock.finished,
                        "engine_total_s": timing.get("total_s"),
                        "network_s": timing.get("network_s"),
                    }
                )
            controller.reset_object()
            app.processEvents()
    finally:
        controller.close()
        viewer.close()

    def stats(key: str) -> dict[str, float]:
        return summarize_ms([r[key] for r in records if r[key] is not None])

    e2e = stats("e2e_s")
    network = stats("network_s")
    return {
        "model": model_name,
        "image": f"{image_size}x{image_size} uint16",
        "image_size": image_size,
        "shown": show,
        "threads": torch.get_num_threads(),  # as left by the plugin's inference thread
        "plugin_cpu_threads": getattr(controller, "cpu_threads", None),
        "clicks": len(records),
        "e2e": e2e,
        "dispatch": stats("dispatch_s"),
        "dispatch_cpu": stats("dispatch_cpu_s"),
        "job_cpu": stats("job_cpu_s"),
        "queue": stats("queue_s"),
        "job": stats("job_s"),
        "deliver": stats("deliver_s"),
        "engine_total": stats("engine_total_s"),
        "network": network,
        "gui_overhead_median_ms": e2e["median_ms"] - stats("engine_total_s")["median_ms"],
        "load_average": load_average(),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "napari end to end per click (ms, medians; p95 of e2e in brackets)",
        (
            f"{'model':<28} {'image':<18} {'n':>3} {'e2e':>8} {'(p95)':>8} {'dispatch':>8} {'queue':>7} "
            f"{'job':>8} {'network':>8} {'deliver':>8} {'disp CPU':>8} {'job CPU':>8}"
        ),
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<28} {r['image']:<18} {r['clicks']:>3} {r['e2e']['median_ms']:>8.1f} "
            f"{r['e2e']['p95_ms']:>8.1f} {r['dispatch']['median_ms']:>8.1f} {r['queue']['median_ms']:>7.1f} "
            f"{r['job']['median_ms']:>8.1f} {r['network']['median_ms']:>8.1f} {r['deliver']['median_ms']:>8.1f} "
            f"{r['dispatch_cpu']['median_ms']:>8.1f} {r['job_cpu']['median_ms']:>8.1f}"
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
    parser.add_argument("--show", action="store_true", help="show the viewer window (includes painting)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
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
            net, info["model"], size, args.objects, args.clicks, show=args.show, threads=args.threads
        )
        row["outputs"] = outputs
        rows.append(row)
        print(
            f"napari {info['model']} {row['image']}: e2e median {row['e2e']['median_ms']:.1f} ms "
            f"(network {row['network']['median_ms']:.1f} ms, deliver {row['deliver']['median_ms']:.1f} ms)",
            flush=True,
        )
    print()
    print(format_table(rows))
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
