"""The magicgui dock widget in a real viewer: menus, keys, click log, the real engine, replay equality."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from magicgui.widgets import Container

from helpers.cli import segment_from_log
from helpers.standins import DiskSegmenter, disk
from napari_fcfi.annotation.clicklog import ClickLog
from napari_fcfi.plugin.channels import channel_choices
from napari_fcfi.plugin.controller import SHORTCUTS
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner, ThreadedRunner


def fake_cache():
    return ModelCache(loader=lambda source, device: SimpleNamespace(name=source, device=device))


def make_widget(viewer, tmp_path, runner=None, factory=DiskSegmenter, cache=None):
    widget = FCFIWidget(
        viewer,
        model_cache=cache or fake_cache(),
        segmenter_factory=factory,
        runner=runner or ImmediateRunner(),
        journal_root=tmp_path / "journals",
    )
    viewer.window.add_dock_widget(widget, name="FCFI", area="right")
    return widget


def test_widget_is_a_magicgui_container_whose_menus_follow_the_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((30, 40), np.float32), name="a")
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    assert isinstance(widget, Container)
    assert controller.image_layer.name == "a" and widget.image_menu.value.name == "a"
    assert "Space" in widget.buttons["commit"].tooltip and "Ctrl+Shift+Z" in widget.buttons["redo"].tooltip
    assert len(SHORTCUTS) == 4

    rgb = viewer.add_image(np.zeros((20, 25, 3), np.uint8), rgb=True, name="rgb")
    assert rgb in widget.image_menu.choices  # napari refreshed the annotated menu by itself
    widget.image_menu.value = rgb
    assert controller.image_layer is rgb and controller.geometry.label_shape == (20, 25)
    assert [t for t, _v in channel_choices(rgb)][:2] == ["RGB composite", "channel 0"]
    widget.channel_menu.value = (None, 1)
    assert controller.state.channel == 1

    # a labels layer of another shape is not offered, and the tooltip says why
    viewer.add_labels(np.zeros((5, 5), np.uint8), name="tiny labels")
    widget.labels_menu.reset_choices()
    assert all(layer.name != "tiny labels" for layer in widget.labels_menu.choices if layer is not None)
    assert "tiny labels" in widget.labels_menu.tooltip and "shape" in widget.labels_menu.tooltip

    # keyboard shortcuts are bound on the clicks layer
    controller.add_click_world((10, 12), True)
    by_key = {str(key): func for key, func in controller.points_layer.keymap.items()}
    assert {"Space", "Ctrl+Z", "Ctrl+Shift+Z", "Escape"} <= set(by_key)
    by_key["Ctrl+Z"](controller.points_layer)
    assert len(controller.points_layer.data) == 0
    by_key["Ctrl+Shift+Z"](controller.points_layer)
    assert len(controller.points_layer.data) == 1
    assert "1 click(s)" in widget.object_info.value and "rgb labels (new)" in widget.object_info.value
    by_key["Space"](controller.points_layer)
    labels = controller.labels_layer
    np.testing.assert_array_equal(labels.data == 1, disk((20, 25), 10, 12))
    assert widget.labels_menu.value is labels  # the menu shows the layer the commit created
    assert widget.label_id.value == 2 and "rgb labels" in widget.object_info.value

    # a chosen label id is used for the next object, then the widget returns to the next free id
    widget.label_id.value = 5
    controller.add_click_world((3, 3), True)
    widget.buttons["commit"].clicked.emit()
    assert (labels.data == 5).sum() == (disk((20, 25), 3, 3) & (labels.data != 1)).sum()
    assert widget.label_id.value == 6
    assert "on cpu" in widget.model_info.value


def test_widget_reports_missing_default_weights(make_napari_viewer, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((30, 30), np.float32))
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)

    def missing(source, device):
        raise FileNotFoundError(source)

    widget = make_widget(viewer, tmp_path, cache=ModelCache(loader=missing))
    widget.controller.add_click_world((10, 10), True)
    assert "bundled default weights" in widget.status.value and shown
    widget.model_menu.value = "weights file…"
    assert not widget.weights_file.native.isHidden() and "choose a weights file" in widget.status.value


def test_click_log_records_slices_and_settings(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 30, 30), np.float32), axis_labels=("z", "y", "x"))  # a short stack, named
    widget = make_widget(viewer, tmp_path)
    controller = widget.controller
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 10, 10), True)
    controller.add_click_world((2, 10, 14), False)
    controller.commit()
    viewer.dims.set_current_step(0, 0)
    controller.add_click_world((0, 20, 20), True)
    controller.commit()
    path = widget.save_click_log(tmp_path / "clicks.csv")
    log = ClickLog.load(path, plane_shape=(30, 30))
    assert log.axes == ("z",)
    assert [(r.label_id, r.slice_keys, [tuple(c) for c in r.clicks]) for r in log.records] == [
        (1, [(2,)], [(10, 10, True), (10, 14, False)]),
        (2, [(0,)], [(20, 20, True)]),
    ]
    settings = log.metadata["settings"]
    assert log.metadata["model"] == "default" and settings["threshold"] == pytest.approx(0.49)
    assert settings["labels_dtype"] == "uint32" and settings["scale"] == [1.0, 1.0, 1.0]


@pytest.fixture
def tiny_model(tmp_path):
    """A tiny real network saved to a file, and a cache that holds it under that file's path."""
    import torch

    from napari_fcfi.model import save_model
    from napari_fcfi.model.networks import FCFIHRNet

    torch.manual_seed(0)
    network = FCFIHRNet(width=4, ocr_width=4, small=True, mid_ch=4).eval()
    path = str(save_model(network, tmp_path / "tiny.safetensors", metadata={"input_size": 64}))
    cache = ModelCache(loader=lambda source, device: pytest.fail("the model must come from the cache"))
    cache.put(path, "cpu", network)
    return network, path, cache


