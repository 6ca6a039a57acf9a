"""evaluate() with a deterministic fake segmenter, the classical baselines, EvalResult JSON, fcfi eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.io

from helpers.standins import GrowingDiskSegmenter
from napari_fcfi.cli import main
from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.baselines import GeodesicSegmenter, RandomWalkerSegmenter
from napari_fcfi.evaluation.results import EvalResult, format_table
from napari_fcfi.evaluation.runner import evaluate
from napari_fcfi.evaluation.samples import Sample, SampleList
from napari_fcfi.evaluation.segmenters import resolve_segmenter


def disk_sample(radius=10, size=48, name="disk") -> Sample:
    yy, xx = np.ogrid[:size, :size]
    gt = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2
    return Sample((gt * 255).astype(np.uint8), gt, None, name)


def noisy_blob_sample(seed=0) -> Sample:
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:64, :64]
    gt = ((yy - 30) / 14.0) ** 2 + ((xx - 34) / 10.0) ** 2 <= 1.0
    image = np.where(gt, 180, 40) + rng.normal(0, 12, gt.shape)
    return Sample(np.clip(image, 0, 255).astype(np.uint8), gt, None, f"blob{seed}")


def test_evaluate_fake_segmenter_known_ious():
    fake = GrowingDiskSegmenter(step=4)
    result = evaluate(fake, [disk_sample(radius=10)], max_clicks=5)
    (obj,) = result.objects
    # Radius 4, 8, 12, ... around the centre: IoU (r/10)^2 until the disk covers the object.
    expected = [
        metrics.iou(fake_mask, disk_sample().gt_mask)
        for fake_mask in [disk_sample(radius=4).gt_mask, disk_sample(radius=8).gt_mask]
    ]
    assert obj.ious[:2] == pytest.approx(expected)
    assert obj.ious[2] == pytest.approx(1.0)
    assert len(obj.ious) == 3  # no error left after the third click: the robot stops
    assert obj.clicks[0] == (24, 24, True)
    assert len(obj.times) == 3 and all(t >= 0 for t in obj.times)
    s = result.summary
    assert s["noc@85"] == 3 and s["noc@95"] == 3 and s["nof@95"] == 0
    assert s["iou_curve"][-1] == pytest.approx(1.0)  # carried forward after the early stop


def test_evaluate_accepts_factory_names_and_skips_empty_objects():
    empty = Sample(np.zeros((16, 16), np.uint8), np.zeros((16, 16), bool), None, "empty")
    samples = [disk_sample(name="a"), empty, disk_sample(radius=6, name="b")]
    made = []

    def factory():
        made.append(GrowingDiskSegmenter(step=2))
        return made[-1]

    result = evaluate(factory, samples, max_clicks=3, name="fake")
    assert len(made) == 1 and made[0].starts == 2
    assert result.segmenter == "fake" and result.skipped == ["empty"]
    assert [o.sample_id for o in result.objects] == ["a", "b"]
    # max_clicks caps the clicks; the 10-px disk is not reached with radius 6 after 3 clicks.
    assert len(result.objects[0].ious) == 3 and result.summary["nof@85"] == 1
    assert evaluate(GrowingDiskSegmenter(), samples, max_clicks=3, limit=1).summary["objects"] == 1


def test_stop_iou_ends_sessions_early():
    result = evaluate(GrowingDiskSegmenter(step=2), [disk_sample(radius=10)], max_clicks=10, stop_iou=0.5)
    assert result.objects[0].ious[-1] >= 0.5 and all(v < 0.5 for v in result.objects[0].ious[:-1])


def test_result_json_round_trip(tmp_path):
    result = evaluate(GrowingDiskSegmenter(), SampleList([disk_sample()]), max_clicks=4)
    path = result.save_json(tmp_path / "r.json")
    again = EvalResult.load_json(path)
    assert again.summary == result.summary
    assert again.objects[0].clicks == result.objects[0].clicks
    assert json.loads(path.read_text())["summary"]["objects"] == 1
    table = format_table([result, again])
    assert "NoC@90" in table and table.count("growing-disk") == 2
    assert "nan" not in table  # IoU@5 with at most 4 clicks: "-", not nan


def test_resolve_segmenter_errors():
    with pytest.raises(ValueError, match="cannot evaluate"):
        resolve_segmenter(42)
    with pytest.raises(FileNotFoundError):
        resolve_segmenter("no-such-model.safetensors")
    with pytest.raises(ValueError, match="max_clicks"):
        evaluate(GrowingDiskSegmenter(), [disk_sample()], max_clicks=0)


@pytest.mark.parametrize("cls", [RandomWalkerSegmenter, GeodesicSegmenter])
def test_baselines_segment_a_blob(cls):
    seg = cls()
    result = evaluate(seg, [noisy_blob_sample(0), noisy_blob_sample(1)], max_clicks=3)
    assert result.summary["iou@1"] > 0.8
    assert result.summary["iou@3"] > 0.8  # boundary clicks may cost a little, never the object
    prob = seg.add_click(5, 5, False)
    assert prob.shape == (64, 64) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1


@pytest.mark.parametrize("cls", [RandomWalkerSegmenter, GeodesicSegmenter])
def test_baselines_rgb_uint16_and_bad_clicks(cls):
    seg = cls()
    rgb = np.stack([noisy_blob_sample().image] * 3, axis=-1)
    seg.start(rgb)
    assert seg.add_click(30, 34, True)[30, 34] > 0.5
    seg.start(noisy_blob_sample().image.astype(np.uint16) * 200)
    assert seg.add_click(30, 34, True).sum() > 50
    with pytest.raises(ValueError, match="outside"):
        seg.add_click(64, 0, True)
    with pytest.raises(ValueError, match="before start"):
        cls().add_click(0, 0, True)


def _write_grabcut_folder(root: Path, n=3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        s = noisy_blob_sample(i)
        gt = np.where(s.gt_mask, 255, 0).astype(np.uint8)
        skimage.io.imsave(root / f"im{i}_image.png", np.stack([s.image] * 3, -1), check_contrast=False)
        skimage.io.imsave(root / f"im{i}_gt.png", gt, check_contrast=False)
    return root


def test_fcfi_eval_cli_end_to_end_with_baselines(tmp_path, capsys):
    data = _write_grabcut_folder(tmp_path / "grabcut")
    out = tmp_path / "results"
    code = main(
        [
            "eval",
            "--data",
            str(data),
            "--baseline",
            "random-walker",
            "--baseline",
            "geodesic",
            "--max-clicks",
            "3",
            "--out",
            str(out),
            "--limit",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "NoC@85" in printed and "random-walker" in printed and "geodesic" in printed
    for name in ("random-walker.json", "geodesic.json", "summary.json", "results.txt", "iou_vs_clicks.png"):
        assert (out / name).is_file(), name
    rw = json.loads((out / "random-walker.json").read_text())
    assert rw["summary"]["objects"] == 2 and len(rw["summary"]["iou_curve"]) == 3
    assert (out / "iou_vs_clicks.png").read_bytes()[:4] == b"\x89PNG"
    assert "earlier run" not in printed

    # the same --out again with one baseline: the other's file is older, and said so
    assert (
        main(
            [
                "eval",
                "--data",
                str(data),
                "--baseline",
                "geodesic",
                "--max-clicks",
                "2",
                "--out",
                str(out),
                "--limit",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "also holds result files of an earlier run: random-walker.json" in capsys.readouterr().out


def test_fcfi_eval_cli_errors(tmp_path, capsys):
    data = _write_grabcut_folder(tmp_path / "g", n=1)
    assert main(["eval", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "at least one" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path / "missing"), "--baseline", "geodesic"]) == 2
    assert main(["eval", "--data", str(data), "--split", "val", "--baseline", "geodesic"]) == 2
    assert "instance folders only" in capsys.readouterr().err
    for limit in ("0", "-1"):  # were: a table of NaN, a traceback
        assert main(["eval", "--data", str(data), "--baseline", "geodesic", "--limit", limit]) == 2
        assert "--limit must be >= 1" in capsys.readouterr().err


def test_fcfi_eval_split_val_on_instance_folder(tmp_path, capsys):
    folder = tmp_path / "nuclei"
    folder.mkdir()
    for i in range(4):
        s = noisy_blob_sample(i)
        skimage.io.imsave(folder / f"n{i}_image.png", s.image, check_contrast=False)
        skimage.io.imsave(folder / f"n{i}_labels.png", s.gt_mask.astype(np.uint16) * 3, check_contrast=False)
    out = tmp_path / "res"
    assert (
        main(
            [
                "eval",
                "--data",
                str(folder),
                "--split",
                "val",
                "--val-fraction",
                "0.25",
                "--baseline",
                "geodesic",
                "--max-clicks",
                "2",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    from napari_fcfi.evaluation.splits import split_instance_folder

    (val_id,) = split_instance_folder(folder, 0.25)[1]
    objects = json.loads((out / "geodesic.json").read_text())["objects"]
    assert [o["sample_id"] for o in objects] == [f"{val_id}#3"]


def _tiny_network():
    import torch

    from napari_fcfi.model import networks

    torch.manual_seed(0)
    return networks.build_preset("hrnet8-small-tiny").eval()


@pytest.mark.parametrize("preset", [None, pytest.param("paper", marks=pytest.mark.slow)])
def test_evaluate_tiny_network_through_the_engine(preset):
    net = _tiny_network()
    s = noisy_blob_sample(0)
    rgb = Sample(np.stack([s.image] * 3, axis=-1), s.gt_mask, None, "rgb")
    # A small working size keeps the test fast; the protocol code paths are the same.
    result = evaluate(
        net,
        [s, rgb],
        max_clicks=2,
        preset=preset,
        name="tiny",
        engine_settings={"input_size": 64, "min_window": 32},
    )
    assert result.segmenter == "tiny" and result.summary["objects"] == 2
    for obj in result.objects:
        assert len(obj.ious) == 2 and all(0.0 <= v <= 1.0 for v in obj.ious)
        assert obj.clicks[0] == (30, 34, True)  # the robot's first click does not depend on the model


def test_fcfi_eval_cli_with_a_saved_tiny_model(tmp_path, capsys):
    import napari_fcfi.model as model_room

    path = model_room.save_model(
        _tiny_network(), tmp_path / "tiny.safetensors", metadata={"name": "tiny", "input_size": 64}
    )
    data = _write_grabcut_folder(tmp_path / "grabcut", n=2)
    out = tmp_path / "results"
    assert (
        main(
            [
                "eval",
                "--data",
                str(data),
                "--model",
                str(path),
                "--baseline",
                "geodesic",
                "--max-clicks",
                "2",
                "--limit",
                "1",
                "--threads",
                "2",  # the conftest's setting: exercised without changing other tests' threads
                "--device",
                "cpu",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "tiny" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())["results"]
    assert set(summary) == {"tiny", "geodesic"} and summary["tiny"]["objects"] == 1


def test_correction_clicks_seed_only_the_side_they_correct():
    seg = GeodesicSegmenter(seed_radius=2, correction_radius=2)
    s = noisy_blob_sample(0)
    seg.start(s.image)
    first = seg.add_click(30, 34, True) > seg.threshold
    rows, cols, positive = seg._seeds[0]
    assert positive and len(rows) == 13  # the first click seeds its full radius-2 disk
    edge_row = int(np.flatnonzero(first[:, 34])[0])  # top edge of the predicted object in column 34
    seg.add_click(edge_row, 34, False)
    rows, cols, positive = seg._seeds[1]
    assert not positive and first[rows, cols].all()  # never seeds pixels predicted as background
    assert 1 <= len(rows) < 13
