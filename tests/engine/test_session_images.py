"""Engine on real images: intensity types and channels, the real tiny network, large images, clicks on the border."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.standins import BlobNet, cells_image
from napari_fcfi.engine import Box, ImageSource, InteractiveSegmenter

# One intra-op thread: on a shared, oversubscribed CPU two OpenMP threads can be 10x slower.
pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


# ----------------------------------------------------------------------------- intensities and channels
@pytest.mark.parametrize(
    "image",
    [
        np.arange(64 * 80, dtype=np.uint8).reshape(64, 80),
        (np.arange(64 * 80, dtype=np.uint32).reshape(64, 80) * 13).astype(np.uint16),
        np.linspace(-5, 3, 64 * 80).reshape(64, 80).astype(np.int32),
        np.linspace(-1e3, 1e3, 64 * 80).reshape(64, 80),
        np.full((64, 80), 7.0),
    ],
    ids=["uint8", "uint16", "negative-int", "float", "constant"],
)
def test_intensity_types_normalise_to_unit_range(blob_net, image):
    source = ImageSource(image)
    crop = source.read(Box(0, 63, 0, 79))
    assert crop.shape == (3, 64, 80) and crop.dtype == np.float32
    assert np.isfinite(crop).all() and crop.min() >= 0 and crop.max() <= 1
    assert (crop[0] == crop[1]).all() and (crop[1] == crop[2]).all()  # gray repeated
    if image.min() != image.max():
        assert crop.max() == 1.0 and crop.min() == 0.0
    else:
        assert (crop == 0).all()
    seg = InteractiveSegmenter(blob_net)
    seg.set_image(image)
    assert np.isfinite(seg.add_click(30, 40, True)).all()


def test_nan_inf_and_percentiles_are_robust():
    image = np.linspace(0, 1000, 100 * 100).reshape(100, 100)
    image[0, 0], image[0, 1], image[0, 2] = np.nan, np.inf, -np.inf
    image[50, 50] = 1e9  # one hot pixel must not flatten the contrast
    source = ImageSource(image)
    crop = source.read(Box(0, 99, 0, 99))[0]
    assert np.isfinite(crop).all()
    assert crop[0, 0] == 0 and crop[0, 1] == 1 and crop[0, 2] == 0
    assert 0.45 < crop[50, 40] < 0.55  # mid-range value stays mid-range
    assert source.has_contrast


def test_blank_images_are_told_apart(blob_net):
    constant = np.full((40, 50), 7, np.uint16)
    all_nan = np.full((40, 50), np.nan, np.float32)
    one_channel_blank = np.stack([np.zeros((40, 50)), np.arange(2000.0).reshape(40, 50)], axis=-1)
    assert not ImageSource(constant).has_contrast
    assert not ImageSource(all_nan).has_contrast
    assert ImageSource(one_channel_blank, channel_axis=2).has_contrast  # the composite has contrast
    assert not ImageSource(one_channel_blank, channel_axis=2, channel=0).has_contrast
    segmenter = InteractiveSegmenter(blob_net)
    segmenter.set_image(constant)
    assert not segmenter.image_has_contrast
    segmenter.set_image(one_channel_blank[..., 1])
    assert segmenter.image_has_contrast


def test_pixels_without_data_are_told(blob_net):
    image = np.full((40, 50), 100.0, np.float32)
    image[10:20, 10:20] = np.nan
    image[30, 40] = np.inf
    segmenter = InteractiveSegmenter(blob_net)
    segmenter.set_image(image)
    assert segmenter.has_data_at(5, 5)
    assert not segmenter.has_data_at(15, 15) and not segmenter.has_data_at(30, 40)
    assert not segmenter.has_data_at(-1, 0) and not segmenter.has_data_at(40, 0)  # outside the image
    two = np.stack([image, np.ones_like(image)], axis=0)
    segmenter.set_image(two, channel_axis=0, channel=1)
    assert segmenter.has_data_at(15, 15)  # only the chosen channel counts


def test_rgb_rgba_and_multichannel_choices():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 255, np.uint8)], axis=2)
    assert ImageSource(rgb).is_rgb and ImageSource(rgba).channels == (0, 1, 2)
    np.testing.assert_array_equal(
        ImageSource(rgb, mode="uint8").read(Box(0, 29, 0, 39)),
        np.moveaxis(rgb, 2, 0).astype(np.float32) / np.float32(255),
    )
    np.testing.assert_array_equal(
        ImageSource(rgba, mode="uint8").read(Box(0, 29, 0, 39)),
        ImageSource(rgb, mode="uint8").read(Box(0, 29, 0, 39)),
    )
    stack = rng.random((3, 30, 40)).astype(np.float32)  # channel-first, not RGB
    stack[1] *= 1000
    one = ImageSource(stack, channel_axis=0, channel=1).read(Box(0, 29, 0, 39))
    assert (one[0] == one[2]).all() and one.max() == 1.0
    composite = ImageSource(stack, channel_axis=0).read(Box(0, 29, 0, 39))
    assert composite.shape == (3, 30, 40) and composite[1].max() == 1.0  # per-channel ranges
    two = ImageSource(stack[:2], channel_axis=0).read(Box(0, 29, 0, 39))
    assert (two[2] == 0).all()
    with pytest.raises(ValueError, match="channel"):
        ImageSource(rng.random((6, 30, 40)), channel_axis=0)
    with pytest.raises(ValueError, match="does not exist"):
        ImageSource(stack, channel_axis=0, channel=5)


class _RecordingArray:
    """Array-like that records every index it is read with and refuses whole-array conversion."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.data[index]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was converted")


