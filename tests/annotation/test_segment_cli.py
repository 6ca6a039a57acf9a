"""`fcfi segment`: the widget's painting rules, recorded settings, stacks, channels, dtype and scale."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from helpers.cli import segment_from_log
from helpers.standins import BlobNet, cells_image
from napari_fcfi.annotation.cli import image_geometry_for
from napari_fcfi.annotation.clicklog import ClickLog, ClicksStep, ObjectRecord
from napari_fcfi.annotation.labels_tiff import read_labels_tiff
from napari_fcfi.annotation.replay import replay_click_log
from napari_fcfi.engine.clicks import Click


def _overlapping_objects_image() -> np.ndarray:
    image = np.full((120, 120), 100, dtype=np.uint16)
    image[30:90, 30:90] = 3000  # one bright square; both objects are clicked inside it
    return image


def _two_objects(overwrite: bool = False) -> ClickLog:
    return ClickLog(
        [
            ObjectRecord(1, [ClicksStep((), (Click(50, 50, True),))]),
            ObjectRecord(2, [ClicksStep((), (Click(50, 54, True),))], overwrite=overwrite),
        ]
    )


def _replay(image, log, **kwargs):
    geometry = image_geometry_for(image, kwargs.pop("channel_axis", None), {})
    return replay_click_log(BlobNet().eval(), image, geometry, log, **kwargs)


def test_later_object_paints_only_background_unless_overwrite():
    image = _overlapping_objects_image()
    first_only = _replay(image, ClickLog([_two_objects().records[0]]))
    kept = _replay(image, _two_objects())
    painted_over = _replay(image, _two_objects(overwrite=True))
    overlap = (first_only == 1) & (painted_over == 2)
    assert overlap.any(), "the two objects must overlap for this test to mean anything"
    assert (kept[first_only == 1] == 1).all()  # default: earlier labels are never overwritten
    assert (painted_over[overlap] == 2).all()


@pytest.fixture
def blob_model(monkeypatch):
    import napari_fcfi.model as model_room

    requested = []

    def fake_load_model(source, device="auto", **_):
        requested.append(source)
        return BlobNet().eval()

    monkeypatch.setattr(model_room, "load_model", fake_load_model)
    return requested


def test_cli_uses_what_the_log_recorded(tmp_path, blob_model, capsys):
    image = _overlapping_objects_image()
    tifffile.imwrite(tmp_path / "image.tif", image)
    log = _two_objects(overwrite=True)
    log.metadata = {
        "model": "my-model.safetensors",
        "settings": {
            "preset": "microscopy",
            "labels_dtype": "uint8",
            "scale": [0.5, 0.25],
            "translate": [3.0, 4.0],
        },
    }
    log.save(tmp_path / "log.csv")
    assert (
        segment_from_log(
            str(tmp_path / "image.tif"), str(tmp_path / "log.csv"), str(tmp_path / "from_log.tif")
        )
        == 0
    )
    assert blob_model == ["my-model.safetensors"]
    labels, meta = read_labels_tiff(tmp_path / "from_log.tif")
    assert labels.dtype == np.uint8 and meta["scale"] == (0.5, 0.25) and meta["translate"] == (3.0, 4.0)
    np.testing.assert_array_equal(labels, _replay(image, _two_objects(overwrite=True)))
    # the command line wins over the log
    assert (
        segment_from_log(
            str(tmp_path / "image.tif"),
            str(tmp_path / "log.csv"),
            str(tmp_path / "cli.tif"),
            "--model",
            "default",
            "--no-overwrite",
        )
        == 0
    )
    assert blob_model[-1] == "default"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cli.tif"), _replay(image, _two_objects()))
    printed = capsys.readouterr().out
    n_objects = len(np.unique(_replay(image, _two_objects()))) - 1
    assert f"{n_objects} labelled object(s) from the click log's 2 commit(s)" in printed


def test_cli_never_replaces_its_inputs_and_replaces_an_output_only_when_forced(tmp_path, blob_model, capsys):
    """Retest 2026-12-06: ``--out`` naming the image replaced the raw image with labels, exit 0."""
    image = _overlapping_objects_image()
    tifffile.imwrite(tmp_path / "image.tif", image)
    _two_objects().save(tmp_path / "log.csv")
    raw, log = str(tmp_path / "image.tif"), str(tmp_path / "log.csv")
    for target in (raw, str(tmp_path / "image")):  # "image": the writer makes image.tif of it
        assert segment_from_log(raw, log, target, "--force") == 2
        assert "is one of the inputs" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(raw), image)
    kept = (tmp_path / "log.csv").read_bytes()
    assert segment_from_log(raw, log, log) == 0  # written as log.tif: the log itself is never touched
    assert (tmp_path / "log.csv").read_bytes() == kept and (tmp_path / "log.tif").is_file()
    assert segment_from_log(raw, log, str(tmp_path / "labels.tif")) == 0
    first = tifffile.imread(tmp_path / "labels.tif")
    (tmp_path / "labels.tif").write_bytes(b"someone's labels")
    for name in ("labels.tif", "labels.png"):  # labels.png would be written as labels.tif
        assert segment_from_log(raw, log, str(tmp_path / name)) == 2
        assert "exists already" in capsys.readouterr().err
    assert (tmp_path / "labels.tif").read_bytes() == b"someone's labels"
    assert segment_from_log(raw, log, str(tmp_path / "labels.tif"), "--force") == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels.tif"), first)


def test_cli_stacks_channels_and_errors(tmp_path, blob_model, capsys):
    stack = np.stack([cells_image(80, 90), cells_image(80, 90) * 0, cells_image(80, 90)])
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    ClickLog(
        [
            ObjectRecord(4, [ClicksStep((0,), (Click(60, 75, True),))]),
            ObjectRecord(9, [ClicksStep((2,), (Click(40, 40, True),))]),
        ]
    ).save(tmp_path / "z.csv")
    assert (
        segment_from_log(str(tmp_path / "stack.tif"), str(tmp_path / "z.csv"), str(tmp_path / "z.tif")) == 0
    )
    labels = tifffile.imread(tmp_path / "z.tif")
    assert (
        labels.shape == stack.shape
        and labels[0, 60, 75] == 4
        and labels[2, 40, 40] == 9
        and not labels[1].any()
    )
    # a 2D log on a stack is a clear error
    ClickLog([ObjectRecord(1, [ClicksStep((), (Click(5, 5, True),))])]).save(tmp_path / "flat.csv")
    assert (
        segment_from_log(str(tmp_path / "stack.tif"), str(tmp_path / "flat.csv"), str(tmp_path / "bad.tif"))
        == 2
    )
    assert "leading" in capsys.readouterr().err
    # a click outside the image is a clear error too
    ClickLog([ObjectRecord(1, [ClicksStep((0,), (Click(500, 5, True),))])]).save(tmp_path / "out.csv")
    assert (
        segment_from_log(str(tmp_path / "stack.tif"), str(tmp_path / "out.csv"), str(tmp_path / "bad.tif"))
        == 2
    )
    assert "outside" in capsys.readouterr().err
    # (Z, C, Y, X) with a channel axis: labels drop it, one channel is chosen
    zcyx = np.stack([np.stack([cells_image(80, 90), cells_image(80, 90) * 0]) for _ in range(2)])
    tifffile.imwrite(tmp_path / "zcyx.tif", zcyx)
    ClickLog([ObjectRecord(5, [ClicksStep((1,), (Click(60, 75, True),))])]).save(tmp_path / "c.csv")
    assert (
        segment_from_log(
            str(tmp_path / "zcyx.tif"),
            str(tmp_path / "c.csv"),
            str(tmp_path / "c.tif"),
            "--channel-axis",
            "1",
            "--channel",
            "0",
        )
        == 0
    )
    labels = tifffile.imread(tmp_path / "c.tif")
    assert labels.shape == (2, 80, 90) and labels[1, 60, 75] == 5 and not labels[0].any()


def test_cli_end_to_end_with_a_real_model_file(tmp_path, tiny_fcfi_net):
    from napari_fcfi.model import load_model, save_model

    model_path = save_model(tiny_fcfi_net, tmp_path / "tiny.safetensors", metadata={"input_size": 128})
    image = cells_image(100, 120)
    tifffile.imwrite(tmp_path / "img.tif", image)
    log = ClickLog(
        [
            ObjectRecord(3, [ClicksStep((), (Click(60, 75, True), Click(55, 90, True)))]),
            ObjectRecord(7, [ClicksStep((), (Click(90, 100, True),))]),
        ]
    )
    log.save(tmp_path / "clicks.csv")
    assert (
        segment_from_log(
            str(tmp_path / "img.tif"),
            str(tmp_path / "clicks.csv"),
            str(tmp_path / "labels.tif"),
            "--model",
            str(model_path),
            "--device",
            "cpu",
        )
        == 0
    )
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == image.shape and labels.dtype == np.uint16 and set(np.unique(labels)) <= {0, 3, 7}
    model = load_model(str(model_path), device="cpu")
    np.testing.assert_array_equal(
        labels, replay_click_log(model, image, image_geometry_for(image, None, {}), log)
    )
