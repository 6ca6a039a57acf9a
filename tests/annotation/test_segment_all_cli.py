"""``fcfi segment-all``: images and stacks to labels TIFFs, local threads and a dask.distributed cluster agree."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_fcfi.annotation.labels_tiff import read_labels_tiff
from napari_fcfi.cli import main

CENTRES = [(16, 16), (20, 46), (46, 30)]


def disks(shift: int = 0) -> np.ndarray:
    rows, cols = np.mgrid[:64, :64]
    image = np.full((64, 64), 150, np.uint16)
    for r, c in CENTRES:
        image[(rows - r - shift) ** 2 + (cols - c) ** 2 <= 36] = 2500
    return image


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "flat.tif", disks())
    tifffile.imwrite(folder / "stack.tif", np.stack([disks(), disks(shift=4)]))
    return folder


def test_a_stack_needs_slices_all(inputs, tmp_path, capsys):
    assert main(["segment-all", str(inputs), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "--slices all" in capsys.readouterr().err


@pytest.mark.slow
def test_local_threads_and_a_two_worker_cluster_give_the_same_labels(inputs, tmp_path):
    distributed = pytest.importorskip("distributed")  # the optional dask[distributed] extra
    local = tmp_path / "local"
    assert (
        main(
            [
                "segment-all",
                str(inputs),
                "--out",
                str(local),
                "--slices",
                "all",
                "--no-progress",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    flat, _ = read_labels_tiff(local / "flat_labels.tif")
    stack, _ = read_labels_tiff(local / "stack_labels.tif")
    assert flat.shape == (64, 64) and stack.shape == (2, 64, 64)
    assert flat.max() == len(CENTRES)
    for r, c in CENTRES:
        assert flat[r, c] > 0
    # Slice by slice: the second slice's objects get ids after the first's.
    assert set(np.unique(stack[0])) & set(np.unique(stack[1])) == {0}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        remote = tmp_path / "remote"
        assert (
            main(
                [
                    "segment-all",
                    str(inputs),
                    "--out",
                    str(remote),
                    "--slices",
                    "all",
                    "--no-progress",
                    "--scheduler",
                    cluster.scheduler_address,
                ]
            )
            == 0
        )
    for name in ("flat_labels.tif", "stack_labels.tif"):
        np.testing.assert_array_equal(read_labels_tiff(local / name)[0], read_labels_tiff(remote / name)[0])


def test_link_gives_one_id_per_object_through_the_stack(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([disks(), disks(shift=2), disks(shift=4)]))
    out = tmp_path / "linked"
    args = ["segment-all", str(tmp_path / "stack.tif"), "--out", str(out), "--slices", "all", "--no-progress"]
    assert main([*args, "--link"]) == 0
    stack, _ = read_labels_tiff(out / "stack_labels.tif")
    assert len(np.unique(stack)) == len(CENTRES) + 1  # each disk moves 2 px a slice: still one id
    for r, c in CENTRES:
        assert stack[0, r, c] == stack[1, r + 2, c] == stack[2, r + 4, c] > 0
    assert main(args) == 2  # the result of the first run is not replaced unasked
    assert main([*args, "--force"]) == 0  # without --link: every slice's objects get their own ids
    stack, _ = read_labels_tiff(out / "stack_labels.tif")
    assert len(np.unique(stack)) == 3 * len(CENTRES) + 1


def test_existing_labels_are_never_replaced_unasked_and_names_never_collide(tmp_path, capsys):
    """Retest 2026-12-06: a run into the images' folder replaced the hand-made cells_labels.tif, a rerun
    replaced every result, and cell.png + cell.tif wrote one cell_labels.tif (the first result lost)."""
    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "cells.tif", disks())
    hand_made = np.zeros((64, 64), np.uint16)
    hand_made[10:20, 10:20] = 7
    tifffile.imwrite(folder / "cells_labels.tif", hand_made)
    args = ["segment-all", str(folder), "--out", str(folder), "--no-progress"]
    assert main(args) == 2
    assert "cells_labels.tif exists already" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(folder / "cells_labels.tif"), hand_made)
    assert main([*args, "--force"]) == 0  # said so: replaced
    assert read_labels_tiff(folder / "cells_labels.tif")[0].max() == len(CENTRES)

    same_name = tmp_path / "same_name"
    same_name.mkdir()
    tifffile.imwrite(same_name / "cell.tif", disks())
    tifffile.imwrite(same_name / "cell.tiff", disks(shift=4))
    out = tmp_path / "out"
    assert main(["segment-all", str(same_name), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cell_tif_labels.tif", "cell_tiff_labels.tif"]
    assert read_labels_tiff(out / "cell_tif_labels.tif")[0][CENTRES[0]] > 0
    assert read_labels_tiff(out / "cell_tiff_labels.tif")[0][CENTRES[0][0] + 4, CENTRES[0][1]] > 0

    capsys.readouterr()
    assert main(["segment-all", str(same_name), "--out", str(folder / "cells.tif"), "--no-progress"]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_inputs_it_cannot_read_are_refused_by_name_and_empty_results_say_why(tmp_path, capsys):
    """Retest 2026-12-06: a Z, C, Y, X file gave labels of shape (4, 2), a missing channel axis gave
    (3, 256), and an empty result never said why (the API's warning did not reach the command line)."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "zcyx.tif", np.stack([np.stack([disks(), disks()])] * 4))
    out = str(tmp_path / "out")
    for extra, said in (
        (["--slices", "all"], "segment-all reads 2D images, RGB(A) images and stacks"),
        (["--slices", "all", "--channel-axis", "7"], "--channel-axis 7 does not exist"),
        (["--slices", "all", "--channel-axis", "0"], "the channel axis cannot be the stack axis"),
    ):
        assert main(["segment-all", str(folder / "zcyx.tif"), "--out", out, "--no-progress", *extra]) == 2
        assert said in capsys.readouterr().err
    tifffile.imwrite(folder / "gray.tif", disks())
    tifffile.imwrite(folder / "flat.tif", np.full((64, 64), 7, np.uint16))
    gray = str(folder / "gray.tif")
    assert main(["segment-all", gray, "--out", out, "--no-progress", "--channel", "1"]) == 2
    assert "--channel 1 needs --channel-axis" in capsys.readouterr().err
    assert main(["segment-all", gray, "--out", out, "--no-progress", "--object-size", "0"]) == 2
    assert "--object-size must be a positive number" in capsys.readouterr().err
    assert main(["segment-all", gray, "--out", out, "--no-progress", "--model", "nosuchmodel"]) == 2
    assert "cannot load model 'nosuchmodel'" in capsys.readouterr().err  # was: a traceback from dask
    assert main(["segment-all", gray, "--out", out, "--no-progress", "--link"]) == 2
    assert "--link links the slices of stacks" in capsys.readouterr().err
    (folder / "._gray.tif").write_bytes(b"macOS sidecar")  # hidden: not an image, skipped
    (folder / "broken.png").write_bytes(b"not a png")
    assert main(["segment-all", str(folder), "--out", out, "--no-progress", "--slices", "all"]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "broken.png" in err and "._gray" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert main(["segment-all", str(folder / "flat.tif"), "--out", out, "--no-progress"]) == 0
    assert "flat.tif: segment all: the image is constant" in capsys.readouterr().err


def test_a_failing_plane_costs_only_its_own_input(tmp_path, monkeypatch, capsys):
    """Retest 2026-12-06: one failing plane (a traceback inside dask) lost every result of the run."""
    from napari_fcfi.annotation import segment_all_cli

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        tifffile.imwrite(folder / f"{name}.tif", disks())
    real = segment_all_cli.segment_plane

    def failing_on_b(plane, *args):
        if plane.path.endswith("b.tif"):
            raise RuntimeError("out of memory")
        return real(plane, *args)

    monkeypatch.setattr(segment_all_cli, "segment_plane", failing_on_b)
    out = tmp_path / "out"
    assert main(["segment-all", str(folder), "--out", str(out), "--no-progress"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "c_labels.tif"]
    err = capsys.readouterr().err
    assert "b.tif: failed (RuntimeError: out of memory)" in err and "1 of 3 input(s) failed" in err


def test_output_names_never_repeat_even_without_case():
    from pathlib import Path

    from napari_fcfi.annotation.segment_all_cli import output_names

    def names(*files):
        return [p.name for p in output_names([Path(f) for f in files], Path("out")).values()]

    assert names("a.tif", "b.png") == ["a_labels.tif", "b_labels.tif"]
    assert names("cell.tif", "cell.TIF") == ["cell_tif_labels.tif", "cell_TIF_2_labels.tif"]
    assert names("cell.png", "cell.tif", "cell_png.tif") == [
        "cell_png_labels.tif",
        "cell_tif_labels.tif",
        "cell_png_2_labels.tif",
    ]
    assert names("Cell.png", "cell.tif") == ["Cell_png_labels.tif", "cell_tif_labels.tif"]


def test_local_planes_come_back_as_they_finish_not_behind_a_slow_one(monkeypatch):
    import argparse
    import threading

    from napari_fcfi.annotation import segment_all_cli

    slow_may_finish, started, released = threading.Event(), [], []
    lock = threading.Lock()

    def fake_segment(plane, *settings):
        with lock:
            started.append(plane.index)
            slow = len(started) == 1
        if slow:  # the first plane to start is slow: done only once the others have come back
            released.append(slow_may_finish.wait(20))
        return np.full((2, 2), plane.index, np.int32), None, None

    monkeypatch.setattr(segment_all_cli, "safe_segment_plane", fake_segment)
    planes = [segment_all_cli.Plane("stack.tif", i) for i in range(4)]
    args = argparse.Namespace(
        model="default", object_size=None, channel_axis=None, channel=None, workers=2, scheduler=None
    )
    order = []
    for index, (labels, _message, _error) in segment_all_cli.iter_planes(planes, args):
        assert labels[0, 0] == index
        order.append(index)
        if len(order) == 3:
            slow_may_finish.set()
    assert released == [True] and order[-1] == started[0] and sorted(order) == [0, 1, 2, 3]


def test_planes_not_begun_are_skipped_once_the_reader_stops(monkeypatch):
    import argparse
    import time

    from napari_fcfi.annotation import segment_all_cli

    calls = []

    def fake_segment(plane, *settings):
        calls.append(plane.index)
        time.sleep(0.05)
        return np.zeros((2, 2), np.int32), None, None

    monkeypatch.setattr(segment_all_cli, "safe_segment_plane", fake_segment)
    planes = [segment_all_cli.Plane("stack.tif", i) for i in range(40)]
    args = argparse.Namespace(
        model="default", object_size=None, channel_axis=None, channel=None, workers=2, scheduler=None
    )
    reading = segment_all_cli.iter_planes(planes, args)
    next(reading)
    reading.close()  # e.g. writing a file failed
    time.sleep(1.0)
    assert len(calls) <= 4, calls  # the planes in flight, not the other 36
