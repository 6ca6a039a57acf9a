"""`fcfi segment` follows the widget's rules: overlap handling and settings recorded in the click log."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_fcfi.engine.cli import segment_with_log
from napari_fcfi.engine.io import ClickLog, ClickRecord, save_click_log
from test_engine import BlobNet


def _overlapping_objects_image() -> np.ndarray:
    image = np.full((120, 120), 100, dtype=np.uint16)
    image[30:90, 30:90] = 3000  # one bright square; both objects are clicked inside it
    return image


def _two_objects_log() -> ClickLog:
    return ClickLog([ClickRecord(1, 50, 50, True), ClickRecord(2, 50, 54, True)], ())


def test_later_object_paints_only_background_unless_overwrite():
    net = BlobNet().eval()
    image = _overlapping_objects_image()
    kept = segment_with_log(net, image, _two_objects_log())
    painted_over = segment_with_log(net, image, _two_objects_log(), overwrite=True)
    first_only = segment_with_log(net, image, ClickLog([ClickRecord(1, 50, 50, True)], ()))
    overlap = (first_only == 1) & (painted_over == 2)
    assert overlap.any(), "the two objects must overlap for this test to mean anything"
    # default: the first object's pixels are never overwritten
    assert (kept[first_only == 1] == 1).all()
    # overwrite: the later object wins in the overlap
    assert (painted_over[overlap] == 2).all()


def test_cli_uses_settings_recorded_in_the_log(tmp_path, monkeypatch, capsys):
    import napari_fcfi.model as model_room
    from napari_fcfi.cli import main

    requested = []

    def fake_load_model(source, device="auto", **_):
        requested.append(source)
        return BlobNet().eval()

    monkeypatch.setattr(model_room, "load_model", fake_load_model)
    image = _overlapping_objects_image()
    tifffile.imwrite(tmp_path / "image.tif", image)
    records = _two_objects_log().records
    save_click_log(
        tmp_path / "log.csv",
        records,
        metadata={"model": "my-model.safetensors", "settings": {"preset": "microscopy", "overwrite": True}},
    )
    assert main(["segment", str(tmp_path / "image.tif"), "--clicks", str(tmp_path / "log.csv"),
                 "--out", str(tmp_path / "from_log.tif")]) == 0
    assert requested == ["my-model.safetensors"]
    from_log = tifffile.imread(tmp_path / "from_log.tif")
    np.testing.assert_array_equal(from_log, segment_with_log(BlobNet().eval(), image, _two_objects_log(),
                                                             overwrite=True))
    # the command line wins over the log
    assert main(["segment", str(tmp_path / "image.tif"), "--clicks", str(tmp_path / "log.csv"),
                 "--out", str(tmp_path / "cli.tif"), "--model", "default", "--no-overwrite"]) == 0
    assert requested[-1] == "default"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cli.tif"),
                                  segment_with_log(BlobNet().eval(), image, _two_objects_log()))
    assert "wrote" in capsys.readouterr().out
