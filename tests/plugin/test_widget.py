"""Dock widget, click log, demo helpers and the real engine behind the plugin (pytest-qt, Xvfb)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import napari  # noqa: F401 - a test dependency
import pytestqt  # noqa: F401 - a test dependency
from plugin_helpers import DiskSegmenter, disk

from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.widget import SHORTCUTS, FCFIWidget, channel_choices
from napari_fcfi.plugin.worker import ImmediateRunner, ThreadedRunner


def fake_cache():
    return ModelCache(loader=lambda source, device: SimpleNamespace(name=source, device=device))


def make_widget(viewer, runner=None, factory=DiskSegmenter, cache=None):
    return FCFIWidget(
        viewer,
        model_cache=cache or fake_cache(),
        segmenter_factory=factory,
        runner=runner or ImmediateRunner(),
    )


def test_widget_menus_keys_and_commit(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((30, 40), np.float32), name="a")
    widget = make_widget(viewer)
    controller = widget.controller
    assert controller.image_layer.name == "a"
    assert [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())] == ["a"]
    assert "Space" in widget.commit_button.toolTip() and "Ctrl+Shift+Z" in widget.redo_button.toolTip()

    rgb = viewer.add_image(np.zeros((20, 25, 3), np.uint8), rgb=True, name="rgb")
    assert widget.image_combo.findText("rgb") >= 0
    widget.image_combo.setCurrentIndex(widget.image_combo.findText("rgb"))
    assert controller.image_layer is rgb and controller.geometry.label_shape == (20, 25)
    assert [t for t, _v in channel_choices(rgb)][:2] == ["RGB composite", "channel 0"]
    widget.channel_combo.setCurrentIndex(2)  # channel 1 of the RGB image
    assert controller.channel == 1

    # keyboard shortcuts are bound on the clicks layer
    controller.add_click_world((10, 12), True)
    bound = {str(key) for key in controller.points_layer.keymap}
    assert {"Space", "Ctrl+Z", "Ctrl+Shift+Z", "Escape"} <= bound
    by_key = {str(key): func for key, func in controller.points_layer.keymap.items()}
    by_key["Ctrl+Z"](controller.points_layer)
    assert len(controller.points_layer.data) == 0
    by_key["Ctrl+Shift+Z"](controller.points_layer)
    assert len(controller.points_layer.data) == 1
    by_key["Space"](controller.points_layer)
    labels = controller.labels_layer
    np.testing.assert_array_equal(labels.data == 1, disk((20, 25), 10, 12))
    assert widget.label_spin.value() == 2
    assert widget.labels_combo.currentData() is labels
    assert len(SHORTCUTS) == 4

    # a chosen label id is used for the next object, then the widget returns to the next free id
    widget.label_spin.setValue(5)
    controller.add_click_world((3, 3), True)
    widget.commit_button.click()
    assert (labels.data == 5).sum() == (disk((20, 25), 3, 3) & (labels.data != 1)).sum()
    assert widget.label_spin.value() == 6


def test_widget_reports_missing_default_weights(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((30, 30), np.float32))
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)

    def missing(source, device):
        raise FileNotFoundError(source)

    widget = make_widget(viewer, cache=ModelCache(loader=missing))
    widget.controller.add_click_world((10, 10), True)
    assert "bundled default weights" in widget.status_label.text()
    assert shown
    widget.model_combo.setEditText("other")
    widget._on_model_choice()
    assert widget.controller.model_source == "other"


def test_click_log_saved_and_read_by_engine_io(make_napari_viewer, tmp_path):
    from napari_fcfi.engine.io import load_click_log

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 30, 30), np.float32))
    widget = make_widget(viewer)
    controller = widget.controller
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 10, 10), True)
    controller.add_click_world((2, 10, 14), False)
    controller.commit()
    viewer.dims.set_current_step(0, 0)
    controller.add_click_world((0, 20, 20), True)
    controller.commit()
    path = widget.save_click_log(tmp_path / "clicks.csv")
    log = load_click_log(path)
    assert log.axes == ("z",)
    assert [(r.object, r.position, r.row, r.col, r.positive) for r in log.records] == [
        (1, (2,), 10, 10, True),
        (1, (2,), 10, 14, False),
        (2, (0,), 20, 20, True),
    ]
    assert log.metadata["model"] == "default" and log.metadata["settings"]["threshold"] == pytest.approx(0.49)


def tiny_network():
    import torch
    from napari_fcfi.model.networks import FCFIHRNet

    torch.manual_seed(0)
    return FCFIHRNet(width=4, ocr_width=4, small=True, mid_ch=4).eval()


def test_real_engine_in_worker_thread(make_napari_viewer, qtbot, tmp_path, one_torch_thread):
    """The real InteractiveSegmenter with a tiny real network, run off the main thread."""
    from napari_fcfi.engine import InteractiveSegmenter
    from napari_fcfi.engine.io import load_click_log

    network = tiny_network()
    cache = ModelCache(loader=lambda source, device: pytest.fail("model must come from the cache"))
    cache.put("tiny", "cpu", network)
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((48, 56)).astype(np.float32)
    viewer.add_image(image)
    runner = ThreadedRunner()
    widget = FCFIWidget(
        viewer,
        model_cache=cache,
        segmenter_factory=lambda model: InteractiveSegmenter(model, input_size=64),
        runner=runner,
    )
    controller = widget.controller
    controller.set_model("tiny", "cpu")
    controller.add_click_world((20, 25), True)
    controller.add_click_world((30, 30), False)
    session = controller.current_session()
    qtbot.waitUntil(lambda: session.up_to_date and session.mask is not None, timeout=60000)
    assert session.mask.shape == (48, 56) and session.mask.dtype == bool
    np.testing.assert_array_equal(controller.preview_layer.data > 0, session.mask)
    # an untrained net predicts a nearly flat map: cut at its median for a real, partial object
    probability = session.engine.segmenter.probability  # the worker is idle now
    assert probability.shape == (48, 56) and probability.dtype == np.float32
    threshold = float(np.median(probability))
    controller.set_threshold(threshold)
    qtbot.waitUntil(lambda: session.up_to_date and session.shown_config[-1] == threshold, timeout=60000)
    np.testing.assert_array_equal(controller.preview_layer.data > 0, session.mask)
    live_mask = session.mask.copy()
    assert 0 < live_mask.sum() < live_mask.size
    controller.commit()
    qtbot.waitUntil(lambda: len(controller.click_log) == 1, timeout=60000)
    np.testing.assert_array_equal(controller.labels_layer.data == 1, live_mask)
    # the saved click log replays to the same object with the engine alone
    log = load_click_log(widget.save_click_log(tmp_path / "log.csv"))
    replay = InteractiveSegmenter(network, input_size=64, threshold=threshold)
    replay.set_image(image)
    for record in log.records:
        replay.add_click(record.row, record.col, record.positive)
    np.testing.assert_array_equal(replay.mask, live_mask)
    runner.shutdown()


def test_widgets_of_one_viewer_share_one_model_cache(make_napari_viewer):
    from napari_fcfi.plugin.models import cache_for_viewer

    viewer = make_napari_viewer()
    other = make_napari_viewer()
    first = FCFIWidget(viewer, runner=ImmediateRunner())
    second = FCFIWidget(viewer, runner=ImmediateRunner())
    assert first.controller.model_cache is second.controller.model_cache is cache_for_viewer(viewer)
    assert cache_for_viewer(other) is not cache_for_viewer(viewer)
    assert first.controller.segmenter_settings == {"preset": "microscopy"}


def test_click_log_replays_with_fcfi_segment(make_napari_viewer, tmp_path, one_torch_thread):
    """Objects committed in a stack replay to the same labels through ``fcfi segment``'s code path."""
    import tifffile

    from napari_fcfi.engine import InteractiveSegmenter
    from napari_fcfi.engine.io import load_click_log

    import napari_fcfi.engine.cli as engine_cli
    network = tiny_network()
    cache = ModelCache(loader=lambda source, device: pytest.fail("model must come from the cache"))
    cache.put("tiny", "cpu", network)
    image = np.random.default_rng(0).random((4, 48, 56)).astype(np.float32)
    image[:, 15:30, 18:35] += 2.0
    viewer = make_napari_viewer()
    viewer.add_image(image)
    settings = {"input_size": 64, "focus_growth_steps": 0}  # one network pass per click keeps CI fast
    widget = FCFIWidget(
        viewer,
        model_cache=cache,
        segmenter_factory=lambda model: InteractiveSegmenter(model, **settings),
        runner=ImmediateRunner(),
    )
    controller = widget.controller
    controller.set_model("tiny", "cpu")
    viewer.dims.set_current_step(0, 1)
    controller.add_click_world((1, 20, 25), True)
    # an untrained tiny net predicts a nearly flat probability: cut it at its median so the
    # object is a real, partial mask
    threshold = float(np.median(controller.current_session().engine.segmenter.probability))
    controller.set_threshold(threshold)
    controller.add_click_world((1, 28, 32), False)
    assert 0 < controller.current_session().mask.sum() < 48 * 56
    controller.commit()
    viewer.dims.set_current_step(0, 3)
    controller.add_click_world((3, 10, 10), True)
    controller.commit()
    labels = controller.labels_layer.data.copy()
    assert labels[1].any() and labels[3].any() and not labels[0].any()

    path = widget.save_click_log(tmp_path / "stack_clicks.csv")
    tifffile.imwrite(tmp_path / "stack.tif", image)
    log = load_click_log(path)
    replayed = engine_cli.segment_with_log(
        network, tifffile.imread(tmp_path / "stack.tif"), log, threshold=threshold, **settings
    )
    np.testing.assert_array_equal(replayed, labels)


