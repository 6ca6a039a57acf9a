"""Engine: InteractiveSegmenter API, both protocols, window math (images, channels, large images: test_session_images.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.standins import BlobNet, cells_image
from napari_fcfi.engine import Box, InteractiveSegmenter
from napari_fcfi.engine.clicks import make_click, round_coordinate
from napari_fcfi.engine.postprocess import connected_to_points
from napari_fcfi.engine.windows import (
    Patch,
    box_iou,
    clamp_box,
    clicks_inside_roi,
    expand_box,
    focus_window,
    paper_click_to_crop,
    resized_shape,
)

# One intra-op thread: on a shared, oversubscribed CPU two OpenMP threads can be 10x slower.
pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


# ----------------------------------------------------------------------------- window math
def test_expand_box_rounds_halves_to_even_and_respects_min_side():
    # centre (10.5, 20.5), 4 x 6 box, ratio 3 -> 12 x 18 -> rows 10.5 -+ 6 = 4.5, 16.5 -> 4, 16 (half to even)
    assert expand_box(Box(9, 12, 18, 23), 3.0, None) == Box(4, 16, 12, 30)
    # min side 200 wins over 3 x 4 = 12: rows 10.5 -+ 100 = -89.5 -> -90, 110.5 -> 110
    assert expand_box(Box(9, 12, 18, 23), 3.0, 200) == Box(-90, 110, -80, 120)
    assert clamp_box(Box(-90, 110, -80, 120), 100, 50) == Box(0, 99, 0, 49)


def test_roi_iou_and_inside_rule_match_official_definitions():
    a, b = Box(0, 9, 0, 9), Box(5, 14, 0, 9)
    assert box_iou(a, b) == pytest.approx(5 / 15)
    assert box_iou(a, a) == 1.0
    roi = Box(10, 20, 30, 40)
    assert clicks_inside_roi(roi, [(10, 30), (19, 39)])
    assert not clicks_inside_roi(roi, [(20, 35)])  # last row counts as outside
    assert not clicks_inside_roi(roi, [(15, 40)])  # last column counts as outside
    assert not clicks_inside_roi(roi, [(9, 35)])


def test_resize_and_click_mapping_by_hand():
    assert resized_shape(201, 301, 700) == (467, 700)  # 201 * 700 / 301 = 467.44
    assert resized_shape(300, 300, 256) == (256, 256)
    # ROI rows 100..300 (extent 200), crop height 467: 467 * (150 - 100) / 201
    assert paper_click_to_crop(150, 100, 200, 467) == pytest.approx(467 * 50 / 201)


def test_focus_window_is_centred_and_shifted_inside():
    assert focus_window(500, 500, 256, 1000, 1000) == Box(372, 627, 372, 627)
    assert focus_window(10, 990, 256, 1000, 1000) == Box(0, 255, 744, 999)
    assert focus_window(5, 5, 256, 100, 300) == Box(0, 99, 0, 255)


def test_patch_read_and_merge():
    patch = Patch.from_array(Box(2, 3, 2, 4), np.ones((2, 3), np.float32))
    assert patch.read(Box(0, 4, 0, 4)).sum() == 6
    merged = patch.with_region(Box(3, 5, 4, 6), np.full((3, 3), 0.5, np.float32), keep_outside=True)
    assert merged.box == Box(2, 5, 2, 6)
    assert merged.value_at(2, 2) == 1.0 and merged.value_at(3, 4) == 0.5 and merged.value_at(5, 2) == 0.0
    assert not merged.values.flags.writeable
    # strided reads sample box.r0 + i * step, without building the full crop
    values = np.arange(100, dtype=np.float32).reshape(10, 10)
    big = Patch.from_array(Box(10, 19, 20, 29), values)
    full = big.to_full(40, 40)
    for box, step in ((Box(0, 39, 0, 39), 3), (Box(11, 30, 21, 38), 4), (Box(12, 13, 0, 5), 2)):
        np.testing.assert_array_equal(big.read(box, step), full[box.slices][::step, ::step])


# ----------------------------------------------------------------------------- clicks
def test_click_rounding_and_validation():
    assert round_coordinate(2.5) == 3 and round_coordinate(2.49) == 2 and round_coordinate(-0.5) == 0
    assert make_click(9.49, 0, True, 10, 10).row == 9
    for row, col in ((9.5, 0), (-0.51, 0), (0, 10), (float("nan"), 1), (1, float("inf"))):
        with pytest.raises(ValueError, match="click"):
            make_click(row, col, True, 10, 10)
    with pytest.raises(ValueError, match="positive"):
        make_click(1, 1, "maybe", 10, 10)


# ----------------------------------------------------------------------------- session API
def test_undo_redo_any_depth_restores_every_state(blob_net):
    seg = InteractiveSegmenter(blob_net)
    seg.set_image(cells_image())
    clicks = [
        (60, 70, True),
        (50, 90, True),
        (110, 150, False),
        (70, 60, True),
        (45, 55, False),
        (75, 95, True),
    ]
    history = [seg.probability.copy()]
    for click in clicks:
        history.append(seg.add_click(*click).copy())
    for depth in range(len(clicks), 0, -1):
        assert seg.undo()
        np.testing.assert_array_equal(seg.probability, history[depth - 1])
        assert len(seg.clicks) == depth - 1
    assert not seg.undo()
    for depth in range(1, len(clicks) + 1):
        assert seg.redo()
        np.testing.assert_array_equal(seg.probability, history[depth])
    assert not seg.redo()
    # a new click after undo drops the redo branch
    seg.undo()
    seg.undo()
    seg.add_click(65, 65, True)
    assert not seg.can_redo and len(seg.clicks) == 5
    # reset clears the history (a reused session must not keep earlier objects' patches)
    seg.reset()
    assert seg.clicks == [] and not seg.mask.any()
    assert not seg.undo() and not seg.redo() and len(seg._history) == 1


@pytest.mark.parametrize("preset", ["microscopy", "paper"])
def test_replay_equals_live_session(blob_net, preset):
    image = cells_image(dtype=np.uint8 if preset == "paper" else np.uint16)
    seg = InteractiveSegmenter(blob_net, preset=preset)
    seg.set_image(image)
    for row, col, positive in [(60.4, 70.6, True), (50, 95, True), (110, 150, False), (42, 52, True)]:
        seg.add_click(row, col, positive)
    state = json.loads(json.dumps(seg.state()))  # survives JSON
    again = InteractiveSegmenter.replay(BlobNet(), image, state)
    assert again.clicks == seg.clicks
    assert again.settings == seg.settings
    np.testing.assert_array_equal(again.probability, seg.probability)
    np.testing.assert_array_equal(again.mask, seg.mask)


def test_initial_mask_is_feedback_and_first_click_uses_gate_one(blob_net):
    image = cells_image()
    initial = np.zeros(image.shape, bool)
    initial[40:80, 50:100] = True
    seg = InteractiveSegmenter(blob_net)
    seg.set_image(image, initial_mask=initial)
    np.testing.assert_array_equal(seg.mask, initial)
    seg.add_click(100, 150, False)
    call = blob_net.calls[-1]
    assert call["gate"] == 1.0
    assert call["image"][0, 3].max() == 1.0  # the initial mask reached the network as feedback
    assert seg.mask[60, 75]  # far from the negative click the object survives
    state = json.loads(json.dumps(seg.state()))
    again = InteractiveSegmenter.replay(BlobNet(), image, state)
    np.testing.assert_array_equal(again.probability, seg.probability)
    seg.reset()
    np.testing.assert_array_equal(seg.mask, initial)


def test_first_click_gate_zero_then_one_and_points_layout(blob_net):
    seg = InteractiveSegmenter(blob_net, zoom_in=False)
    seg.set_image(cells_image(100, 120))
    seg.add_click(50, 60, True)
    seg.add_click(20, 20, False)
    seg.add_click(52, 64, True)
    gates = [c["gate"] for c in blob_net.calls]
    assert gates == [0.0, 1.0, 1.0]
    points = blob_net.calls[-1]["points"][0]
    # positives first (order 0 and 2), then negatives (order 1) padded with -1; whole image resized to 256 long side
    scale = 255 / 119
    assert points.shape == (4, 3)
    assert points[:, 2].tolist() == [0.0, 2.0, 1.0, -1.0]
    assert points[3].tolist() == [-1.0, -1.0, -1.0]
    assert points[0, 1].item() == pytest.approx(60 * scale, rel=1e-5)
    assert blob_net.calls[-1]["new_clicks"][0, 0].tolist() == [round(52 * scale), round(64 * scale), 1]


def test_bad_input_raises_value_error_and_keeps_state(blob_net):
    seg = InteractiveSegmenter(blob_net)
    image = cells_image()
    seg.set_image(image)
    seg.add_click(60, 70, True)
    before_prob, before_clicks = seg.probability.copy(), seg.clicks
    for row, col in ((-3, 10), (10, 200), (float("nan"), 3), (5, float("-inf"))):
        with pytest.raises(ValueError, match="click"):
            seg.add_click(row, col, True)
    for bad, match in (
        (np.zeros((4, 5, 6)), "not 2D"),
        (np.zeros((0, 5)), "empty"),
        (np.zeros((3, 4, 5, 6)), "not 2D"),
        (np.array(["a"]), "dtype"),
    ):
        with pytest.raises(ValueError, match=match):
            seg.set_image(bad)
    with pytest.raises(ValueError, match="initial_mask"):
        seg.set_image(image, initial_mask=np.ones((3, 3)))
    assert seg.clicks == before_clicks
    np.testing.assert_array_equal(seg.probability, before_prob)
    assert seg.image_shape == image.shape
    with pytest.raises(RuntimeError, match="set_image"):
        InteractiveSegmenter(blob_net).add_click(1, 1, True)
    with pytest.raises(TypeError, match="unknown segmenter setting"):
        InteractiveSegmenter(blob_net, zoom=True)


def test_threshold_and_read_only_outputs(blob_net):
    seg = InteractiveSegmenter(blob_net)
    seg.set_image(cells_image())
    prob = seg.add_click(60, 70, True)
    assert prob.dtype == np.float32 and prob.shape == (160, 200)
    assert not prob.flags.writeable
    np.testing.assert_array_equal(seg.mask, prob > 0.49)
    seg.threshold = 0.9
    np.testing.assert_array_equal(seg.mask, prob > 0.9)
    with pytest.raises(ValueError):
        seg.threshold = 1.5
    timing = seg.last_timing
    assert timing["network_runs"] >= 1 and timing["network_s"] > 0
    assert timing["total_s"] >= timing["network_s"]


# ----------------------------------------------------------------------------- paper protocol
def test_paper_preset_zoom_in_window_and_mapping(blob_net):
    image = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
    seg = InteractiveSegmenter(blob_net, preset="paper", flip=False)
    seg.set_image(image)
    seg.add_click(150, 200, True)
    first = blob_net.calls[-1]
    assert first["shape"] == (1, 4, 300, 400) and first["gate"] == 0.0  # click 1: whole image, native size
    torch.testing.assert_close(first["image"][0, :3], torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    stored = seg._current.roi_map  # map > 0.5 (the network's updated_feedback2) places the ROI
    box = stored.bbox_above(0.5)
    box = Box(min(box.r0, 160), max(box.r1, 160), min(box.c0, 210), max(box.c1, 210))
    expected = clamp_box(expand_box(box, 3.0, 200), 300, 400)
    seg.add_click(160, 210, True)
    second = blob_net.calls[-1]
    assert seg._current.roi == expected
    h, w = resized_shape(expected.height, expected.width, 700)
    assert second["shape"] == (1, 4, h, w) and second["gate"] == 1.0
    r = h * (160 - expected.r0) / (expected.r1 - expected.r0 + 1)
    c = w * (210 - expected.c0) / (expected.c1 - expected.c0 + 1)
    assert second["points"][0, 1, :2].tolist() == pytest.approx([r, c], rel=1e-6)
    assert second["new_clicks"][0, 0].tolist() == [int(np.float32(r)), int(np.float32(c)), 1]
    outside = np.ones(image.shape[:2], bool)
    outside[expected.slices] = False
    assert not seg.probability[outside].any()  # pasted into a zero map


def test_paper_empty_stored_map_runs_whole_image_but_pastes_into_kept_roi():
    class BlankAtThree(BlobNet):
        def forward(self, image, points, new_clicks, gate, is_training=False):
            out = super().forward(image, points, new_clicks, gate, is_training)
            if int((points[0, :, 2] >= 0).sum()) == 3:  # third click: stored map below 0.5 everywhere
                out["updated_feedback2"] = 0.4 * out["updated_feedback2"]
            return out

    net = BlankAtThree(radius=12.0).eval()
    image = (np.random.default_rng(2).random((400, 500, 3)) * 255).astype(np.uint8)
    seg = InteractiveSegmenter(net, preset="paper", flip=False)
    seg.set_image(image)
    for click in [(200, 250, True), (205, 255, True), (195, 245, True)]:
        seg.add_click(*click)
    roi = seg._current.roi
    assert roi is not None and roi != Box(0, 399, 0, 499)
    prob = seg.add_click(210, 240, True)
    assert net.calls[-1]["shape"] == (1, 4, 400, 500)  # official: the click runs on the whole image...
    assert seg._current.roi == roi  # ...the ROI is kept...
    outside = np.ones(prob.shape, bool)
    outside[roi.slices] = False
    assert not prob[outside].any()  # ...and the whole-image result is resized into it


def test_flip_averages_logits_and_mirrors_clicks():
    net = BlobNet(column_slope=0.05).eval()
    image = (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8)
    seg = InteractiveSegmenter(net, preset="paper", zoom_in=False, flip=True)
    seg.set_image(image)
    prob = seg.add_click(10, 12, True)
    call = net.calls[-1]
    assert call["shape"][0] == 2
    assert call["points"][1, 0, :2].tolist() == [10.0, 50 - 12 - 1]
    torch.testing.assert_close(call["image"][1], torch.flip(call["image"][0], dims=[2]))
    reference = BlobNet(column_slope=0.05)
    with torch.no_grad():
        out = reference(call["image"], call["points"], call["new_clicks"], 0.0)["instances"]
    expected = torch.sigmoid(0.5 * (out[0, 0] + torch.flip(out[1, 0], dims=[1]))).numpy()
    np.testing.assert_allclose(prob, expected, rtol=0, atol=1e-6)
    assert not np.allclose(prob, torch.sigmoid(out[0, 0]).numpy(), atol=1e-3)  # flip changed the result


# ----------------------------------------------------------------------------- microscopy protocol
def test_focus_window_grows_while_object_touches_inner_border():
    image = np.zeros((1024, 1024), np.uint16)
    image[200:800, 200:800] = 1000
    net = BlobNet(brightness_weight=20.0).eval()
    seg = InteractiveSegmenter(net, keep_connected=False, first_click_zoom=None)
    seg.set_image(image)
    seg.add_click(500, 500, True)
    assert [c["shape"][-1] for c in net.calls] == [256, 256, 256]  # 256, 512, 1024 (whole) windows
    assert seg.last_timing["network_runs"] == 3
    assert seg.last_window == Box(0, 1023, 0, 1023)
    assert seg.mask[210, 210] and seg.mask[790, 790]

    small = np.zeros((1024, 1024), np.uint16)
    small[480:520, 480:520] = 1000
    net.calls.clear()
    seg.set_image(small)
    seg.add_click(500, 500, True)
    assert len(net.calls) == 1 and seg.last_window == Box(372, 627, 372, 627)


@pytest.mark.parametrize("mode", ["fresh", "feedback"])
def test_first_click_zoom_reruns_a_small_object_in_its_zoom_window(mode):
    image = np.zeros((1000, 1000), np.uint16)
    image[490:510, 480:520] = 1000
    net = BlobNet(radius=2.0, brightness_weight=20.0).eval()
    seg = InteractiveSegmenter(net, first_click_zoom=mode)
    seg.set_image(image)
    seg.add_click(500, 500, True)
    assert len(net.calls) == 2 and seg.last_timing["network_runs"] == 2
    first_window = Box(372, 627, 372, 627)
    # The first pass's object (native pixels) gives the zoom box: object box x 2, at least 64 px.
    assert seg.settings.min_window == 64
    zoom = seg.last_window
    assert zoom.height < first_window.height / 2 and zoom.r0 <= 490 and zoom.r1 >= 509 and zoom.c0 <= 480
    assert net.calls[1]["shape"][-2:] == resized_shape(zoom.height, zoom.width, 256)
    second = net.calls[1]
    if mode == "fresh":
        assert second["gate"] == 0.0 and float(second["image"][0, 3].abs().max()) == 0.0
    else:
        assert second["gate"] == 1.0 and float(second["image"][0, 3].max()) > 0.5
    # The refined values are pasted into the first pass's patch (which still covers the focus window).
    assert seg.probability_patch.box == first_window
    assert seg.mask[500, 485] and seg.mask[500, 515] and not seg.mask[480, 500]


def test_first_click_zoom_skips_large_objects_and_can_be_switched_off():
    image = np.zeros((1000, 1000), np.uint16)
    image[440:560, 440:560] = 1000  # zoom box 240 px > half the 256 px focus window: no second pass
    net = BlobNet(brightness_weight=20.0).eval()
    seg = InteractiveSegmenter(net)
    seg.set_image(image)
    seg.add_click(500, 500, True)
    assert len(net.calls) == 1 and seg.last_window == Box(372, 627, 372, 627)

    small = np.zeros((1000, 1000), np.uint16)
    small[490:510, 490:510] = 1000
    for off in (None, False):
        net.calls.clear()
        seg = InteractiveSegmenter(net, first_click_zoom=off)
        assert seg.settings.first_click_zoom is None
        seg.set_image(small)
        seg.add_click(500, 500, True)
        assert len(net.calls) == 1
    assert InteractiveSegmenter(net, first_click_zoom=True).settings.first_click_zoom == "fresh"
    assert InteractiveSegmenter(net, preset="paper").settings.first_click_zoom is None
    with pytest.raises(ValueError, match="first_click_zoom"):
        InteractiveSegmenter(net, first_click_zoom="sideways")


def test_zoom_in_window_follows_object_and_is_sticky():
    image = np.zeros((1000, 1000), np.uint16)
    image[400:440, 500:560] = 1000
    net = BlobNet(brightness_weight=20.0).eval()
    seg = InteractiveSegmenter(net)
    seg.set_image(image)
    seg.add_click(420, 530, True)
    obj = seg._current.probability.bbox_above(0.5)
    seg.add_click(410, 520, True)
    assert seg.settings.min_window == 64  # focus_size // 4 by default
    expected = clamp_box(expand_box(obj, 2.0, 64), 1000, 1000)
    assert seg.last_window == expected
    assert net.calls[-1]["shape"][-2:] == resized_shape(expected.height, expected.width, 256)
    seg.add_click(430, 540, False)  # inside and similar: the ROI is kept
    assert seg.last_window == expected


def test_keep_connected_removes_parts_far_from_positive_clicks():
    image = np.zeros((120, 120), np.uint8)
    image[20:50, 20:50] = 255
    image[70:100, 70:100] = 255
    results = {}
    for keep in (True, False):
        seg = InteractiveSegmenter(BlobNet(brightness_weight=20.0), keep_connected=keep)
        seg.set_image(image)
        seg.add_click(35, 35, True)
        results[keep] = seg.mask.copy()
    assert results[False][85, 85] and results[False][35, 35]
    assert results[True][35, 35] and not results[True][85, 85]
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[4, 4] = True
    assert connected_to_points(mask, [(2, 2)]) is mask  # no positive click on the mask: unchanged
