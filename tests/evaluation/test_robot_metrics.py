"""Robot user click choice and NoC/NoF/IoU metrics on hand-made masks and known IoU sequences."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.robot import Click, RobotUser


def square(shape=(41, 41), r0=10, r1=31, c0=10, c1=31):
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


# ------------------------------------------------------------------------------------------ robot
def test_first_click_is_centre_of_square():
    robot = RobotUser(square())
    assert robot.next_click(None) == Click(20, 20, True)
    assert robot.clicks == [Click(20, 20, True)]


def test_image_border_counts_as_border():
    # A band along the top edge: without padding the deepest pixel would be on row 9 (farthest from
    # the only background row); with the published padding the image edge is a border too.
    gt = np.zeros((30, 41), bool)
    gt[0:10, :] = True
    click = RobotUser(gt).next_click()
    assert click == Click(4, 4, True)  # first of the row-major ties at distance 5


def test_larger_false_positive_gives_negative_click():
    gt = square()
    pred = gt.copy()
    pred[10:31, 31:41] = True  # false positive block 21 x 10 (depth 5 with the image edge)
    pred[18:23, 10:15] = False  # false negative hole 5 x 5 at the object's edge (depth 3)
    click = RobotUser(gt).next_click(pred)
    assert not click.positive
    assert pred[click.row, click.col] and not gt[click.row, click.col]


def test_larger_false_negative_gives_positive_click():
    gt = square()
    pred = np.zeros_like(gt)
    pred[10:31, 10:16] = True  # most of the object missing -> large false negative
    pred[0:3, 0:3] = True  # tiny false positive
    click = RobotUser(gt).next_click(pred)
    assert click.positive and gt[click.row, click.col] and not pred[click.row, click.col]
    # Depth 8 is limited by the 15 columns (16..30): rows 17..23 tie, the first row wins.
    assert (click.row, click.col) == (17, 23)


def test_tie_gives_negative_click():
    gt = np.zeros((20, 40), bool)
    gt[5:10, 5:10] = True
    pred = np.zeros_like(gt)
    pred[5:10, 25:30] = True  # identical 5 x 5 false positive: same depth as the false negative
    click = RobotUser(gt).next_click(pred)
    assert click == Click(7, 27, False)


def test_ignore_region_never_clicked_and_not_an_error():
    gt = square()
    ignore = square(r0=4, r1=37, c0=4, c1=37) & ~gt  # 6-pixel band around the object
    pred = gt | ignore  # the prediction spills over the whole band: no error at all
    robot = RobotUser(gt, ignore)
    assert robot.next_click(pred) is None
    pred[20, 20] = False  # a single false-negative pixel is now the only error
    assert robot.next_click(pred) == Click(20, 20, True)
    # Without the ignore mask the band (a large false positive) would get the click.
    assert not RobotUser(gt).next_click(gt | ignore).positive


def test_ignore_also_removes_false_negatives():
    gt = square()
    ignore = np.zeros_like(gt)
    ignore[10:31, 10:25] = True  # most of the object is ignored
    click = RobotUser(gt, ignore).next_click()
    assert not ignore[click.row, click.col] and click.col >= 25


def test_clicked_pixel_is_not_clicked_again():
    robot = RobotUser(square())
    first = robot.next_click()
    second = robot.next_click()  # same (empty) prediction again
    assert second.positive and (second.row, second.col) != (first.row, first.col)


def test_robot_errors():
    with pytest.raises(ValueError, match="2D"):
        RobotUser(np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError, match="no object pixel"):
        RobotUser(np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="shape"):
        RobotUser(square()).next_click(np.zeros((3, 3), bool))


# ---------------------------------------------------------------------------------------- metrics
def test_iou_with_ignore_region():
    gt = np.zeros((10, 10), bool)
    gt[0:4, 0:4] = True  # 16
    pred = np.zeros_like(gt)
    pred[0:4, 0:6] = True  # 24, 8 false positives in columns 4-5
    assert metrics.iou(pred, gt) == pytest.approx(16 / 24)
    ignore = np.zeros_like(gt)
    ignore[:, 4:6] = True
    assert metrics.iou(pred, gt, ignore) == pytest.approx(1.0)
    assert metrics.iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(pred, gt[:5])


def test_noc_nof_known_sequences():
    seqs = [
        [0.50, 0.86, 0.91, 0.96],  # reaches 85 at 2, 90 at 3, 95 at 4
        [0.90, 0.90, 0.90, 0.90],  # 85 and 90 at 1, never 95
        [0.10, 0.20, 0.30, 0.85],  # 85 exactly at the last click: NoC = max, but not a failure
    ]
    assert metrics.clicks_to_reach(seqs[0], 0.85, 4) == 2
    assert metrics.noc(seqs, 0.85, 4) == pytest.approx((2 + 1 + 4) / 3)
    assert metrics.noc(seqs, 0.90, 4) == pytest.approx((3 + 1 + 4) / 3)
    assert metrics.noc(seqs, 0.95, 4) == pytest.approx((4 + 4 + 4) / 3)
    assert metrics.nof(seqs, 0.85, 4) == 0
    assert metrics.nof(seqs, 0.90, 4) == 1
    assert metrics.nof(seqs, 0.95, 4) == 2
    assert metrics.nof_published(seqs, 0.85, 4) == 1  # the published scripts' count
    # max_clicks truncates: with 2 clicks, the first object never reaches 90.
    assert metrics.noc(seqs, 0.90, 2) == pytest.approx((2 + 1 + 2) / 3)


def test_mean_curve_pads_early_stops_and_summary():
    seqs = [[0.5, 0.7, 0.9], [0.8, 1.0]]
    curve = metrics.mean_iou_curve(seqs, 4)
    np.testing.assert_allclose(curve, [0.65, 0.85, 0.95, 0.95])
    summary = metrics.summarize(seqs, [0.1, 0.2, 0.3, 0.6, 0.1], max_clicks=4)
    assert summary["objects"] == 2
    assert summary["iou@1"] == pytest.approx(0.65) and summary["iou@3"] == pytest.approx(0.95)
    assert "iou@5" not in summary
    assert summary["spc_mean"] == pytest.approx(0.26) and summary["spc_median"] == pytest.approx(0.2)
    assert summary["noc@90"] == pytest.approx((3 + 2) / 2)
    assert summary["nof@95"] == 1
    assert np.isnan(metrics.noc([], 0.9, 20))