def test_widget_docks_through_the_npe2_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.float32))
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-fcfi", "FCFI interactive segmentation")
    assert isinstance(widget, FCFIWidget) and widget.controller.points_layer is not None
    widget.controller.close()


def test_widget_opened_before_any_image(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    assert widget.controller.image_layer is None
    widget.controller.add_click_world((1, 1), True)  # no image yet: a message, no crash
    assert "image layer" in widget.status_label.text()
    image = viewer.add_image(np.zeros((3, 20, 20), np.float32), name="late")
    assert widget.controller.image_layer is image
    assert widget.controller.points_layer.ndim == 3
    widget.label_spin.setValue(5)  # a chosen id works for a labels layer created on first commit
    viewer.dims.set_current_step(0, 0)
    widget.controller.add_click_world((0, 10, 10), True)
    widget.controller.commit()
    assert set(np.unique(widget.controller.labels_layer.data)) == {0, 5}
    assert widget.label_spin.value() == 6
    viewer.layers.remove(image)
    assert widget.controller.image_layer is None
    assert not any("FCFI" in layer.name for layer in viewer.layers)


def test_cpu_threads_setting_applies_to_inference(make_napari_viewer):
    import torch

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.float32))
    widget = make_widget(viewer)
    assert widget.threads_spin.value() == widget.controller.cpu_threads >= 1
    torch.set_num_threads(2)
    widget.threads_spin.setValue(1)
    widget.controller.add_click_world((5, 5), True)
    assert torch.get_num_threads() == 1
