"""Plugin I/O: labels TIFF writer and reader, the journal going with a save, samples, manifest, demo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcfi.annotation.labels_tiff import read_labels_tiff, write_labels_tiff


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64])
def test_writer_round_trip_keeps_dtype_scale_translate(tmp_path, dtype):
    labels = np.zeros((3, 20, 30), dtype)
    labels[1, 5:10, 5:25] = 7
    labels[2, 12:18, 2:8] = np.iinfo(dtype).max
    written = write_labels_tiff(
        str(tmp_path / "labels.tiff"),
        labels,
        {"scale": (2.0, 0.5, 0.25), "translate": (0, 10, -3), "name": "x"},
    )
    assert written == [str(tmp_path / "labels.tiff")]
    data, meta = read_labels_tiff(written[0])
    assert data.dtype == labels.dtype
    np.testing.assert_array_equal(data, labels)
    assert meta["scale"] == (2.0, 0.5, 0.25) and meta["translate"] == (0.0, 10.0, -3.0)
    import tifffile

    with tifffile.TiffFile(written[0]) as tif:
        page = tif.pages[0]
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE  # zlib
        assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK  # 3 slices are not an RGB image
        assert page.tags["XResolution"].value == (4, 1)  # 1 / 0.25 pixels per unit
        assert page.tags["YResolution"].value == (2, 1)


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="integer dtype"):
        write_labels_tiff(str(tmp_path / "f.tif"), np.zeros((4, 4), np.float32), {})
    with pytest.raises(ValueError, match="fewer entries"):
        write_labels_tiff(str(tmp_path / "f.tif"), np.zeros((2, 4, 4), np.uint8), {"scale": (1, 1)})
    assert not (tmp_path / "f.tif").exists()


def test_labels_tiff_names_tif_tiff_and_fcfi_are_kept(tmp_path):
    """``fcfi segment --out`` may name its labels .fcfi (napari opens them as labels) or .tif."""
    labels = np.ones((4, 5), np.uint8)
    for name, expected in (
        ("a.fcfi", "a.fcfi"),
        ("b.TIF", "b.TIF"),
        ("c.tiff", "c.tiff"),
        ("d.png", "d.tif"),
    ):
        assert write_labels_tiff(tmp_path / name, labels, {}) == [str(tmp_path / expected)]
        np.testing.assert_array_equal(read_labels_tiff(tmp_path / expected)[0], labels)


def test_writer_and_samples_through_npe2(tmp_path):
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-fcfi")
    assert {w.command for w in manifest.contributions.widgets} == {"napari-fcfi.make_widget"}
    for key, shape in (("nuclei_2d", (256, 256)), ("nuclei_3d", (16, 128, 128))):
        contribution = next(s for s in manifest.contributions.sample_data if s.key == key)
        ((data, _meta, kind),) = contribution.open()
        assert kind == "image" and data.shape == shape and data.dtype == np.uint16
        assert 0 < data.min() < data.max()
    writer = manager.get_command("napari-fcfi.write_labels").exec(
        args=(str(tmp_path / "w.tif"), np.ones((5, 6), np.uint16), {"scale": (1.0, 1.0)})
    )
    assert writer == [str(tmp_path / "w.fcfi")]  # FCFI labels are named .fcfi


def test_file_open_restores_scale_and_translate_and_saving_clears_the_journal(make_napari_viewer, tmp_path):
    from napari_fcfi.annotation.journal import LabelsJournal, change_record
    from napari_fcfi.plugin.io import get_reader, write_labels

    journal = LabelsJournal.create(
        "image", {"label_shape": [2, 8, 9], "dtype": "uint16"}, tmp_path / "journals"
    )
    labels = np.zeros((2, 8, 9), np.uint16)
    labels[1, 2:5, 3:6] = 4
    journal.append(
        change_record("commit", ((1, 2), (0, 8), (0, 9)), labels[1:2], labels[1:2] > 0, label_id=4)
    )
    journal.close()
    assert journal.exists()
    written = write_labels(
        str(tmp_path / "saved.fcfi"),
        labels,
        {
            "scale": (3.0, 0.5, 0.5),
            "translate": (1.0, 2.0, 3.0),
            "name": "cells labels",
            "metadata": {"napari_fcfi": {"journal": str(journal.folder)}},
        },
    )
    assert not journal.exists()  # on disk now: the journal has done its job
    viewer = make_napari_viewer()
    layers = viewer.open(written[0], plugin="napari-fcfi")  # viewer.open defaults to plugin="napari"
    assert len(layers) == 1 and layers[0].__class__.__name__ == "Labels"
    np.testing.assert_array_equal(layers[0].data, labels)
    np.testing.assert_allclose(layers[0].scale, (3.0, 0.5, 0.5))
    np.testing.assert_allclose(layers[0].translate, (1.0, 2.0, 3.0))
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", labels)
    assert get_reader(str(tmp_path / "plain.tif")) is None  # other TIFFs are left to other readers


def test_sample_data_files_are_small_and_labelled():
    from napari_fcfi.sample_data import load_sample, sample_path

    for name in ("nuclei_2d", "nuclei_stack_3d"):
        assert sample_path(name).stat().st_size < 500 * 1024
        image, labels = load_sample(name), load_sample(f"{name}_labels")
        assert image.shape == labels.shape and labels.max() >= 10
        # nuclei are brighter than background: a usable, realistic sample
        assert image[labels > 0].mean() > 2 * image[labels == 0].mean()


def test_demo_screenshot_helper_writes_png(make_napari_viewer, tmp_path):
    import pytestqt  # noqa: F401 - a test dependency

    from helpers.standins import DiskSegmenter
    from napari_fcfi.plugin.demo import background_beside, object_seeds, simulate_and_screenshot
    from napari_fcfi.plugin.models import ModelCache
    from napari_fcfi.plugin.widget import FCFIWidget
    from napari_fcfi.plugin.worker import ImmediateRunner
    from napari_fcfi.sample_data import load_sample

    image, labels = load_sample("nuclei_2d"), load_sample("nuclei_2d_labels")
    seeds = object_seeds(image, count=3)
    assert len(seeds) == 3 and all(labels[r, c] > 0 for r, c in seeds)
    row, col = background_beside(image, *seeds[-1])
    assert labels[row, col] == 0 and row > seeds[-1][0]
    viewer = make_napari_viewer()
    viewer.add_image(image)
    widget = FCFIWidget(
        viewer,
        model_cache=ModelCache(loader=lambda s, d: object()),
        segmenter_factory=DiskSegmenter,
        runner=ImmediateRunner(),
    )
    viewer.window.add_dock_widget(widget)
    path = simulate_and_screenshot(viewer, widget, tmp_path / "shot.png", timeout=10)
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(np.unique(widget.controller.labels_layer.data)) == 3  # two committed objects + background


@pytest.mark.slow
def test_fcfi_demo_screenshot_command(tmp_path):
    """The README's headless demo command: a fresh napari process saves a PNG and exits."""
    import os
    import shutil
    import subprocess
    import sys

    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run") is None:
        pytest.skip("needs a display or xvfb-run")
    out = tmp_path / "demo.png"
    command = [sys.executable, "-m", "napari_fcfi.cli", "demo", "--screenshot", str(out), "--timeout", "120"]
    if not os.environ.get("DISPLAY"):
        command = ["xvfb-run", "-a", *command]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
