"""segment_all: batched first clicks equal single ones, seeds, overlaps, bad input, evaluation metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers.standins import BlobNet
from napari_fcfi import segment_all
from napari_fcfi.annotation.proposals import SegmentAllWarning, drop_labelled, iter_segment_all
from napari_fcfi.annotation.seeds import (
    choose_object_size,
    detect_seeds,
    estimate_object_size,
    object_size_from_labels,
)
from napari_fcfi.engine import ImageSource, InteractiveSegmenter
from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.session import refined_or_first
from napari_fcfi.engine.windows import Box, Patch
from napari_fcfi.evaluation.segment_all_eval import (
    ClassicalVariant,
    choose_proposal_cuts,
    classical_instances,
    detection_scores,
    match_instances,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")

CENTRES = [(20, 20), (20, 60), (60, 30), (64, 80), (100, 100)]
RADIUS = 7


def disks_image(
    shape=(128, 128), centres=CENTRES, radius=RADIUS, dtype=np.uint16
) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 200.0)
    labels = np.zeros(shape, np.int32)
    for index, (r, c) in enumerate(centres, start=1):
        inside = (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
        image[inside] = 3000.0
        labels[inside] = index
    return image.astype(dtype), labels


def brightness_net() -> BlobNet:
    # Logits follow the image: the object under a click is the bright disk (blob radius ~ the disk's).
    return BlobNet(radius=RADIUS, brightness_weight=12.0).eval()


def test_batched_first_clicks_equal_single_first_clicks(tiny_fcfi_net):
    image, _ = disks_image((96, 300))
    points = [(20, 20), (60, 30), (90, 290), (3, 150)]  # includes clicks near the sides (mirrored context)
    session = InteractiveSegmenter(tiny_fcfi_net, focus_size=64, input_size=64)
    session.set_image(image)
    batched = session.first_click_predictions(points, batch_size=3)
    for point, patch in zip(points, batched, strict=True):
        session.reset()
        single = session.add_click(*point)
        assert patch is not None
        np.testing.assert_allclose(patch.to_full(*image.shape), single, atol=1e-5)
    assert session.clicks == [] or len(session.clicks) == 1  # the batched call left the history alone


def test_refinement_feeds_each_first_mask_back_batched_as_single(tiny_fcfi_net):
    image, _ = disks_image((96, 160))
    points = [(20, 20), (60, 30), (90, 150)]
    session = InteractiveSegmenter(tiny_fcfi_net, focus_size=48, input_size=64)
    session.set_image(image)
    first = session.first_click_predictions(points)
    assert all(p is not None for p in first)
    refined = session.refine_predictions(points, first, batch_size=3)
    one_by_one = [session.refine_predictions([p], [f], batch_size=1)[0] for p, f in zip(points, first)]
    for patch, start, single in zip(refined, first, one_by_one, strict=True):
        assert patch.box == start.box  # the same window, a second pass
        np.testing.assert_allclose(patch.values, single.values, atol=1e-5)
    # the feedback input matters: the second pass is not the first one again
    assert any(not np.allclose(r.values, f.values, atol=1e-4) for r, f in zip(refined, first, strict=True))
    zoomed = session.refine_predictions(points, first, zoom=2.0, input_size=48)
    for patch, start in zip(zoomed, first, strict=True):
        box = start.bbox_above(session.threshold)
        assert box is not None
        side = max(32, round(2.0 * max(box.height, box.width)))
        assert (patch.box.height, patch.box.width) == (min(side, 96), min(side, 160))
        assert patch.box.r0 <= box.r0 and patch.box.r1 >= box.r1  # around the first mask
    assert session.clicks == []  # history untouched


def test_a_refined_mask_that_misses_its_click_or_was_cut_by_its_window_is_not_used():
    first = Patch.from_array(Box(10, 14, 10, 14), np.ones((5, 5), np.float32))
    window = Box(4, 23, 4, 23)  # 20 x 20 inside a 64 x 64 image
    click = Click(12, 12, True)

    def refined(values: np.ndarray):
        second = Patch.from_array(window, values.astype(np.float32))
        return second, refined_or_first(first, second, click, 0.5, 64, 64)

    good = np.zeros((20, 20))
    good[5:13, 5:13] = 1.0  # rows/cols 9-16: holds the click, clear of the window's sides
    second, kept = refined(good)
    assert kept is second and kept.bbox_above(0.5) == Box(9, 16, 9, 16)
    beside = np.zeros((20, 20))
    beside[12:18, 12:18] = 1.0  # rows/cols 16-21: not on the click
    assert refined(beside)[1] is first
    cut = np.zeros((20, 20))
    cut[0:13, 5:13] = 1.0  # reaches the window's top side, which is not the image's
    assert refined(cut)[1] is first
    assert refined(np.zeros((20, 20)))[1] is first


def test_segment_all_finds_every_disk_once():
    image, truth = disks_image()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentAllWarning)
        labels = segment_all(brightness_net(), image)
    assert labels.dtype == np.int32 and labels.shape == image.shape
    f1, mean_iou, matches = detection_scores(truth, labels)
    assert len(matches) == len(CENTRES) and f1 == 1.0
    assert mean_iou > 0.6
    again = segment_all(brightness_net(), image)
    np.testing.assert_array_equal(labels, again)  # deterministic
    steps = iter_segment_all(brightness_net(), image, refine=False)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            single_pass = stop.value
            break
    assert detection_scores(truth, single_pass.labels)[0] == 1.0
    # every label knows the seed (the automatic click) it came from
    assert sorted(single_pass.label_seeds) == list(range(1, len(CENTRES) + 1))
    for label, (row, col) in single_pass.label_seeds.items():
        assert single_pass.labels[row, col] == label


def test_objects_already_labelled_are_not_proposed_again_and_give_the_size():
    image, truth = disks_image()
    labelled = np.where(np.isin(truth, [1, 2, 3]), truth, 0)
    result = _finished(iter_segment_all(brightness_net(), image, labelled=labelled, object_size=None))
    assert result.object_size == pytest.approx(object_size_from_labels([labelled])[0])
    assert (result.labels[labelled > 0] > 0).mean() < 0.05  # nothing proposed on them
    f1, _, matches = detection_scores(np.where(labelled > 0, 0, truth), result.labels)
    assert f1 == 1.0 and len(matches) == len(CENTRES) - 3
    assert set(result.scores) == set(np.unique(result.labels).tolist()) - {0}
    with pytest.warns(SegmentAllWarning, match="labelled already|lies on a labelled object"):
        assert not segment_all(brightness_net(), image, labelled=truth).any()
    with pytest.raises(ValueError, match="shape"):
        segment_all(brightness_net(), image, labelled=truth[:-1])


def _finished(steps):
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def test_overlapping_proposals_give_each_pixel_one_object_and_skip_covered_seeds():
    image, _ = disks_image()
    seeds = [(20, 20), (21, 21), (60, 30)]  # the second seed lies inside the first object
    steps = iter_segment_all(brightness_net(), image, seeds=seeds, object_size=14)
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert progress[0] == (0, 3) and progress[-1] == (3, 3)
    assert result.labels.max() == 2
    assert result.labels[20, 20] != 0 and result.labels[60, 30] != 0
    assert result.labels[20, 20] != result.labels[60, 30]


def test_progress_comes_after_every_network_batch_and_batching_changes_nothing():
    """A Cancel waits one network batch, not a whole chunk of seeds; the result is the same."""
    image, _ = disks_image()
    seeds = [(20, 20), (60, 30), (100, 100), (30, 90), (90, 40)]

    def run(batch_size):
        steps = iter_segment_all(brightness_net(), image, seeds=seeds, object_size=14, batch_size=batch_size)
        progress = []
        while True:
            try:
                progress.append(next(steps))
            except StopIteration as stop:
                return progress, stop.value

    one_by_one, single = run(1)
    together, batched = run(16)
    assert len(one_by_one) > len(seeds) > len(together)  # every seed's first and refining pass report
    assert [p[0] for p in one_by_one] == sorted(p[0] for p in one_by_one)
    assert one_by_one[-1] == together[-1] == (len(seeds), len(seeds))
    np.testing.assert_array_equal(single.labels, batched.labels)


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (np.full((64, 64), 7, np.uint8), "constant"),
        (np.zeros((1, 1), np.uint16), "too small"),
        (np.zeros((0, 5), np.float32), "cannot use"),
        (np.random.default_rng(0).normal(0.0, 1e-4, (64, 64)).astype(np.float32) + 0.5, "no"),
    ],
)
def test_bad_input_gives_an_empty_result_and_a_message(image, why):
    with pytest.warns(SegmentAllWarning, match=why):
        labels = segment_all(brightness_net(), image, min_score=0.999)
    assert labels.dtype == np.int32 and not labels.any()
    assert labels.shape == image.shape[:2]


def test_channels_the_engine_refuses_give_an_empty_result_of_the_planes_shape():
    """Four uint16 channels on axis 0 (no composite fits): the labels are (H, W), not (C, H)."""
    with pytest.warns(SegmentAllWarning, match="cannot use this image"):
        labels = segment_all(brightness_net(), np.zeros((4, 40, 50), np.uint16), channel_axis=0)
    assert labels.shape == (40, 50) and not labels.any()


def test_float_nan_rgb_and_channel_inputs():
    image, truth = disks_image(dtype=np.float32)
    image[0:5, 0:5] = np.nan
    net = brightness_net()
    assert segment_all(net, image).max() == len(CENTRES)
    rgb = np.repeat((np.nan_to_num(image) / 3000 * 255).clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    assert segment_all(net, rgb).max() == len(CENTRES)
    two_channels = np.stack([np.zeros_like(image), image])
    chosen = segment_all(net, two_channels, channel_axis=0, channel=1)
    assert detection_scores(truth, chosen)[0] == 1.0


def test_object_size_and_seeds_on_disks():
    image, _ = disks_image()
    source = ImageSource(image)
    size = estimate_object_size(source)
    assert size == pytest.approx(2 * RADIUS, rel=0.2)
    seeds = detect_seeds(source, size)
    assert len(seeds) == len(CENTRES)
    assert {min(CENTRES, key=lambda c: (c[0] - s[0]) ** 2 + (c[1] - s[1]) ** 2) for s in seeds} == set(
        CENTRES
    )
    dark = detect_seeds(ImageSource(image.max() - image), size)
    assert sorted(dark) == sorted(seeds)  # dark objects on a bright background are found too
    tiled = detect_seeds(source, size, tile=50)
    assert sorted(tiled) == sorted(seeds)


def test_object_size_from_labelled_objects_needs_three_of_them():
    labels = np.zeros((60, 60), np.int32)
    for index, (row, col) in enumerate([(10, 10), (10, 40), (40, 10)], start=1):
        labels[row - 4 : row + 4, col - 4 : col + 4] = index  # 8 x 8 squares: diameter 2 sqrt(64 / pi)
    assert object_size_from_labels([labels[:, :30]]) == (None, 2)
    size, count = object_size_from_labels([labels])
    assert count == 3 and size == pytest.approx(2 * np.sqrt(64 / np.pi))
    # a label on two planes is two cross-sections; the median ignores one odd object
    big = np.zeros_like(labels)
    big[30:60, 30:60] = 7
    size, count = object_size_from_labels([labels, big])
    assert count == 4 and size == pytest.approx(2 * np.sqrt(64 / np.pi))


def test_the_labelled_size_wins_only_where_the_estimate_is_far_from_it():
    assert choose_object_size(20.0, None) == (20.0, "image")
    assert choose_object_size(20.0, 28.0) == (20.0, "image")  # a few labelled (large) ones: biased
    assert choose_object_size(39.0, 17.0) == (17.0, "labelled")  # a tissue's body fooled the estimate
    assert choose_object_size(None, 17.0) == (17.0, "labelled")
    image, truth = disks_image()
    far = np.zeros_like(truth)  # three labelled objects 3x the disks' size
    for index, (row, col) in enumerate([(30, 30), (30, 95), (95, 30)], start=1):
        far[row - 20 : row + 20, col - 20 : col + 20] = index
    result = _finished(iter_segment_all(brightness_net(), image, labelled=far))
    assert result.size_from == "labelled" and result.object_size > 40


def test_proposals_lying_mostly_on_labelled_objects_are_dropped():
    proposals = np.zeros((20, 20), np.int32)
    proposals[0:10, 0:10] = 1
    proposals[0:10, 10:20] = 2
    proposals[10:20, 0:10] = 3
    labels = np.zeros((20, 20), np.uint16)
    labels[0:6, 0:10] = 5  # 60 % of proposal 1
    labels[0:4, 10:20] = 6  # 40 % of proposal 2
    kept, dropped = drop_labelled(proposals, labels)
    assert dropped == 1 and set(np.unique(kept)) == {0, 2, 3} and kept.dtype == proposals.dtype
    assert drop_labelled(proposals, None)[1] == 0
    assert drop_labelled(proposals, np.zeros_like(labels))[1] == 0


def test_an_image_with_no_2d_shape_is_refused():
    """Retest 2026-12-06: a Z, C, Y, X array gave empty labels of shape (4, 2)."""
    with pytest.raises(ValueError, match="one 2D image"):
        segment_all(brightness_net(), np.zeros((4, 2, 40, 50), np.uint16))
    with pytest.raises(ValueError, match="one 2D image"):
        segment_all(brightness_net(), np.zeros((4, 2, 40, 50), np.uint16), channel_axis=1)


def test_a_bad_object_size_is_refused_and_seeds_outside_the_image_are_said_so():
    image, _ = disks_image()
    for size in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="object_size must be a positive"):
            segment_all(brightness_net(), image, object_size=size)
    with pytest.warns(SegmentAllWarning, match="given seed.s. lie outside"):  # was: "no seeds found"
        labels = segment_all(brightness_net(), image, seeds=[(600, 217)], object_size=14)
    assert not labels.any()


def test_object_size_inside_a_dim_body_is_its_nuclei(dsb_dir):
    """A DSB embryo (its dim body above Otsu, ~200 nuclei of ~18 px on its rim): the size is the
    nuclei's, not the body's (one component holding nearly all of the foreground; was 593 px)."""
    from napari_fcfi.engine.io import read_image

    (path,) = dsb_dir.glob("f29fd9c52e04403c*_image.*")
    size = estimate_object_size(ImageSource(np.asarray(read_image(path, lazy=False))))
    assert size is not None and 9 < size < 30


def test_matching_is_one_to_one_and_f1_counts_misses_and_false_objects():
    gt = np.zeros((20, 20), np.int32)
    gt[2:8, 2:8] = 1
    gt[10:16, 10:16] = 2
    pred = np.zeros_like(gt)
    pred[2:8, 2:7] = 5  # IoU 30/36
    pred[0:2, 15:20] = 6  # false
    matches = match_instances(gt, pred)
    assert matches == [(1, 5, pytest.approx(30 / 36))]
    f1, mean_iou, _ = detection_scores(gt, pred)
    assert f1 == pytest.approx(0.5) and mean_iou == pytest.approx(30 / 36)


def test_classical_baseline_splits_touching_disks():
    image, truth = disks_image(centres=[(40, 40), (40, 53)], radius=8)
    labels = classical_instances(image, ClassicalVariant(sigma=1.0, min_distance=5, min_area=10))
    assert detection_scores(truth, labels)[0] == 1.0


def test_whole_image_effort_counts_accept_corrections_deletions_and_missed_objects():
    from napari_fcfi.evaluation.segment_all_eval import annotation_effort
    from napari_fcfi.evaluation.segmenters import EngineSegmenter

    image, truth = disks_image()
    pred = truth.copy()
    pred[truth == 2] = 0  # missed: added from scratch with clicks
    pred[(truth == 3) & (np.arange(128)[None, :] > 30)] = 0  # half of object 3: corrected with clicks
    pred[120:125, 5:10] = 9  # a false proposal: deleted, one action
    segmenter = EngineSegmenter(brightness_net())
    cache: dict[int, int] = {}
    with_proposals, scratch = annotation_effort(
        segmenter, image, truth, pred, max_clicks=5, scratch_cache=cache
    )
    assert sorted(cache) == [1, 2, 3, 4, 5] and scratch == sum(cache.values())
    corrections = with_proposals - 1 - 1 - cache[2]  # accept all, delete the false one, add object 2
    assert 1 <= corrections <= 5
    assert with_proposals < scratch


def test_the_proposal_score_threshold_is_the_models_own():
    """A model's ``segment_all.min_score`` metadata replaces the default; an explicit argument wins."""
    from napari_fcfi.annotation.proposals import DEFAULT_MIN_SCORE, model_min_score

    image, truth = disks_image()
    net = brightness_net()
    assert model_min_score(net) == DEFAULT_MIN_SCORE
    found = segment_all(net, image)
    assert found.max() == len(CENTRES)
    net.fcfi_metadata = {"segment_all": {"min_score": 0.9999}}  # no proposal is that sure
    assert model_min_score(net) == 0.9999
    with pytest.warns(SegmentAllWarning, match="no object passed"):
        assert segment_all(net, image).max() == 0
    np.testing.assert_array_equal(segment_all(net, image, min_score=DEFAULT_MIN_SCORE), found)
    for broken in ({"segment_all": {"min_score": "high"}}, {"segment_all": 3}, None):
        net.fcfi_metadata = broken
        assert model_min_score(net) == DEFAULT_MIN_SCORE


