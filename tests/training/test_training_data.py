"""Training data: normalisation, augmentation, sampling, synthetic images, folders, clicks, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.standins import ContractStandIn, toy_training_items
from napari_fcfi.engine.clicks import Click
from napari_fcfi.evaluation.splits import split_instance_folder
from napari_fcfi.model.click_encoding import newest_click_tensor, points_tensor
from napari_fcfi.training.augment import IntensityAugmentation, flip_rotate, normalise_like_engine
from napari_fcfi.training.clicks import sample_initial_clicks
from napari_fcfi.training.data import (
    TrainingSampler,
    crop_window,
    load_instance_folder,
    make_labeled_image,
)
from napari_fcfi.training.losses import fcfi_loss, normalized_focal_loss
from napari_fcfi.training.synthetic import GENERATORS


# ------------------------------------------------------------------ augmentation / data
def test_training_normalisation_is_the_engines():
    """A training crop is normalised exactly as the engine shows the same pixels of the whole image."""
    from napari_fcfi.engine.intensity import normalize_intensity

    image = np.linspace(0, 1000, 10000, dtype=np.float32).reshape(100, 100)
    image[0, 0] = np.nan
    engine = normalize_intensity(image)
    ours = normalise_like_engine(image[20:60, 30:70], image)
    assert ours.shape == (40, 40, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, engine[20:60, 30:70], atol=1e-6)
    assert not normalise_like_engine(np.full((8, 8), 7.0), np.full((8, 8), 7.0)).any()
    rgb = np.random.default_rng(0).random((30, 30, 3)).astype(np.float32) * [1, 2, 3]
    np.testing.assert_allclose(normalise_like_engine(rgb, rgb), normalize_intensity(rgb), atol=1e-6)


def test_flip_rotate_keeps_image_and_mask_aligned(rng):
    image = rng.random((40, 50, 3)).astype(np.float32)
    mask = (image[..., 0] > 0.5)[..., None]
    for seed in range(8):
        out_image, out_mask = flip_rotate(image, mask, np.random.default_rng(seed))
        assert out_image.shape[:2] == out_mask.shape[:2]
        np.testing.assert_array_equal(out_image[..., 0] > 0.5, out_mask[..., 0])


def test_sampler_crops_keep_mask_on_its_object():
    """The mask of a crop is exactly the thresholded object in the (un-augmented) image crop."""
    image = np.zeros((120, 140), np.float32)
    labels = np.zeros((120, 140), np.int32)
    labels[30:50, 40:70] = 1
    labels[80:100, 90:110] = 2
    image[labels == 1] = 100.0
    image[labels == 2] = 50.0
    item = make_labeled_image(image, labels)
    sampler = TrainingSampler([item], crop_size=64, augment=False)
    for which in (0, 1):
        sample = sampler.sample_object(item, which, np.random.default_rng(which))
        level = 1.0 if which == 0 else 0.5
        on_object = np.isclose(sample.image[0], level, atol=0.05)
        assert sample.mask.shape == (1, 64, 64)
        agreement = (on_object == (sample.mask[0] > 0.5)).mean()
        assert agreement > 0.97
        row, col, positive = sample.clicks[0]
        assert positive and sample.mask[0, row, col] == 1


def test_augmented_samples_keep_clicks_on_mask():
    sampler = TrainingSampler(toy_training_items(), crop_size=64, seed=3)
    for index in range(6):
        sample = sampler.sample(step=0, index=index)
        assert sample.image.shape == (3, 64, 64) and sample.image.min() >= 0 and sample.image.max() <= 1
        for row, col, positive in sample.clicks:
            assert sample.mask[0, row, col] == (1.0 if positive else 0.0)


def test_intensity_augmentation_changes_range_but_keeps_shape(rng):
    image = rng.random((32, 32)).astype(np.float32)
    outs = []
    for seed in range(10):
        draw = np.random.default_rng(seed)
        outs.append(IntensityAugmentation.draw(image, draw).apply(image, draw))
    assert all(o.shape in {(32, 32), (32, 32, 3)} for o in outs)
    assert max(o.max() for o in outs) > 100  # 12/16-bit-like ranges happen
    # The same draw applied to a crop gives that crop of the augmented image (noise aside).
    quiet = IntensityAugmentation.draw(image, np.random.default_rng(1))
    quiet.photons = quiet.read_noise = quiet.blur_sigma = None
    whole = quiet.apply(image, rng)
    np.testing.assert_allclose(quiet.apply(image[5:20, 8:30], rng), whole[5:20, 8:30], rtol=1e-6)


def test_sampler_is_deterministic_per_step_and_index():
    items = toy_training_items()
    a = TrainingSampler(items, crop_size=48, seed=1).batch(step=5, batch_size=3)
    b = TrainingSampler(items, crop_size=48, seed=1).batch(step=5, batch_size=3)
    c = TrainingSampler(items, crop_size=48, seed=1).batch(step=6, batch_size=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[2] == b[2]
    assert not torch.equal(a[0], c[0])


def test_crop_window_pads_outside_the_image():
    array = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = crop_window(array, -1, 2, 3, 4, fill=-5)
    assert out.shape == (3, 4)
    np.testing.assert_array_equal(out[0], -5)
    np.testing.assert_array_equal(out[1], [2, 3, -5, -5])


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_synthetic_generators_are_seeded_and_labelled(kind):
    image_a, labels_a = GENERATORS[kind](np.random.default_rng(4), (96, 96))
    image_b, labels_b = GENERATORS[kind](np.random.default_rng(4), (96, 96))
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(labels_a, labels_b)
    assert image_a.shape == labels_a.shape == (96, 96)
    assert labels_a.max() >= 1 and np.isfinite(image_a).all()


def test_dsb_folder_reads_and_splits(dsb_dir):
    train, val = split_instance_folder(dsb_dir)
    assert len(val) == pytest.approx(0.15 * (len(train) + len(val)), abs=1)
    assert not set(train) & set(val)
    items = load_instance_folder(dsb_dir, val[:3])
    assert len(items) == 3
    for item in items:
        assert item.labels.shape == item.image.shape[:2] and len(item.object_ids) > 0


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_instance_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="pairs"):
        load_instance_folder(tmp_path)


# ------------------------------------------------------------------ clicks
def test_initial_clicks_and_tensors():
    mask = np.zeros((50, 50), bool)
    mask[10:30, 10:30] = True
    for seed in range(20):
        clicks = sample_initial_clicks(mask, np.random.default_rng(seed))
        assert clicks[0].positive  # first click is positive
        for row, col, positive in clicks:
            assert mask[row, col] == positive
    sets = [[Click(1, 2, True), Click(3, 4, False), Click(5, 6, True)], [Click(7, 8, True)]]
    points = points_tensor(sets)
    assert points.shape == (2, 4, 3)
    assert points[0, 0].tolist() == [1, 2, 0] and points[0, 1].tolist() == [5, 6, 2]
    assert points[0, 2].tolist() == [3, 4, 1] and points[0, 3].tolist() == [-1, -1, -1]
    assert points[1, 2].tolist() == [-1, -1, -1]
    assert newest_click_tensor(sets).tolist() == [[[5, 6, 1]], [[7, 8, 1]]]
    assert newest_click_tensor([[(2.6, 9.4, False)]], truncate=True).tolist() == [[[2, 9, 0]]]
    assert newest_click_tensor([[(2.6, 9.7, True)]], size=(8, 8)).tolist() == [[[3, 7, 1]]]
    with pytest.raises(ValueError, match="empty"):
        sample_initial_clicks(np.zeros((5, 5), bool), np.random.default_rng(0))


# ------------------------------------------------------------------ losses
def test_normalized_focal_loss_orders_good_and_bad_predictions():
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    good = (target * 2 - 1) * 4
    bad = -good
    assert (normalized_focal_loss(good, target) < normalized_focal_loss(bad, target)).all()
    window = torch.zeros_like(target)
    window[:, :, :8] = 1
    masked = normalized_focal_loss(torch.sigmoid(good), target, valid=window, from_probabilities=True)
    assert masked.shape == (2,) and torch.isfinite(masked).all()
    with pytest.raises(ValueError, match="differ"):
        normalized_focal_loss(good, target[:, :, :8])


def test_fcfi_loss_uses_all_outputs():
    torch.manual_seed(0)
    net = ContractStandIn()
    image = torch.rand(2, 4, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    sets = [[(10, 10, True)], [(20, 5, True)]]
    out = net(image, points_tensor(sets), newest_click_tensor(sets), 1.0, is_training=True)
    total, parts = fcfi_loss(out, target)
    assert set(parts) == {"instances", "feedback1", "feedback2"}
    total.backward()
    assert all(p.grad is not None for p in net.parameters())
