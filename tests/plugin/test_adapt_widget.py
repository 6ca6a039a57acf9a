"""Adapt model in a real viewer: commit objects, adapt (short budget), the widget switches models, save, revert."""

from __future__ import annotations

import numpy as np

from helpers.standins import BlobNet, disk
from helpers.widgets import docked_widget
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.panels import MIN_OBJECTS_TO_ADAPT


def test_adapt_switch_save_revert(make_napari_viewer, qtbot, tmp_path, tiny_fcfi_net, monkeypatch):
    from napari_fcfi.engine import InteractiveSegmenter
    from napari_fcfi.model import load_model
    from napari_fcfi.training import adaptation

    rng = np.random.default_rng(0)
    image = rng.normal(50, 5, (2, 96, 96)).astype(np.float32)
    centres = [(r, c) for r in (16, 48, 80) for c in (16, 48, 80)]
    for z in range(2):
        for r, c in centres:
            image[z][disk((96, 96), r, c, 9)] += 400
    cache = ModelCache(loader=lambda source, device: tiny_fcfi_net)
    viewer = make_napari_viewer()
    viewer.add_image(image, name="cells", axis_labels=("z", "y", "x"))  # two slices, not two channels
    # Commits come from a deterministic stand-in network (bright blobs at the clicks); the model that is
    # adapted is the tiny real FCFI network from the cache.
    blobs = BlobNet(radius=4.0, brightness_weight=8.0).eval()
    widget = docked_widget(
        viewer,
        tmp_path / "j",
        segmenter_factory=lambda m: InteractiveSegmenter(blobs, input_size=64),
        model_cache=cache,
    )
    controller, panel = widget.controller, widget.adapt_panel
    panel.start()
    assert "at least" in panel.result.value  # nothing committed yet
    # commit 18 objects
    for z in range(2):
        viewer.dims.set_current_step(0, z)
        for r, c in centres:
            controller.add_click_world((z, r, c), True)
            assert controller.commit()
    images, labels, objects = panel.training_data()
    assert objects >= MIN_OBJECTS_TO_ADAPT and len(images) == 2 and images[0].shape[:2] == (96, 96)

    # two real training steps; the keep-or-revert verdict is set both ways so the test does not depend
    # on a random network's luck (the rule itself is tested in tests/evaluation)
    from napari_fcfi.training.finetune import finetune

    def verdict(keep):
        def adapt(model, images, labels, progress=None, **kwargs):
            adapted = finetune(model, images, labels, steps=2, seed=0, progress=progress)
            check = adaptation.AdaptationCheck(
                keep=keep,
                objects=4,
                max_clicks=20,
                base={},
                adapted={},
                base_clicks=9.0,
                adapted_clicks=6.0 if keep else 9.5,
                change_percent=-33.0 if keep else 5.0,
                seconds=1.0,
            )
            return adapted, check

        return adapt

    short = verdict(True)

    monkeypatch.setattr(adaptation, "adapt_with_check", short)
    panel.minutes.value = 1
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=120000)
    assert "now using the adapted model" in panel.result.value, panel.result.value
    assert controller.settings.model_source == "adapted from default"
    assert widget.model_menu.value == "adapted from default"  # the menu names the model in use
    assert panel.adapted is not tiny_fcfi_net and panel.revert_button.enabled
    saved = panel.save(tmp_path / "mine")
    assert saved.exists() and saved.with_suffix(".md").exists()
    loaded = load_model(saved, device="cpu")
    assert loaded.fcfi_metadata["adaptation"]["objects"] >= 1
    panel.revert()
    assert controller.settings.model_source == "default" and widget.model_menu.value == "default"

    monkeypatch.setattr(adaptation, "adapt_with_check", verdict(False))
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=120000)
    assert "kept the current model" in panel.result.value and controller.settings.model_source == "default"

    def cancelled(model, images, labels, progress=None, **kwargs):
        progress(0.5, "adapting")  # the user pressed Cancel: the check below measured nothing
        nan = float("nan")
        return model, adaptation.AdaptationCheck(False, 4, 20, {}, {}, nan, nan, nan, 1.0, cancelled=True)

    monkeypatch.setattr(adaptation, "adapt_with_check", cancelled)
    panel.start()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=120000)
    assert "cancelled" in panel.result.value and "nan" not in panel.result.value
    assert panel.adapt_button.enabled and not panel.cancel_button.enabled

    def failing(model, images, labels, progress=None, **kwargs):
        progress(0.4, "adapting")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(adaptation, "adapt_with_check", failing)
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=120000)
    assert panel.result.value == "adaptation failed: out of memory"
    assert panel.progress.value == 40 and not panel.progress.visible  # progress reached the GUI thread
    assert panel.adapt_button.enabled and controller.settings.model_source == "default"
    widget.close_controller()