def test_array_likes_are_read_only_where_needed(blob_net):
    data = np.zeros((2000, 3000), np.uint16)
    data[900:960, 1400:1480] = 5000
    lazy = _RecordingArray(data)
    seg = InteractiveSegmenter(blob_net)
    seg.set_image(lazy)
    seg.add_click(930, 1440, True)
    seg.add_click(920, 1460, True)
    sample, *crops = lazy.reads
    assert sample[0].step > 1  # percentiles from a strided subsample
    for rows, cols in crops:
        assert (rows.stop - rows.start) * (cols.stop - cols.start) <= 256 * 256
    import dask.array as dask

    seg.set_image(dask.from_array(data, chunks=500))
    assert seg.add_click(930, 1440, True)[930, 1440] > 0.49
    import zarr

    stored = zarr.create_array(store={}, shape=data.shape, chunks=(500, 500), dtype=data.dtype)
    stored[:] = data
    seg.set_image(stored)
    assert seg.add_click(930, 1440, True)[930, 1440] > 0.49


def test_network_gets_inputs_in_the_model_dtype():
    class HalfProbe(BlobNet):
        def __init__(self):
            super().__init__()
            self.scale.data = self.scale.data.to(torch.bfloat16)

        def forward(self, image, points, new_clicks, gate, is_training=False):
            assert image.dtype == torch.bfloat16 and new_clicks.dtype == torch.int64
            return super().forward(image.float(), points, new_clicks, gate, is_training)

    seg = InteractiveSegmenter(HalfProbe())
    seg.set_image(cells_image())
    assert seg.add_click(60, 70, True).dtype == np.float32
    assert seg.device == torch.device("cpu")


