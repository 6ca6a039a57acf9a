"""Plugin tests: controller + layers in a real napari viewer (pytest-qt, Xvfb in CI).

The engine stand-in ``DiskSegmenter`` has the engine's API and a predictable output (disks around
positive clicks minus disks around negative clicks), so the tests can assert exact pixels. One test
at the end runs the real engine with a tiny real network.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import napari  # noqa: F401 - a test dependency
import numpy as np
import pytest
import pytestqt  # noqa: F401 - a test dependency

from helpers.plugin import click, make_controller
from helpers.standins import DiskSegmenter, disk
from napari_fcfi.engine.clicks import Click
from napari_fcfi.plugin.controller import AnnotationSettings, SegmentationController
from napari_fcfi.plugin.layers import NEGATIVE_COLOR, POSITIVE_COLOR
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.worker import ImmediateRunner, ThreadedRunner


def test_clicks_through_points_layer_preview_and_commit(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((64, 80)).astype(np.float32))
    controller = make_controller(viewer, image)
    points = controller.points_layer
    assert points.ndim == 2 and controller.preview_layer.data.shape == (64, 80)

    points.add([20, 30])  # the layer's own add: feature default positive=True
    expected = disk((64, 80), 20, 30)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, expected)

    shown = controller.preview_layer.data
    controller.points.append(controller.state, (), Click(20, 34, False))
    expected &= ~disk((64, 80), 20, 34)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, expected)
    assert controller.preview_layer.data is shown  # later updates rewrite the object's box in place
    assert list(points.features["positive"]) == [True, False]
    np.testing.assert_allclose(points.face_color, [POSITIVE_COLOR, NEGATIVE_COLOR])

    # flipping a click's sign in the features table recomputes too
    features = points.features.copy()
    features.loc[1, "positive"] = True
    points.features = features
    np.testing.assert_array_equal(
        controller.preview_layer.data > 0, disk((64, 80), 20, 30) | disk((64, 80), 20, 34)
    )
    features.loc[1, "positive"] = False
    points.features = features
    np.testing.assert_array_equal(controller.preview_layer.data > 0, expected)

    # deleting a point removes that click and recomputes
    points.remove([1])
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((64, 80), 20, 30))

    assert controller.commit()
    labels = controller.labels_layer
    assert labels is not None and labels.data.shape == (64, 80)
    assert viewer.layers.selection.active is points  # the next click still annotates
    np.testing.assert_array_equal(labels.data == 1, disk((64, 80), 20, 30))
    assert len(points.data) == 0 and not controller.preview_layer.data.any()
    assert controller.next_label_id() == 2
    assert controller.click_log.records[0].clicks == [(20, 30, True)]
    assert controller.labels_layer.name == f"{image.name} labels"


def test_mouse_callback_positive_negative_drag_and_outside(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((50, 60), np.uint16))
    controller = make_controller(viewer, image)
    click(controller, image, (25, 25))
    click(controller, controller.points_layer, (25, 28), button=2)  # right click: negative
    click(controller, image, (10, 10), modifiers=("Control",))  # ctrl+left: negative
    click(controller, image, (40, 40), drag_to=(30, 50))  # a drag pans, no click
    click(controller, image, (70, 10))  # outside: ignored with a message
    assert "outside" in viewer.status
    assert list(controller.points_layer.features["positive"]) == [True, False, False]
    expected = disk((50, 60), 25, 25) & ~disk((50, 60), 25, 28) & ~disk((50, 60), 10, 10)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, expected)
    # in the points layer's add mode napari adds the point itself; the callback must not add a second
    controller.points_layer.mode = "add"
    click(controller, controller.points_layer, (5, 5))
    assert len(controller.points_layer.data) == 3


def test_undo_redo_reset(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.uint8))
    controller = make_controller(viewer, image)
    controller.add_click_world((10, 10), True)
    controller.add_click_world((30, 30), True)
    both = disk((40, 40), 10, 10) | disk((40, 40), 30, 30)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, both)
    controller.undo()
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((40, 40), 10, 10))
    controller.undo()
    assert not controller.preview_layer.data.any()
    controller.redo()
    controller.redo()
    np.testing.assert_array_equal(controller.preview_layer.data > 0, both)
    assert len(controller.points_layer.data) == 2
    controller.undo()
    controller.add_click_world((5, 35), True)  # a new click clears the redo stack
    controller.redo()
    assert "nothing to redo" in viewer.status
    controller.reset_object()
    assert len(controller.points_layer.data) == 0 and not controller.preview_layer.data.any()
    assert not controller.commit()
    controller.add_click_world((20, 20), False)  # only a negative click: an empty object
    assert not controller.commit() and "empty" in viewer.status
    assert controller.labels_layer is None


def test_stack_slices_keep_their_own_objects(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((5, 40, 50), np.float32))
    controller = make_controller(viewer, image)
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 10, 10), True)
    viewer.dims.set_current_step(0, 3)
    assert not controller.preview_layer.data.any()  # slice 3 has no object yet
    controller.add_click_world((3, 20, 30), True)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((40, 50), 20, 30))
    viewer.dims.set_current_step(0, 1)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((40, 50), 10, 10))
    controller.commit()  # commits slice 1 only
    labels = controller.labels_layer.data
    assert labels.shape == (5, 40, 50)
    np.testing.assert_array_equal(labels[1] == 1, disk((40, 50), 10, 10))
    assert not labels[3].any() and not labels[0].any()
    viewer.dims.set_current_step(0, 3)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((40, 50), 20, 30))
    assert len(controller.points_layer.data) == 1  # slice 3's click is still there
    controller.commit()
    np.testing.assert_array_equal(controller.labels_layer.data[3] == 2, disk((40, 50), 20, 30))
    assert [r.slice_keys for r in controller.click_log.records] == [[(1,)], [(3,)]]


def test_4d_rgb_scale_translate(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((2, 3, 30, 40, 3), np.uint8)
    image = viewer.add_image(data, rgb=True, scale=(1, 2, 0.5, 0.5), translate=(0, 0, 10, -5))
    controller = make_controller(viewer, image)
    assert controller.geometry.label_shape == (2, 3, 30, 40)
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    # world (t=1, z=4 (data 2), y=10+0.5*12, x=-5+0.5*20) -> data (1, 2, 12, 20)
    assert controller.add_click_world((1, 4, 16.0, 5.0), True)
    assert controller.state.objects.slices[(1, 2)].clicks[0].row == 12
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((30, 40), 12, 20))
    assert not controller.add_click_world((1, 4, 9.0, 5.0), True)  # above the image
    controller.commit()
    labels = controller.labels_layer
    np.testing.assert_allclose(labels.scale, (1, 2, 0.5, 0.5))
    np.testing.assert_allclose(labels.translate, (0, 0, 10, -5))
    np.testing.assert_allclose(controller.preview_layer.scale, (0.5, 0.5))
    np.testing.assert_array_equal(labels.data[1, 2] == 1, disk((30, 40), 12, 20))
    assert labels.data[0].max() == 0


def test_never_overwrite_and_edit_existing_label(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32))
    existing = np.zeros((40, 40), np.int32)
    existing[:, :20] = 7
    labels = viewer.add_labels(existing.copy())
    controller = make_controller(viewer, image)
    controller.set_labels_layer(labels)
    assert controller.next_label_id() == 8
    controller.add_click_world((20, 20), True)
    controller.commit()
    new = disk((40, 40), 20, 20)
    np.testing.assert_array_equal(labels.data == 8, new & (existing == 0))
    assert (labels.data == 7).sum() == 800  # label 7 untouched
    controller.add_click_world((20, 8), True)  # entirely inside label 7: nothing to paint
    assert not controller.commit() and "existing labels" in viewer.status
    assert len(controller.current_object().clicks) == 1  # the object stays for another try
    controller.reset_object()

    controller.update(overwrite=True)
    controller.add_click_world((5, 10), True)
    controller.commit()
    np.testing.assert_array_equal(labels.data == 9, disk((40, 40), 5, 10))

    # edit label 8: start from its mask, refine, commit replaces only label 8; the id chosen for the
    # next new object (30) is kept for it, not used up by the edit
    before = labels.data.copy()
    controller.update(overwrite=False, label_id=30)
    click(controller, image, (20, 25), modifiers=("Shift",))
    assert controller.current_object().edit_label == 8
    np.testing.assert_array_equal(controller.preview_layer.data > 0, before == 8)
    controller.add_click_world((20, 26), False)
    controller.commit()
    expected = (before == 8) & ~disk((40, 40), 20, 26)
    np.testing.assert_array_equal(labels.data == 8, expected)
    np.testing.assert_array_equal(labels.data == 9, before == 9)
    assert (labels.data == 7).sum() == (before == 7).sum()
    assert controller.settings.label_id == 30
    controller.add_click_world((32, 32), True)
    assert controller.commit()
    assert (labels.data == 30).any() and controller.settings.label_id is None
    assert controller.next_label_id() == 31


def test_threaded_runner_newest_state_wins(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32))
    calls = []

    def slow_factory(model):
        seg = DiskSegmenter(model, delay=0.15)
        original = seg.add_click

        def counted(row, col, positive):
            calls.append((row, col, threading.current_thread().name))
            return original(row, col, positive)

        seg.add_click = counted
        return seg

    runner = ThreadedRunner()
    controller = make_controller(viewer, image, runner=runner, factory=slow_factory)
    busy_states = []
    controller.on_busy = busy_states.append
    for col in (5, 15, 25, 35):
        controller.add_click_world((20, col), True)
    controller.commit()  # deferred until the newest prediction is in
    qtbot.waitUntil(lambda: controller.labels_layer is not None, timeout=10000)
    expected = np.zeros((40, 40), bool)
    for col in (5, 15, 25, 35):
        expected |= disk((40, 40), 20, col)
    np.testing.assert_array_equal(controller.labels_layer.data == 1, expected)
    assert all(name == "fcfi-inference" for *_rc, name in calls)
    assert len(calls) < 8  # bursts coalesce: no full replay per click
    assert True in busy_states
    qtbot.waitUntil(lambda: busy_states[-1] is False, timeout=5000)
    runner.shutdown()


def test_errors_become_notifications_and_keep_labels(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((30, 30), np.float32))
    labels = viewer.add_labels(np.full((30, 30), 3, np.int32))
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda message: shown.append(message))

    def missing(source, device):
        raise FileNotFoundError("no bundled weights")

    controller = SegmentationController(
        viewer, ModelCache(loader=missing), segmenter_factory=DiskSegmenter, runner=ImmediateRunner()
    )
    controller.set_image_layer(image)
    controller.set_labels_layer(labels)
    controller.add_click_world((10, 10), True)
    assert shown and "bundled default weights" in shown[0]
    controller.add_click_world((12, 12), True)
    assert len(shown) == 1  # the same failure is notified once, the status keeps saying it
    assert not controller.commit()
    assert (labels.data == 3).all()


def test_switching_image_layers_keeps_each_images_objects(make_napari_viewer):
    viewer = make_napari_viewer()
    first = viewer.add_image(np.zeros((30, 30), np.float32), name="first")
    second = viewer.add_image(np.zeros((30, 30), np.float32), name="second")
    controller = make_controller(viewer, first)
    controller.add_click_world((10, 10), True)
    first_points = controller.points_layer
    controller.set_image_layer(second)
    assert controller.points_layer is not first_points and not first_points.visible
    assert not controller.preview_layer.data.any()
    controller.add_click_world((20, 20), True)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((30, 30), 20, 20))
    controller.set_image_layer(first)
    assert controller.points_layer is first_points and first_points.visible
    np.testing.assert_array_equal(controller.preview_layer.data > 0, disk((30, 30), 10, 10))
    controller.commit()
    np.testing.assert_array_equal(controller.labels_layer.data == 1, disk((30, 30), 10, 10))
    # removing an image layer removes its helper layers, never labels
    labels = controller.labels_layer
    viewer.layers.remove(second)
    assert all("second FCFI" not in layer.name for layer in viewer.layers)
    assert labels in viewer.layers


def test_lazy_multichannel_stack(make_napari_viewer):
    import dask.array as da

    viewer = make_napari_viewer()
    data = da.zeros((2, 6, 32, 36), dtype=np.uint16, chunks=(1, 1, 32, 36))  # (c, z, y, x)
    image = viewer.add_image(data)
    seen = []

    def factory(model):
        seg = DiskSegmenter(model)
        original = seg.set_image

        def spy(array, channel_axis=None, channel=None, initial_mask=None):
            seen.append((type(array), array.shape, channel_axis, channel))
            original(array, channel_axis=channel_axis, channel=channel, initial_mask=initial_mask)

        seg.set_image = spy
        return seg

    controller = make_controller(viewer, image, factory=factory)
    controller.set_image_layer(image, channel_axis=0, channel=1)
    assert controller.geometry.label_shape == (6, 32, 36)
    viewer.dims.set_current_step(1, 4)  # world axes (c, z, y, x): z = 4
    assert controller.add_click_world((0, 4, 16, 18), True)
    assert seen == [(np.ndarray, (2, 32, 36), 0, 1)]  # only the slice was read, channels first
    assert controller.state.objects.slices[(4,)].mask.sum() == disk((32, 36), 16, 18).sum()
    with pytest.raises(ValueError, match="leading channel axis"):
        controller.set_image_layer(image, channel_axis=1)


def test_stale_results_are_dropped(make_napari_viewer):
    from napari_fcfi.plugin.worker import JobResult

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((30, 30), np.float32))
    controller = make_controller(viewer, image)
    controller.add_click_world((10, 10), True)
    obj = controller.current_object()
    fresh = obj.mask.copy()
    slot = (controller.state.image_id, ())
    controller.predictor._newest[slot] = 5  # a newer request is in flight
    controller.predictor._deliver(JobResult(slot, 4, value=None))  # an older answer: dropped
    controller.predictor._deliver(JobResult(("other image", ()), 5, value=None))
    np.testing.assert_array_equal(obj.mask, fresh)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, fresh)


def test_mouse_through_napari_dispatch(make_napari_viewer):
    """napari's own press/move/release dispatch (the persisted, re-wrapped event) drives the callback."""
    import wrapt
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32), scale=(2, 2))
    controller = make_controller(viewer, image)
    layer = controller.points_layer

    def send(dispatch, kind, position, button=1, modifiers=()):
        event = SimpleNamespace(
            type=kind,
            position=position,
            button=button,
            modifiers=modifiers,
            handled=False,
            is_dragging=kind == "mouse_move",
        )
        dispatch(layer, wrapt.ObjectProxy(event))

    send(mouse_press_callbacks, "mouse_press", (20.0, 30.0), button=2)  # world (20, 30) = data (10, 15)
    send(mouse_release_callbacks, "mouse_release", (20.0, 30.0), button=2)
    send(mouse_press_callbacks, "mouse_press", (40.0, 40.0))
    send(mouse_move_callbacks, "mouse_move", (60.0, 70.0))  # a drag: no click
    send(mouse_release_callbacks, "mouse_release", (60.0, 70.0))
    assert controller.state.objects.slices[()].clicks == (Click(10, 15, False),)


