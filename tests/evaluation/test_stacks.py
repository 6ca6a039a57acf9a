"""Stack robot (propagation vs every slice from scratch), test-stack generators, ``fcfi eval --stacks``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from helpers.standins import BlobNet, BrightRegionSegmenter, disk
from napari_fcfi.cli import main
from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.splits import split_instance_folder
from napari_fcfi.evaluation.stack_data import (
    Stack,
    deformed_stack,
    dsb_deformed_stacks,
    mnfinder_deformed_stacks,
    procedural_stacks,
    sample_stack,
)
from napari_fcfi.evaluation.stacks import (
    StackEvalResult,
    evaluate_stack_object,
    evaluate_stacks,
    format_stack_table,
    stack_objects,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")

SIZE = 64


def moving_disk_stack() -> Stack:
    """A bright disk (label 1) drifting right on slices 2..8 of 12, nothing else."""
    image = np.full((12, SIZE, SIZE), 10, np.uint16)
    labels = np.zeros((12, SIZE, SIZE), np.int32)
    for z in range(2, 9):
        d = disk((SIZE, SIZE), 30, 20 + 2 * z, 8)
        image[z][d], labels[z][d] = 200, 1
    return Stack("moving-disk", image, labels)


def tricky_stack() -> Stack:
    """Label 1: disk r=8 at (30, 30) on slices 3..6, and on slice 2 moved away (no overlap: propagation
    stops there). Slice 5: a 7x7 neighbour (label 2) joined by a 4-pixel bridge (the bright region
    merges). Slice 7: another object (label 3) where label 1 was (propagation runs past the end)."""
    image = np.full((10, SIZE, SIZE), 10, np.uint16)
    labels = np.zeros((10, SIZE, SIZE), np.int32)
    for z in range(3, 7):
        labels[z][disk((SIZE, SIZE), 30, 30, 8)] = 1
    labels[2][disk((SIZE, SIZE), 30, 52, 8)] = 1
    labels[5][27:34, 43:50] = 2
    labels[5][30, 39:43] = 2
    labels[7][disk((SIZE, SIZE), 30, 30, 8)] = 3
    image[labels > 0] = 200
    return Stack("tricky", image, labels)


def test_known_numbers_on_a_drifting_disk():
    stack = moving_disk_stack()
    assert stack_objects(stack) == [1]
    result = evaluate_stacks(BrightRegionSegmenter(None), [stack], stack_set="disk")
    (obj,) = result.objects
    assert obj.start_z == 5 and [s.z for s in obj.slices] == list(range(2, 9))
    s = result.summary
    # one click annotates the start slice, propagation does the six others exactly; from scratch: 7 clicks
    assert (s["slices"], s["clicks_propagation"], s["clicks_scratch"]) == (7, 1, 7)
    assert s["ratio"] == pytest.approx(1 / 7) and s["correction_clicks_per_propagated_slice"] == 0
    assert s["iou_by_distance"] == {1: 1.0, 2: 1.0, 3: 1.0} == s["chained_iou_by_distance"]
    assert s["deletions"] == s["chained_overrun_slices"] == s["propagation_stops"] == 0
    assert "0.14" in format_stack_table([result])


def test_fill_between_mode_and_stopping_numbers_on_a_drifting_disk():
    stack = moving_disk_stack()  # the disk is on slices 2..8 and ends inside the stack on both sides
    result = evaluate_stacks(BrightRegionSegmenter(None), [stack], stack_set="disk", fill_every=3)
    (obj,) = result.objects
    anchors = {2, 5, 8}  # every 3rd reached slice and the last one, annotated from scratch (1 click each)
    assert {s.z for s in obj.slices if s.fill_iou is None} == anchors
    assert all(
        s.fill_iou == 1.0 and s.clicks_fill == 0 and not s.fill_review
        for s in obj.slices
        if s.z not in anchors
    )
    s = result.summary
    assert (s["clicks_fill"], s["filled_slices"], s["ratio_fill"]) == (3, 4, pytest.approx(3 / 7))
    assert (s["ends"], s["mean_overrun"], s["false_stop_rate"], s["chained_stops"]) == (2, 0.0, 0.0, 0)
    table = format_stack_table([result])
    assert "0 / 6 (0.0 %)" in table and "0.43" in table
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_stacks(BrightRegionSegmenter(None), [stack], fill_every=1)


def test_fill_between_from_propagated_anchors_on_a_drifting_disk():
    stack = moving_disk_stack()  # the disk is on slices 2..8; the start slice is 5
    result = evaluate_stacks(
        BrightRegionSegmenter(None), [stack], stack_set="disk", fill_every=2, fill_anchors="propagated"
    )
    (obj,) = result.objects
    # 2 slices from the start each way, and each end: 5 annotated (1 click), 7 and 3 propagated from it,
    # 8 and 2 from those; propagation is exact here, so no correction clicks anywhere
    assert {s.z for s in obj.slices if s.fill_iou is None} == {2, 3, 5, 7, 8}
    assert {s.z: s.clicks_fill for s in obj.slices} == {2: 0, 3: 0, 4: 0, 5: 1, 6: 0, 7: 0, 8: 0}
    s = result.summary
    assert (s["clicks_fill"], s["filled_slices"], s["ratio_fill"]) == (1, 2, pytest.approx(1 / 7))
    assert result.settings["fill_anchors"] == "propagated"
    with pytest.raises(ValueError, match="fill_anchors must be one of"):
        evaluate_stacks(BrightRegionSegmenter(None), [stack], fill_every=2, fill_anchors="guessed")


def test_membrane_stacks_have_cells_that_begin_and_end_inside():
    from napari_fcfi.evaluation.stack_data import membrane_stacks, stack_set

    (stack,) = membrane_stacks(1, depth=9, size=96, seed=3)
    np.testing.assert_array_equal(stack.labels, membrane_stacks(1, depth=9, size=96, seed=3)[0].labels)
    assert stack_set("membrane", count=1, depth=4, seed=3)[0].labels.shape == (4, 192, 192)  # at least 192 px
    assert stack.image.shape == stack.labels.shape == (9, 96, 96) and stack.labels.dtype == np.int32
    present = np.stack([np.bincount(z.ravel(), minlength=stack.labels.max() + 1) > 0 for z in stack.labels])
    inner = present[1:-1].any(axis=0)
    assert (inner & ~present[0] & ~present[-1]).sum() >= 1  # a cell that begins and ends inside the stack
    membranes = stack.labels == 0
    assert 0.05 < membranes.mean() < 0.4
    assert stack.image[membranes].mean() < stack.image[~membranes].mean()  # dark membranes, bright cells
    assert len(stack_objects(stack)) >= 5


def test_corrections_stops_and_deletions_are_counted():
    stack = tricky_stack()
    assert stack_objects(stack) == [1]  # labels 2 and 3 are on one slice only
    obj = evaluate_stack_object(BrightRegionSegmenter(None), stack, 1)
    by_z = {s.z: s for s in obj.slices}
    gt5 = stack.labels[5] == 1
    merged = metrics.iou(stack.labels[5] > 0, gt5)
    assert merged < 0.85
    assert obj.start_z == 4 and sorted(by_z) == [2, 3, 4, 5, 6]
    # slice 5: the propagated mask holds the neighbour; one negative click removes it (from scratch: two)
    assert by_z[5].propagated_iou == pytest.approx(merged)
    assert (by_z[5].clicks_propagation, by_z[5].clicks_scratch) == (1, 2)
    # slice 2: propagation finds nothing where the object was and stops; the robot annotates it anew
    assert by_z[2].propagation_stopped and by_z[2].propagated_iou == 0.0 and by_z[2].rejected_iou == 0.0
    assert by_z[2].clicks_propagation == by_z[2].clicks_scratch == 1
    # slice 7 is past the end but propagation fills it with label 3: one deletion, chained runs there too
    assert obj.deletions == [7] and obj.chained_overrun == [7]
    assert obj.clicks_propagation == 1 + 0 + 1 + 1 + 0 + 1 and obj.clicks_scratch == 6
    assert (
        by_z[5].chained_iou == pytest.approx(merged)
        and by_z[6].chained_iou == 1.0
        and by_z[2].chained_iou == 0.0
    )
    # clicking on in the propagation's session (its automatic click kept) gives the same numbers here
    kept = evaluate_stack_object(BrightRegionSegmenter(None), stack, 1, correction="continue")
    assert kept.slices == obj.slices and kept.deletions == obj.deletions
    with pytest.raises(ValueError, match="correction"):
        evaluate_stack_object(BrightRegionSegmenter(None), stack, 1, correction="redo")
    result = StackEvalResult("bright", "tricky", 20, 0.85, [obj])
    s = result.summary
    assert s["correction_clicks_per_propagated_slice"] == pytest.approx(0.5)
    assert s["iou_by_distance"] == {1: pytest.approx((1 + merged) / 2), 2: 0.5}
    assert (s["propagation_stops"], s["deletions"], s["no_correction_fraction"]) == (1, 1, 0.5)


def test_engine_path_with_a_stand_in_network(tmp_path):
    """Through the real engine (BlobNet): start slice counted alike, chained = one-step at distance 1."""
    stack = moving_disk_stack()
    result = evaluate_stacks(
        BlobNet(radius=8.0, brightness_weight=4.0),
        [stack],
        max_clicks=3,
        engine_settings={"input_size": 64},
        stack_set="disk",
    )
    (obj,) = result.objects
    start = next(s for s in obj.slices if s.distance == 0)
    assert start.clicks_propagation == start.clicks_scratch >= 1
    for record in obj.slices:
        assert 0 <= record.clicks_propagation <= 3 and 1 <= record.clicks_scratch <= 3
        if record.distance == 1:
            assert record.chained_iou == pytest.approx(record.propagated_iou)
    again = StackEvalResult.load_json(result.save_json(tmp_path / "r.json"))
    assert again.summary == result.summary and again.objects[0].slices == obj.slices


def test_procedural_stacks_are_deterministic_and_aligned():
    first = procedural_stacks(2, depth=6, size=48, seed=3)
    again = procedural_stacks(2, depth=6, size=48, seed=3)
    other = procedural_stacks(2, depth=6, size=48, seed=4)
    assert [s.name for s in first] == ["procedural-nuclei-0", "procedural-cells-1"]
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert not np.array_equal(a.labels, c.labels)
        assert a.image.shape == a.labels.shape == (6, 48, 48) and a.labels.dtype == np.int32
        inside, outside = a.image[a.labels > 0].mean(), a.image[a.labels == 0].mean()
        assert inside > outside  # objects are brighter than their surroundings: labels sit on them
        # objects move and change between slices but stay the same objects (they overlap slice to slice)
        for lab in np.unique(a.labels[a.labels > 0]):
            present = [z for z in range(6) if (a.labels[z] == lab).any()]
            for z0, z1 in itertools.pairwise(present):
                if z1 == z0 + 1 and (a.labels[z0] == lab).sum() > 30 and (a.labels[z1] == lab).sum() > 30:
                    assert ((a.labels[z0] == lab) & (a.labels[z1] == lab)).any()


def two_level_image():
    labels = np.zeros((120, 120), np.int32)
    for i, (r, c) in enumerate([(40, 40), (40, 75), (80, 60), (85, 95)], start=1):
        labels[disk((120, 120), r, c, 11)] = i
    return (labels > 0) * 100.0 + 10.0, labels


@pytest.mark.parametrize("ending", [0.0, 1.0])
def test_deformed_stack_keeps_image_and_labels_aligned(ending):
    image, labels = two_level_image()

    def make():
        rng = np.random.default_rng(5)
        return deformed_stack(image, labels, rng, 7, crop=80, margin=16, ending_fraction=ending, noise=0.0)

    stack = make()
    np.testing.assert_array_equal(stack.labels, make().labels)
    assert stack.image.shape == stack.labels.shape == (7, 80, 80)
    agreement = np.mean((stack.image > 55) == (stack.labels > 0))
    assert agreement > 0.97  # only boundary pixels (linear vs nearest interpolation) disagree
    middle = stack.labels[3]
    assert {int(v) for v in np.unique(middle)} - {0} <= {1, 2, 3, 4} and (middle > 0).sum() > 300
    if ending == 0.0:
        assert not np.array_equal(stack.labels[0], middle)  # slices move
        assert all((stack.labels[z] > 0).sum() > 0.7 * (middle > 0).sum() for z in range(7))
    else:
        assert (stack.labels[0] > 0).sum() < (middle > 0).sum()  # objects shrink towards their ends


def test_real_image_stacks_use_validation_images_only(dsb_dir, tmp_path):
    (stack,) = dsb_deformed_stacks(dsb_dir, count=1, depth=3, crop=96)
    assert stack.name.split("-")[1] in split_instance_folder(dsb_dir)[1]
    assert stack.image.shape[:3] == stack.labels.shape and stack.labels.shape[0] == 3
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="val"):
        mnfinder_deformed_stacks(tmp_path / "train", count=1)
    sample = sample_stack()
    assert sample.image.shape == sample.labels.shape == (16, 128, 128)


def test_fcfi_eval_stack_mode_writes_table_json_and_plot(tmp_path, capsys, tiny_fcfi_net):
    import napari_fcfi.model as model_room

    path = model_room.save_model(
        tiny_fcfi_net, tmp_path / "tiny.safetensors", metadata={"name": "tiny", "input_size": 64}
    )
    out = tmp_path / "res"
    args = [
        "eval",
        "--stacks",
        "procedural",
        "--stack-count",
        "1",
        "--stack-depth",
        "5",
        "--stack-size",
        "48",
        "--stack-objects",
        "1",
        "--max-clicks",
        "1",
        "--model",
        str(path),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "clicks/slice prop." in printed and "procedural" in printed and "IoU d=1" in printed
    for name in (
        "stacks_procedural.json",
        "stacks_summary.json",
        "stacks_results.txt",
        "stacks_propagation.png",
    ):
        assert (out / name).is_file(), name
    data = json.loads((out / "stacks_procedural.json").read_text())
    assert data["summary"]["objects"] == 1 and data["max_clicks"] == 1 and data["objects"][0]["slices"]
    assert set(json.loads((out / "stacks_summary.json").read_text())["results"]) == {"procedural"}
    assert (out / "stacks_propagation.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--stacks", "sample", "--baseline", "geodesic", "--out", str(out)]) == 2
    assert "exactly one --model" in capsys.readouterr().err
    assert main(["eval", "--baseline", "geodesic", "--out", str(out)]) == 2
    assert "--data" in capsys.readouterr().err