def test_real_engine_in_worker_thread(make_napari_viewer, qtbot, tmp_path, one_torch_thread, tiny_model):
    """The real InteractiveSegmenter with a tiny real network, off the main thread; threshold without rerun."""
    from napari_fcfi.engine import InteractiveSegmenter

    network, path, cache = tiny_model
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((48, 56)).astype(np.float32)
    viewer.add_image(image)
    runner = ThreadedRunner()
    widget = make_widget(
        viewer,
        tmp_path,
        runner=runner,
        cache=cache,
        factory=lambda model: InteractiveSegmenter(model, input_size=64),
    )
    controller = widget.controller
    controller.update(model_source=path)
    controller.add_click_world((20, 25), True)
    controller.add_click_world((30, 30), False)
    obj = controller.current_object()
    qtbot.waitUntil(
        lambda: obj.probability is not None and len(controller.predictor._newest) == 0, timeout=60000
    )
    np.testing.assert_array_equal(controller.preview_layer.data > 0, obj.mask)
    # an untrained net predicts a nearly flat map: cut at its median for a real, partial object
    threshold = float(np.median(obj.probability.values))
    jobs_before = []
    runner.submit = lambda *args: jobs_before.append(args)  # a threshold change must not run the network
    widget.threshold.value = 0.3
    assert controller.settings.threshold == pytest.approx(0.3)
    controller.update(threshold=threshold)  # the exact value (the spin box shows two decimals)
    assert jobs_before == []
    np.testing.assert_array_equal(controller.preview_layer.data > 0, obj.mask)
    live_mask = obj.mask.copy()
    assert 0 < live_mask.sum() < live_mask.size
    controller.commit()
    np.testing.assert_array_equal(controller.labels_layer.data == 1, live_mask)
    replay = InteractiveSegmenter(network, input_size=64, threshold=threshold)
    replay.set_image(image)
    for click in controller.click_log.records[0].clicks:
        replay.add_click(*click)
    np.testing.assert_array_equal(replay.mask, live_mask)
    runner.shutdown()


