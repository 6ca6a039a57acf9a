"""``fcfi demo``: napari with a sample nucleus image, the FCFI widget and the bundled model.

    fcfi demo                                # interactive
    fcfi demo --image cells.tif              # your own image
    xvfb-run -a fcfi demo --screenshot widget.png   # headless: simulated clicks, screenshot, exit
                                                    # (exit status 1 if the model did not load)

If the bundled weights are not installed the viewer still opens and says so in the widget and a
napari notification; choose an official model or a weights file in the widget then.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PLUGIN_NAME = "napari-fcfi"
WIDGET_NAME = "FCFI interactive segmentation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, help="image to open instead of the 2D nuclei sample")
    parser.add_argument(
        "--model", default="default", help="model: 'default' (bundled), an official name or a file"
    )
    parser.add_argument("--device", default="cpu", help="device for the network (cpu, cuda, mps)")
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PATH",
        help="simulate a few clicks, save a screenshot of the whole window to PATH and exit",
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for predictions (screenshot)"
    )


def open_demo(viewer: Any, image: Path | None, model: str, device: str) -> tuple[Any, bool]:
    """Add the image and the docked widget to ``viewer``; returns the widget and whether the model loaded."""
    from napari_fcfi.plugin.models import describe_load_error
    from napari_fcfi.plugin.widget import FCFIWidget
    from napari_fcfi.sample_data import nuclei_2d

    if image is None:
        data, meta, _kind = nuclei_2d()[0]
        viewer.add_image(data, **meta)
    else:
        viewer.open(str(image), layer_type="image")
    try:
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    except Exception:  # noqa: BLE001 - plugin not registered (e.g. source checkout): dock it directly
        widget = FCFIWidget(viewer)
        viewer.window.add_dock_widget(widget, name=WIDGET_NAME, area="right")
    if device not in widget.device_menu.choices:
        device = "cpu"
    widget.device_menu.value = device
    if model in widget.model_menu.choices:
        widget.model_menu.value = model
    else:  # a file path
        widget.weights_file.value = model
        widget.model_menu.value = "weights file…"
    widget.controller.update(model_source=model, device=device)
    try:
        widget.controller.model_cache.get(model, device)  # load once now, so the first click is quick
        widget._show_status(
            f"FCFI: model {model!r} loaded on {device}; left click = positive, right = negative"
        )
        loaded = True
    except Exception as error:  # noqa: BLE001 - the viewer opens anyway, with a clear message
        from napari.utils.notifications import show_warning

        message = describe_load_error(model, error)
        widget._show_status(message)
        show_warning(message)
        loaded = False
    return widget, loaded


def object_seeds(image: np.ndarray, count: int = 2) -> list[tuple[int, int]]:
    """Pixel positions inside the ``count`` largest bright objects (Otsu), for simulated clicks."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    gray = image.mean(axis=-1) if image.ndim == 3 else image
    gray = np.asarray(gray, dtype=np.float32)
    foreground = gray > threshold_otsu(gray)
    labels, n = ndi.label(foreground)
    if n == 0:
        return [(gray.shape[0] // 2, gray.shape[1] // 2)]
    sizes = ndi.sum(foreground, labels, index=np.arange(1, n + 1))
    seeds = []
    for label in np.argsort(sizes)[::-1][:count] + 1:
        distance = ndi.distance_transform_edt(labels == label)
        row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
        seeds.append((int(row), int(col)))
    return seeds


def background_beside(image: np.ndarray, row: int, col: int, margin: int = 3) -> tuple[int, int]:
    """A background pixel just below the object at (row, col) (Otsu), for a simulated negative click."""
    from skimage.filters import threshold_otsu

    gray = np.asarray(image.mean(axis=-1) if image.ndim == 3 else image, dtype=np.float32)
    foreground = gray > threshold_otsu(gray)
    below = np.nonzero(~foreground[row:, col])[0]
    target = row + (int(below[0]) + margin if below.size else 0)
    return min(target, gray.shape[0] - 1), col


def wait_until_idle(widget: Any, timeout: float) -> bool:
    """Process Qt events until no prediction is running or waiting (or ``timeout`` seconds)."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        controller = widget.controller
        obj = controller.current_object(create=False)
        pending = (
            obj is not None
            and controller.state is not None
            and controller.predictor.pending(controller.state.image_id, obj.key)
        )
        if not controller.busy and not pending:
            QApplication.processEvents()
            return True
        time.sleep(0.02)
    return False


def simulate_and_screenshot(
    viewer: Any, widget: Any, path: Path, timeout: float, clicks: bool = True
) -> Path:
    """Commit two objects, leave a third in progress (with a negative click), save a screenshot.

    ``clicks=False`` (no model) saves the window as it is.
    """
    from napari_fcfi.annotation.geometry import read_plane
    from napari_fcfi.plugin.layers import image_data

    controller = widget.controller
    geometry, key = controller.geometry, controller.current_key()
    seeds: list[tuple[int, int]] = []
    plane = np.zeros((1, 1))
    if clicks and geometry is not None and key is not None:
        plane = read_plane(image_data(controller.image_layer), geometry, key)
        channel_axis = geometry.slice_channel_axis()
        if channel_axis is not None:
            plane = np.moveaxis(plane, channel_axis, -1).mean(axis=-1)
        seeds = object_seeds(plane, count=3)

    def to_world(row: int, col: int) -> tuple[float, ...]:
        grid = np.array([*key, row, col], dtype=float)
        return tuple(np.asarray(geometry.translate) + np.asarray(geometry.scale) * grid)

    for index, (row, col) in enumerate(seeds):
        controller.add_click_world(to_world(row, col), positive=True)
        wait_until_idle(widget, timeout)
        if index < len(seeds) - 1:
            controller.commit()
            wait_until_idle(widget, timeout)
    if seeds:
        row, col = background_beside(plane, *seeds[-1])
        controller.add_click_world(to_world(row, col), positive=False)
        wait_until_idle(widget, timeout)
    viewer.layers.selection.active = controller.points_layer
    viewer.reset_view()
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    return path


def run(args: argparse.Namespace) -> int:
    import contextlib

    import napari
    from napari.utils.notifications import notification_manager

    # In a screenshot, napari's start-up toast (e.g. about its Qt backend) would cover the canvas.
    quiet = notification_manager.notification_ready.blocker() if args.screenshot else contextlib.nullcontext()
    with quiet:
        viewer = napari.Viewer(title="napari-fcfi demo")
    viewer.window.resize(1500, 950)
    widget, loaded = open_demo(viewer, args.image, args.model, args.device)
    if args.screenshot is not None:
        path = simulate_and_screenshot(viewer, widget, args.screenshot, args.timeout, clicks=loaded)
        print(f"screenshot saved to {path}")
        widget.close_controller()
        viewer.close()
        if not loaded:  # headless runs (CI's install check) must not pass without a working model
            print(f"fcfi demo: model {args.model!r} did not load; no clicks were made", file=sys.stderr)
            return 1
        return 0
    napari.run()
    return 0