def test_the_proposal_mask_cut_is_the_models_own():
    """A model's ``segment_all.proposal_threshold`` cuts its proposal masks (first and refining pass);
    an explicit argument wins."""
    from napari_fcfi.annotation.proposals import PROPOSAL_THRESHOLD, model_proposal_threshold

    image, truth = disks_image()
    net = BlobNet(radius=RADIUS, brightness_weight=4.0).eval()  # soft edges: the cut moves them
    assert model_proposal_threshold(net) == PROPOSAL_THRESHOLD
    found = segment_all(net, image, min_score=0.5, refine=False)
    net.fcfi_metadata = {"segment_all": {"proposal_threshold": 0.9, "min_score": 0.5}}
    assert model_proposal_threshold(net) == 0.9
    tighter = segment_all(net, image, refine=False)
    assert 0 < (tighter > 0).sum() < (found > 0).sum()  # a higher cut gives smaller masks
    np.testing.assert_array_equal(
        segment_all(net, image, proposal_threshold=PROPOSAL_THRESHOLD, min_score=0.5, refine=False), found
    )
    refined = segment_all(net, image, min_score=0.5, proposal_threshold=PROPOSAL_THRESHOLD)
    refined_tighter = segment_all(net, image)
    assert 0 < (refined_tighter > 0).sum() < (refined > 0).sum()
    for broken in (
        {"segment_all": {"proposal_threshold": True}},
        {"segment_all": {"proposal_threshold": 1.5}},
    ):
        net.fcfi_metadata = broken
        assert model_proposal_threshold(net) == PROPOSAL_THRESHOLD


def test_proposal_cuts_prefer_the_higher_cut_within_noise_of_the_best_f1():
    means = {(0.25, 0.45): 0.889, (0.3, 0.5): 0.888, (0.3, 0.45): 0.881, (0.4, 0.6): 0.864}
    assert choose_proposal_cuts(means) == (0.3, 0.5)  # 0.001 below the best: a tie, the higher cut
    means[(0.25, 0.45)] = 0.90
    assert choose_proposal_cuts(means) == (0.25, 0.45)  # 0.012 above: the best F1 wins
    assert choose_proposal_cuts({(0.3, 0.5): 0.88, (0.3, 0.45): 0.88}) == (0.3, 0.45)  # then the lower score