def test_widget_commits_replay_identically_with_fcfi_segment(
    make_napari_viewer, tmp_path, monkeypatch, one_torch_thread
):
    """A stack with a channel axis, overlapping objects, paint-over, an edit and a propagation: what the
    widget committed is exactly what ``fcfi segment`` makes of the saved click log. The network is a
    deterministic stand-in (bright pixels near the clicks) so that every step does something visible."""
    import napari_fcfi.model as model_room
    from helpers.standins import BlobNet
    from napari_fcfi.engine import InteractiveSegmenter
    from napari_fcfi.plugin.propagating import start_propagation

    network = BlobNet(radius=5.0, brightness_weight=10.0).eval()
    monkeypatch.setattr(model_room, "load_model", lambda source, device="auto", **_: network)
    cache = ModelCache(loader=lambda source, device: network)
    rng = np.random.default_rng(0)
    image = rng.random((2, 6, 48, 56)).astype(np.float32) * 0.2  # (channel, z, y, x)
    image[:, :, 12:32, 14:40] += 1.0
    viewer = make_napari_viewer()
    layer = viewer.add_image(image)
    settings = {"input_size": 64, "focus_growth_steps": 0}
    widget = make_widget(
        viewer, tmp_path, cache=cache, factory=lambda model: InteractiveSegmenter(model, **settings)
    )
    controller = widget.controller
    controller.engine_settings.update(settings)  # what the click log records for replay
    controller.set_image_layer(layer, channel_axis=0, channel=None)
    controller.update(model_source="blob")
    viewer.dims.set_current_step(1, 1)
    controller.add_click_world((0, 1, 20, 20), True)
    controller.add_click_world((0, 1, 28, 24), False)
    assert controller.commit()
    controller.add_click_world((0, 1, 22, 30), True)  # overlaps object 1: paints background only
    assert controller.commit()
    assert controller.select_label(1)  # edit object 1 with one more click
    controller.add_click_world((0, 1, 16, 18), False)
    assert controller.commit()
    controller.update(overwrite=True)
    controller.add_click_world((0, 1, 26, 36), True)  # paints over what it covers
    assert controller.commit()
    controller.update(overwrite=False)
    viewer.dims.set_current_step(1, 3)
    controller.add_click_world((0, 3, 22, 26), True)
    run = start_propagation(controller, "up", None, threaded=False)
    assert run is not None and run.done == 2
    controller.add_click_world((0, 3, 30, 30), False)  # correct the start slice after propagating
    assert controller.commit()
    labels = controller.labels_layer.data.copy()
    assert (
        set(np.unique(labels[1])) == {0, 1, 2, 3} and labels[3].any() and labels[4].any() and labels[5].any()
    )

    log_path = widget.save_click_log(tmp_path / "stack_clicks.csv")
    tifffile.imwrite(tmp_path / "stack.tif", image)
    assert (
        segment_from_log(
            str(tmp_path / "stack.tif"), str(log_path), str(tmp_path / "replayed.tif"), "--device", "cpu"
        )
        == 0
    )
    replayed = tifffile.imread(tmp_path / "replayed.tif")
    assert replayed.dtype == labels.dtype
    np.testing.assert_array_equal(replayed, labels)


def test_widget_docks_through_the_npe2_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.float32))
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-fcfi", "FCFI interactive segmentation")
    assert isinstance(widget, FCFIWidget) and widget.controller.points_layer is not None
    widget.close_controller()


def test_widget_opened_before_any_image(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, tmp_path)
    assert widget.controller.image_layer is None
    widget.controller.add_click_world((1, 1), True)  # no image yet: a message, no crash
    assert "image layer" in widget.status.value
    image = viewer.add_image(np.zeros((3, 20, 20), np.float32), name="late", axis_labels=("z", "y", "x"))
    assert widget.controller.image_layer is image
    assert widget.controller.points_layer.ndim == 3
    widget.label_id.value = 5  # a chosen id works for a labels layer created on the first commit
    viewer.dims.set_current_step(0, 0)
    widget.controller.add_click_world((0, 10, 10), True)
    widget.controller.commit()
    assert set(np.unique(widget.controller.labels_layer.data)) == {0, 5}
    assert widget.label_id.value == 6
    viewer.layers.remove(image)
    assert widget.controller.image_layer is None
    assert not any("FCFI" in layer.name for layer in viewer.layers)  # helper layers went with the image


def test_cpu_threads_setting_applies_to_inference(make_napari_viewer, tmp_path):
    import torch

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.float32))
    widget = make_widget(viewer, tmp_path)
    assert widget.threads.value == widget.controller.settings.cpu_threads >= 1
    torch.set_num_threads(2)
    widget.threads.value = 1
    widget.controller.add_click_world((5, 5), True)
    assert torch.get_num_threads() == 1


def test_widgets_of_one_viewer_share_one_model_cache(make_napari_viewer):
    from napari_fcfi.plugin.models import cache_for_viewer

    viewer = make_napari_viewer()
    other = make_napari_viewer()
    first = FCFIWidget(viewer, runner=ImmediateRunner())
    second = FCFIWidget(viewer, runner=ImmediateRunner())
    assert first.controller.model_cache is second.controller.model_cache is cache_for_viewer(viewer)
    assert cache_for_viewer(other) is not cache_for_viewer(viewer)
    assert first.controller.engine_settings == {"preset": "microscopy"}
    first.close_controller()
    second.close_controller()
