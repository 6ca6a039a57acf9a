"""How long does napari freeze when an annotated image layer is removed?

A 2048 x 2048 image in a real napari viewer with the plugin docked through its manifest and the
bundled model: one click, a commit, a second click (so clicks, preview and labels layers exist and
torch is loaded), then ``viewer.layers.remove(image)`` with the plugin removing the image's helper
layers. napari runs a full garbage collection after each removed layer outside a batch; this script
counts those passes (wrapping ``gc.collect``, in this script only) and prints their times and the
total main-thread time of the removal::

    xvfb-run -a python benchmarks/remove_image.py --size 2048 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import napari
    from qtpy.QtWidgets import QApplication

    passes: list[float] = []
    collect = gc.collect

    def timed_collect(*a: object, **k: object) -> int:
        start = time.perf_counter()
        found = collect(*a, **k)
        passes.append(time.perf_counter() - start)
        return found

    gc.collect = timed_collect
    size = args.size
    image = np.random.default_rng(0).normal(100, 10, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    image[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < 40**2] += 200
    viewer = napari.Viewer(show=True)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-fcfi", "FCFI interactive segmentation")
    controller = widget.controller

    def settle() -> None:
        while controller.busy:
            QApplication.processEvents()
            time.sleep(0.01)
        QApplication.processEvents()

    for run in range(args.runs):
        layer = viewer.add_image(image, name=f"big{run}")
        widget.image_menu.value = layer
        settle()
        controller.add_click_world((size // 2, size // 2), True)
        settle()
        controller.commit()
        controller.add_click_world((size // 2, size // 2 + 5), True)
        settle()
        passes.clear()
        start = time.perf_counter()
        viewer.layers.remove(layer)
        QApplication.processEvents()
        total = time.perf_counter() - start
        print(
            f"run {run}: removal {1000 * total:.0f} ms, gc passes {[round(1000 * p) for p in passes]} ms, "
            f"layers left {[lay.name for lay in viewer.layers]}",
            flush=True,
        )
        for other in list(viewer.layers):
            viewer.layers.remove(other)
    viewer.close()


if __name__ == "__main__":
    main()