# ----------------------------------------------------------------------------- real network
def test_tiny_fcfi_network_runs_both_presets(tiny_fcfi):
    image = cells_image(130, 170)
    seg = InteractiveSegmenter(tiny_fcfi, input_size=128)
    seg.set_image(image)
    for click in [(60, 75, True), (50, 90, True), (110, 150, False)]:
        prob = seg.add_click(*click)
        assert prob.shape == image.shape and np.isfinite(prob).all()
    replayed = InteractiveSegmenter.replay(tiny_fcfi, image, seg.state())
    np.testing.assert_array_equal(replayed.probability, seg.probability)
    paper = InteractiveSegmenter(tiny_fcfi, preset="paper", input_size=160)
    rgb = np.repeat((image // 16).astype(np.uint8)[..., None], 3, axis=2)
    paper.set_image(rgb)
    for click in [(60, 75, True), (110, 150, False), (50, 90, True)]:
        assert np.isfinite(paper.add_click(*click)).all()


def test_microscopy_plumbing_equals_direct_network_calls(tiny_fcfi):
    """Window = whole image at the network size: the engine must equal hand-made network calls."""
    image = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    seg = InteractiveSegmenter(
        tiny_fcfi, input_size=64, zoom_in=False, keep_connected=False, normalization="none"
    )
    seg.set_image(image)
    rgb = torch.from_numpy(np.repeat(image[None, None], 3, axis=1))
    previous = torch.zeros(1, 1, 64, 64)
    clicks = [(30, 20, True), (10, 50, False)]
    for k, (row, col, positive) in enumerate(clicks):
        prob = seg.add_click(row, col, positive)
        done = clicks[: k + 1]
        pos = [(r, c, i) for i, (r, c, p) in enumerate(done) if p]
        neg = [(r, c, i) for i, (r, c, p) in enumerate(done) if not p]
        n = max(len(pos), len(neg))
        pad = [(-1, -1, -1)]
        points = torch.tensor([pos + pad * (n - len(pos)) + neg + pad * (n - len(neg))], dtype=torch.float32)
        new_click = torch.tensor([[[row, col, int(positive)]]])
        with torch.inference_mode():
            out = tiny_fcfi(torch.cat([rgb, previous], 1), points, new_click, float(k > 0), is_training=False)
        expected = torch.sigmoid(out["instances"])
        np.testing.assert_allclose(prob, expected[0, 0].numpy(), rtol=0, atol=1e-6)
        previous = expected


def test_model_metadata_input_size_is_used(blob_net):
    blob_net.fcfi_metadata = {"input_size": 320}
    assert InteractiveSegmenter(blob_net).settings.input_size == 320
    assert InteractiveSegmenter(blob_net, input_size=200).settings.input_size == 200
    assert InteractiveSegmenter(blob_net, preset="paper").settings.input_size == 700
    blob_net.fcfi_metadata = {"input_size": 160, "focus_size": 256}
    settings = InteractiveSegmenter(blob_net).settings
    assert (settings.input_size, settings.focus_size, settings.min_window) == (160, 256, 64)


def test_focus_size_sets_the_native_focus_window_and_input_size_the_network_size():
    net = BlobNet().eval()
    seg = InteractiveSegmenter(net, input_size=160, focus_size=256, first_click_zoom=None)
    seg.set_image(np.zeros((1000, 1000), np.uint16))
    seg.add_click(500, 500, True)
    assert seg.last_window == Box(372, 627, 372, 627)
    assert net.calls[-1]["shape"] == (1, 4, 160, 160)


# ----------------------------------------------------------------------------- large images
class _ObjectProbe(torch.nn.Module):
    """A tiny FCFI network plus a click-centred blob, so predicted objects have a realistic size."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, points, new_clicks, gate, is_training=False):
        out = dict(self.net(image, points, new_clicks, gate, is_training=is_training))
        blob = BlobNet(radius=0.04 * max(image.shape[-2:]))
        out["instances"] = blob(image, points, new_clicks, gate)["instances"] + 0.1 * out["instances"]
        return out


def _peak_rss_reset() -> bool:
    try:  # writing 5 resets the peak resident set size (VmHWM) on Linux
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _clicks_on_image(net, size, clicks=3):
    import time

    image = np.full((size, size), 100, np.uint16)  # non-zero: every page of the image is resident
    c = size // 2
    image[c - 30 : c + 30, c - 40 : c + 40] = 3000
    seg = InteractiveSegmenter(net)
    seg.set_image(image)
    seg.add_click(c, c, True)  # warm-up
    seg.reset()
    times = []
    for click in [(c, c, True), (c - 20, c + 30, True), (c + 45, c, False)][:clicks]:
        start = time.perf_counter()
        seg.add_click(*click)
        _ = seg.mask
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], seg


@pytest.mark.slow
@pytest.mark.skipif(not _peak_rss_reset(), reason="needs Linux /proc/self/clear_refs to measure peak memory")
def test_large_image_click_memory_and_time(tiny_fcfi):
    probe = _ObjectProbe(tiny_fcfi).eval()
    small_time, _ = _clicks_on_image(probe, 512)
    for net, label in ((probe, "nucleus-sized object"), (tiny_fcfi, "random weights: object = whole image")):
        import gc

        gc.collect()
        base = _rss_mib("VmRSS")
        _peak_rss_reset()
        large_time, seg = _clicks_on_image(net, 8192)
        extra = _rss_mib("VmHWM") - base - 8192 * 8192 * 2 / 2**20  # beyond the 128 MiB image itself
        print(
            f"8192^2 {label}: median click {large_time:.3f}s (512^2: {small_time:.3f}s), "
            f"peak extra memory {extra:.0f} MiB, last window {seg.last_window}"
        )
        assert extra < 1024
        if net is probe:
            assert large_time <= 2.0 * small_time + 0.2  # slack: timings are noisy on a shared machine
        del seg


def test_bfloat16_autocast_runs_on_the_cpu_and_stays_close_to_float32(tiny_fcfi):
    image = np.zeros((96, 96), np.uint8)
    image[30:60, 30:60] = 200
    probabilities = {}
    for dtype in (None, "bfloat16"):
        seg = InteractiveSegmenter(tiny_fcfi, input_size=64, autocast_dtype=dtype)
        seg.set_image(image)
        seg.add_click(45, 45, True)
        probabilities[dtype] = seg.add_click(35, 50, False).copy()
        assert probabilities[dtype].dtype == np.float32
    assert not np.array_equal(probabilities[None], probabilities["bfloat16"])  # it really ran in bf16
    assert np.abs(probabilities[None] - probabilities["bfloat16"]).max() < 0.1


# ----------------------------------------------------------------------------- clicks on the image border
def _border_cut_nuclei(size: int = 160) -> tuple[np.ndarray, list[tuple[np.ndarray, tuple[int, int]]]]:
    """A dark image with a bright nucleus cut by each of its four sides; (mask, border click) per nucleus."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 8, (size, size))
    rows, cols = np.ogrid[:size, :size]
    cases = []
    for centre, click in (
        ((-4, 60), (0, 60)),
        ((size + 3, 100), (size - 1, 100)),
        ((40, -5), (40, 0)),
        ((120, size + 4), (120, size - 1)),
    ):
        nucleus = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= 14**2
        image[nucleus] += 900
        cases.append((nucleus, click))
    return np.clip(image, 0, None).astype(np.uint16), cases


def test_a_click_on_the_image_border_segments_the_border_cut_object():
    from napari_fcfi.evaluation.metrics import iou
    from napari_fcfi.model import load_model

    image, cases = _border_cut_nuclei()
    segmenter = InteractiveSegmenter(load_model("default", device="cpu"))
    segmenter.set_image(image)
    for nucleus, (row, col) in cases:
        segmenter.reset()
        probability = segmenter.add_click(row, col, True)
        assert probability[row, col] > 0.5, (row, col)
        assert iou(segmenter.mask, nucleus) > 0.6, (row, col)


def test_border_clicks_on_a_real_image_match_interior_clicks(dsb_dir):
    """DSB image 0a7d30b252359a10: nuclei cut by the image sides, clicked on the side's pixel row/column."""
    from napari_fcfi.engine.io import read_image
    from napari_fcfi.evaluation.metrics import iou
    from napari_fcfi.model import load_model

    image = read_image(dsb_dir / "0a7d30b252359a10_image.png", lazy=False)
    labels = read_image(dsb_dir / "0a7d30b252359a10_labels.png", lazy=False)
    height, width = labels.shape
    segmenter = InteractiveSegmenter(load_model("default", device="cpu"))
    segmenter.set_image(image)
    checked = 0
    for side in ("top", "left", "right"):
        line = {"top": labels[0], "left": labels[:, 0], "right": labels[:, -1]}[side]
        for label in [v for v in np.unique(line) if v][:2]:
            along = np.flatnonzero(line == label)
            middle = int(along[len(along) // 2])
            results = []
            for depth in (0, 4):
                row, col = {
                    "top": (depth, middle),
                    "left": (middle, depth),
                    "right": (middle, width - 1 - depth),
                }[side]
                segmenter.reset()
                segmenter.add_click(row, col, True)
                results.append(iou(segmenter.mask, labels == label))
            if results[1] >= 0.5 and (labels == label).sum() >= 60:
                assert results[0] >= 0.5 and results[0] >= results[1] - 0.2, (side, label, results)
                checked += 1
    assert checked >= 2