def test_switching_model_mid_flight_recomputes_with_new_model(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 40), np.float32))
    loads = []

    def loader(source, device):
        loads.append(source)
        return SimpleNamespace(radius={"small": 3, "large": 8}[source])

    class RadiusSegmenter(DiskSegmenter):
        def _prob(self, clicks):
            rows, cols = np.ogrid[: self.shape[0], : self.shape[1]]
            mask = np.zeros(self.shape, bool)
            for row, col, _positive in clicks:
                mask |= (rows - row) ** 2 + (cols - col) ** 2 <= self.model.radius**2
            return mask.astype(np.float32)

    runner = ThreadedRunner()
    controller = SegmentationController(
        viewer,
        ModelCache(loader=loader),
        segmenter_factory=lambda model: RadiusSegmenter(model, delay=0.2),
        runner=runner,
        settings=AnnotationSettings(model_source="small"),
    )
    controller.set_image_layer(image)
    controller.add_click_world((20, 20), True)
    controller.update(model_source="large")  # while the first prediction runs
    qtbot.waitUntil(
        lambda: (controller.preview_layer.data > 0).sum() == disk((40, 40), 20, 20, radius=8).sum(),
        timeout=10000,
    )
    assert loads == ["small", "large"]  # each model loaded once
    controller.update(model_source="small")
    qtbot.waitUntil(
        lambda: (controller.preview_layer.data > 0).sum() == disk((40, 40), 20, 20, radius=3).sum(),
        timeout=10000,
    )
    assert loads == ["small", "large"]  # cached: no second load
    runner.shutdown()


def test_annotation_needs_the_2d_yx_view(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4, 30, 30), np.float32))
    controller = make_controller(viewer, image)
    viewer.dims.ndisplay = 3
    assert not controller.add_click_world((1, 10, 10), True)
    assert "2D view" in viewer.status
    viewer.dims.ndisplay = 2
    viewer.dims.order = (1, 0, 2)  # y is now a slider axis
    assert not controller.add_click_world((1, 10, 10), True)
    viewer.dims.order = (0, 1, 2)
    assert controller.add_click_world((1, 10, 10), True)
