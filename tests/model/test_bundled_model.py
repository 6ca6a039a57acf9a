"""The bundled default model: it loads, is small, is a full FCFI network and segments nuclei."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.paths import SAMPLE_DIR
from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.evaluation.robot import RobotUser
from napari_fcfi.model import load_model
from napari_fcfi.model.fcfi_modules import CollaborativeFeedbackFusion, FocusedFeedbackCorrection
from napari_fcfi.model.registry import BUNDLED_WEIGHTS

MAX_BYTES = 25 * 1024 * 1024


# One intra-op thread: on a shared, oversubscribed CPU two OpenMP threads can be 10x slower.
pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def default_model():
    return load_model("default", device="cpu")


def test_bundled_weights_exist_and_are_small():
    assert BUNDLED_WEIGHTS.name == "fcfi_default.safetensors"
    assert BUNDLED_WEIGHTS.is_file(), f"bundled weights missing: {BUNDLED_WEIGHTS}"
    assert BUNDLED_WEIGHTS.stat().st_size < MAX_BYTES
    assert (BUNDLED_WEIGHTS.parent / "MODEL_CARD.md").is_file()


def test_default_model_is_fcfi_with_ffcm_and_cffm(default_model):
    extractor = default_model.feature_extractor
    assert isinstance(extractor.correction_module, FocusedFeedbackCorrection)
    assert isinstance(extractor.fusion_module, CollaborativeFeedbackFusion)
    # Both modules carry trained weights in the file (a pass-through ablation would have none).
    from safetensors import safe_open

    with safe_open(str(BUNDLED_WEIGHTS), framework="pt") as handle:
        keys = list(handle.keys())
        metadata = handle.metadata()
    assert any(".correction_module." in k for k in keys) and any(".fusion_module." in k for k in keys)
    config = json.loads(metadata["config"])
    assert config["arch"] == "hrnet" and config["with_prev_mask"] is True
    # The engine takes its working size from the metadata: it must be what the model was trained at.
    assert default_model.fcfi_metadata["input_size"] == 256
    settings = InteractiveSegmenter(default_model).settings
    # Trained on 256 px native views shown at 256 px; zoom-in windows down to 64 px (docs/engine.md).
    assert (settings.input_size, settings.focus_size, settings.min_window) == (256, 256, 64)
    assert settings.first_click_zoom == "fresh"


def test_default_model_segments_sample_nuclei_in_three_clicks(default_model):
    import tifffile

    image = tifffile.imread(SAMPLE_DIR / "nuclei_2d.tif")
    labels = tifffile.imread(SAMPLE_DIR / "nuclei_2d_labels.tif")
    segmenter = InteractiveSegmenter(default_model)
    segmenter.set_image(image)
    best = []
    for label in np.unique(labels[labels > 0]):
        truth = labels == label
        robot = RobotUser(truth)
        segmenter.reset()
        prediction = np.zeros_like(truth)
        ious = []
        for _ in range(3):
            click = robot.next_click(prediction)
            if click is None:
                break
            prediction = segmenter.add_click(click.row, click.col, click.positive) > segmenter.threshold
            ious.append((prediction & truth).sum() / (prediction | truth).sum())
        best.append(max(ious))
    best = np.array(best)
    # Measured with the bundled model (MODEL_CARD.md): every nucleus >= 0.88, mean ~0.94.
    assert best.size >= 20
    assert (best > 0.7).all(), f"nuclei below IoU 0.7 after 3 clicks: {np.flatnonzero(best <= 0.7) + 1}"
    assert best.mean() > 0.8


def test_the_previous_default_stays_loadable_by_name(default_model):
    """A shipped model replaces the default; the one before stays loadable for a release."""
    import torch

    from napari_fcfi.annotation.propagation import MIN_CONFIDENCE, stop_confidence
    from napari_fcfi.annotation.proposals import model_min_score, model_proposal_threshold

    previous = load_model("default-v2", device="cpu")
    assert previous.fcfi_metadata["name"] == "fcfi-microscopy-v2"
    assert default_model.fcfi_metadata["name"] == "fcfi-microscopy-v3"
    assert previous.config == default_model.config
    weights = dict(previous.named_parameters())
    assert any(not torch.equal(p, weights[n]) for n, p in default_model.named_parameters())
    # Each model carries its own calibration.
    assert 0.5 < stop_confidence(previous) < 0.9 and 0.3 < model_min_score(previous) < 0.9
    assert {"propagation", "segment_all"} <= set(previous.fcfi_metadata) and stop_confidence(
        previous
    ) != MIN_CONFIDENCE
    assert 0.5 < stop_confidence(default_model) < 0.9 and "propagation" in default_model.fcfi_metadata
    assert 0.4 <= model_min_score(default_model) < 0.8
    assert 0.25 <= model_proposal_threshold(default_model) <= 0.4
