"""A click log replays exactly when the threshold changed between objects, and names a model it can load."""

from __future__ import annotations

import numpy as np
import tifffile
from plugin.test_widget import make_widget

from helpers.cli import segment_from_log
from helpers.standins import BlobNet
from napari_fcfi.annotation.clicklog import ClickLog
from napari_fcfi.cli import main
from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.propagating import start_propagation


def test_objects_replay_at_their_own_threshold(make_napari_viewer, tmp_path, monkeypatch, one_torch_thread):
    import napari_fcfi.model as model_room

    network = BlobNet(radius=6.0, brightness_weight=4.0).eval()  # soft edges: the threshold matters
    monkeypatch.setattr(model_room, "load_model", lambda source, device="auto", **_: network)
    cache = ModelCache(loader=lambda source, device: network)
    rng = np.random.default_rng(1)
    image = rng.random((4, 48, 56)).astype(np.float32) * 0.3
    image[:, 10:30, 10:28] += 0.8
    image[:, 26:44, 30:50] += 0.5
    viewer = make_napari_viewer()
    viewer.add_image(image, name="stack")
    settings = {"input_size": 64, "focus_growth_steps": 0}
    widget = make_widget(
        viewer, tmp_path, cache=cache, factory=lambda model: InteractiveSegmenter(model, **settings)
    )
    controller = widget.controller
    controller.engine_settings.update(settings)
    widget.channel_menu.value = (None, None)
    controller.update(model_source="blob")
    viewer.dims.set_current_step(0, 1)
    widget.threshold.value = 0.3
    controller.add_click_world((1, 20, 18), True)
    assert controller.commit()
    widget.threshold.value = 0.7  # the user tightens the threshold for the next object
    controller.add_click_world((1, 34, 40), True)
    assert controller.commit()
    widget.threshold.value = 0.6  # propagate at 0.6, then commit at 0.4
    viewer.dims.set_current_step(0, 2)
    controller.add_click_world((2, 20, 18), True)
    assert start_propagation(controller, "up", None, threaded=False) is not None
    widget.threshold.value = 0.4
    assert controller.commit()
    labels = controller.labels_layer.data.copy()
    assert set(np.unique(labels)) == {0, 1, 2, 3}

    log_path = widget.save_click_log(tmp_path / "clicks.csv")
    log = ClickLog.load(log_path)
    assert [r.threshold for r in log.records] == [0.3, 0.7, 0.4]
    assert {s.threshold for s in log.records[2].steps} >= {0.6}
    tifffile.imwrite(tmp_path / "stack.tif", image)
    assert (
        segment_from_log(
            str(tmp_path / "stack.tif"), str(log_path), str(tmp_path / "replayed.tif"), "--device", "cpu"
        )
        == 0
    )
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "replayed.tif"), labels)
    # one threshold for everything, when asked
    assert (
        segment_from_log(
            str(tmp_path / "stack.tif"),
            str(log_path),
            str(tmp_path / "at_half.tif"),
            "--device",
            "cpu",
            "--threshold",
            "0.5",
        )
        == 0
    )
    assert not np.array_equal(tifffile.imread(tmp_path / "at_half.tif"), labels)


def test_objects_replay_with_the_model_they_were_made_with(
    make_napari_viewer, tmp_path, monkeypatch, one_torch_thread
):
    import napari_fcfi.model as model_room

    networks = {"small": BlobNet(radius=4.0).eval(), "large": BlobNet(radius=9.0).eval()}
    monkeypatch.setattr(model_room, "load_model", lambda source, device="auto", **_: networks[source])
    cache = ModelCache(loader=lambda source, device: networks[source])
    image = np.random.default_rng(2).random((48, 56)).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells")
    settings = {"input_size": 64, "focus_growth_steps": 0}
    widget = make_widget(
        viewer, tmp_path, cache=cache, factory=lambda model: InteractiveSegmenter(model, **settings)
    )
    controller = widget.controller
    controller.engine_settings.update(settings)
    controller.update(model_source="small")
    controller.add_click_world((14, 14), True)
    assert controller.commit()
    controller.update(model_source="large")  # the user switches model between objects
    controller.add_click_world((32, 38), True)
    assert controller.commit()
    labels = controller.labels_layer.data.copy()
    assert (labels == 1).sum() < (labels == 2).sum()

    log_path = widget.save_click_log(tmp_path / "clicks.csv")
    assert [r.made_with["model"] for r in ClickLog.load(log_path).records] == ["small", "large"]
    tifffile.imwrite(tmp_path / "cells.tif", image)
    args = ["segment", str(tmp_path / "cells.tif"), "--clicks", str(log_path), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "replayed.tif")]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "replayed.tif"), labels)
    # --model: every object with that model, as told
    assert main([*args, "--out", str(tmp_path / "all_large.tif"), "--model", "large"]) == 0
    assert (tifffile.imread(tmp_path / "all_large.tif") == 1).sum() > (labels == 1).sum()
    widget.close_controller()


def test_log_saved_with_an_adapted_model_names_a_file_fcfi_segment_loads(
    make_napari_viewer, tmp_path, tiny_fcfi_net, one_torch_thread
):
    from napari_fcfi.model import load_model
    from napari_fcfi.training.finetune import finetune

    rng = np.random.default_rng(0)
    image = (rng.random((64, 64)) * 0.2).astype(np.float32)
    image[20:40, 20:40] += 1.0
    labels = np.zeros((64, 64), np.int32)
    labels[20:40, 20:40] = 1
    adapted = finetune(tiny_fcfi_net, [image], [labels], steps=1, seed=0)
    cache = ModelCache(loader=lambda source, device: tiny_fcfi_net)
    cache.put("adapted from default", "cpu", adapted)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    widget = make_widget(viewer, tmp_path, cache=cache, factory=lambda model: InteractiveSegmenter(model))
    controller = widget.controller
    controller.update(model_source="adapted from default", threshold=0.05)
    controller.add_click_world((30, 30), True)
    assert controller.commit(), widget.status.value
    committed = controller.labels_layer.data.copy()

    (tmp_path / "logs").mkdir()
    log_path = widget.save_click_log(tmp_path / "logs" / "clicks.csv")
    assert log_path is not None, widget.status.value
    weights = tmp_path / "logs" / "clicks.model.safetensors"
    assert weights.is_file() and weights.with_suffix(".md").is_file()
    assert ClickLog.load(log_path).metadata["model"] == "clicks.model.safetensors"
    assert "with the model in use" in widget.status.value
    assert load_model(weights, device="cpu").fcfi_metadata["adaptation"]
    tifffile.imwrite(tmp_path / "img.tif", image)
    assert (
        segment_from_log(
            str(tmp_path / "img.tif"), str(log_path), str(tmp_path / "replayed.tif"), "--device", "cpu"
        )
        == 0
    )
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "replayed.tif"), committed)
