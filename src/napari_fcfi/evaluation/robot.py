"""Robot user of the standard interactive-segmentation protocol (Xu et al. 2016, RITM, FCFI).

Every click goes to the pixel farthest from the border of an error region:

* first click: the object pixel farthest from the object's border (the prediction is empty, so the
  whole object is the false-negative region);
* next clicks: false negatives (object pixels predicted as background) and false positives
  (background pixels predicted as object) are measured by their Euclidean distance transform; the
  click goes into the region whose farthest pixel is farther (positive click into false negatives,
  negative click into false positives).

Details that make the robot reproduce the published protocol:

* The error masks are padded with one background pixel before the distance transform, so the image
  border counts as a border (an error touching the image edge is not "infinitely deep").
* A false-negative maximum must be strictly larger than the false-positive maximum to give a
  positive click; a tie gives a negative click.
* Among equally far pixels the first one in row-major order is taken.
* Pixels already clicked get distance 0 so the robot never clicks the same pixel twice.
* Pixels of the ignore region (e.g. GrabCut's 128 band) are neither false negatives nor false
  positives, so they never attract a click.

When no error pixel is left (the prediction equals the ground truth outside the ignore region),
:meth:`RobotUser.next_click` returns ``None``; the runner then stops clicking and carries the last IoU
forward (the published code would click a meaningless pixel here).
"""

from __future__ import annotations

import numpy as np

from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.distance import border_distance


def robot_click(
    gt_mask: np.ndarray,
    pred_mask: np.ndarray,
    valid: np.ndarray | None = None,
    not_clicked: np.ndarray | None = None,
) -> Click | None:
    """The robot's next click for one prediction (the rules of the module docstring), or ``None``.

    ``valid`` (bool) marks pixels that may count as errors (``None``: all); ``not_clicked`` (bool)
    is False on pixels clicked before, which are never clicked again. Training's click simulation
    calls this too, so the network is trained on the user the evaluation simulates.
    """
    false_neg = gt_mask & ~pred_mask
    false_pos = ~gt_mask & pred_mask
    if valid is not None:
        false_neg &= valid
        false_pos &= valid
    fn_dist = border_distance(false_neg)
    fp_dist = border_distance(false_pos)
    if not_clicked is not None:
        fn_dist *= not_clicked
        fp_dist *= not_clicked
    fn_max = fn_dist.max()
    fp_max = fp_dist.max()
    if fn_max <= 0 and fp_max <= 0:
        return None
    positive = bool(fn_max > fp_max)
    dist = fn_dist if positive else fp_dist
    # argmax returns the first maximum in row-major (C) order: the published tie-breaking.
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(int(row), int(col), positive)


class RobotUser:
    """Simulated user that clicks on the largest error of each prediction.

    Parameters
    ----------
    gt_mask:
        bool (H, W) ground-truth object.
    ignore_mask:
        optional bool (H, W): pixels that never count as errors (and never get clicks).
    """

    def __init__(self, gt_mask: np.ndarray, ignore_mask: np.ndarray | None = None):
        gt_mask = np.asarray(gt_mask)
        if gt_mask.ndim != 2:
            raise ValueError(f"gt_mask must be 2D (H, W), got shape {gt_mask.shape}")
        self.gt_mask = gt_mask.astype(bool)
        if ignore_mask is None:
            self.valid = np.ones_like(self.gt_mask)
        else:
            ignore_mask = np.asarray(ignore_mask, dtype=bool)
            if ignore_mask.shape != self.gt_mask.shape:
                raise ValueError(
                    f"ignore_mask shape {ignore_mask.shape} differs from gt_mask shape {self.gt_mask.shape}"
                )
            self.valid = ~ignore_mask
        if not (self.gt_mask & self.valid).any():
            raise ValueError("gt_mask has no object pixel outside the ignore region")
        self.clicks: list[Click] = []
        self._not_clicked = np.ones_like(self.gt_mask)

    def next_click(self, pred_mask: np.ndarray | None = None) -> Click | None:
        """Choose, record and return the next click for ``pred_mask`` (``None``: empty prediction).

        Returns ``None`` when the prediction has no error left.
        """
        if pred_mask is None:
            pred_mask = np.zeros_like(self.gt_mask)
        pred_mask = np.asarray(pred_mask)
        if pred_mask.shape != self.gt_mask.shape:
            raise ValueError(
                f"pred_mask shape {pred_mask.shape} differs from gt_mask shape {self.gt_mask.shape}"
            )
        click = robot_click(self.gt_mask, pred_mask.astype(bool), self.valid, self._not_clicked)
        if click is None:
            return None
        self.clicks.append(click)
        self._not_clicked[click.row, click.col] = False
        return click
