"""What every fidelity check needs: the official code importable from a checkout, GrabCut images, the robot.

The official code (github.com/veizgyauzgyauz/FCFI) is NOT part of this repository: the checks import
it from a checkout given with ``--official-repo``; nothing of it is copied here. Modules it imports
but that the compared code paths do not use are replaced in this process only (see
:func:`use_official_checkout`).
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage import io

from napari_fcfi.engine.distance import border_distance

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_GRABCUT = REPO_ROOT.parent / "shared" / "data" / "grabcut"


def _unavailable(*_args: Any, **_kwargs: Any) -> None:
    raise RuntimeError("torchvision stand-in: masks_to_boxes is only used by the non-default adaptive crop")


class _ToTensor:
    """uint8 (H, W, C) -> float (C, H, W) / 255, as torchvision's ToTensor does for such arrays."""

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255)


def _install_torchvision_stand_ins() -> None:
    """``torchvision.ops.masks_to_boxes`` and ``torchvision.transforms.ToTensor`` when torchvision is absent."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        torchvision_module = types.ModuleType("torchvision")
        ops = types.ModuleType("torchvision.ops")
        ops.masks_to_boxes = _unavailable  # type: ignore[attr-defined]
        transforms = types.ModuleType("torchvision.transforms")
        transforms.ToTensor = _ToTensor  # type: ignore[attr-defined]
        torchvision_module.ops = ops  # type: ignore[attr-defined]
        torchvision_module.transforms = transforms  # type: ignore[attr-defined]
        sys.modules.update(
            {"torchvision": torchvision_module, "torchvision.ops": ops, "torchvision.transforms": transforms}
        )


def use_official_checkout(repo: Path, *, predictor: bool = False) -> Path:
    """Make the official package ``isegm`` of the checkout ``repo`` importable; returns the resolved path.

    Always: the numpy aliases removed in numpy 1.24 (``np.int``, ``np.bool``, ``np.float``) are
    restored, and ``torchvision`` (ops, ToTensor) and ``cv2`` get empty stand-ins when they are not
    installed. ``predictor=True`` (the evaluation predictor's checks) also replaces the logging module
    (it pulls in tensorboard), registers ``isegm.inference.predictors`` without running its
    ``__init__`` (which imports the BRS predictors and the whole model zoo) and stubs the dataset
    classes ``isegm.inference.utils`` imports for evaluation.
    """
    repo = Path(repo).resolve()
    if not (repo / "isegm" / "model").is_dir():
        raise SystemExit(f"--official-repo {repo}: not a checkout of the official FCFI code (no isegm/model)")
    for alias, value in (("int", int), ("bool", bool), ("float", float)):
        if not hasattr(np, alias):
            setattr(np, alias, value)
    _install_torchvision_stand_ins()
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    if predictor:
        log = types.ModuleType("isegm.utils.log")
        log.logger = logging.getLogger("official")  # type: ignore[attr-defined]
        sys.modules["isegm.utils.log"] = log
        package = types.ModuleType("isegm.inference.predictors")
        package.__path__ = [str(repo / "isegm" / "inference" / "predictors")]
        sys.modules["isegm.inference.predictors"] = package
        datasets = types.ModuleType("isegm.data.datasets")
        for name in (
            "GrabCutDataset",
            "BerkeleyDataset",
            "DavisDataset",
            "SBDEvaluationDataset",
            "PascalVocDataset",
        ):
            setattr(datasets, name, None)
        sys.modules.setdefault("isegm.data.datasets", datasets)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return repo


def read_rgb(path: Path) -> np.ndarray:
    """An image as contiguous uint8 RGB (gray repeated, alpha dropped)."""
    image = io.imread(path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def read_grabcut(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(RGB image, ground truth)`` of GrabCut image ``name`` (ground truth: 0, 128 ignore band, 255)."""
    image = read_rgb(next(Path(folder).glob(f"{name}_image.*")))
    gt = io.imread(Path(folder) / f"{name}_gt.png")
    return image, gt[..., 0] if gt.ndim == 3 else gt


def robot_click(gt: np.ndarray, pred: np.ndarray, not_clicked: np.ndarray) -> tuple[int, int, bool]:
    """Next click: deepest pixel of the larger error region (false negatives win ties with positives)."""
    valid = gt != 128
    fn_dt = border_distance((gt == 255) & ~pred & valid) * not_clicked
    fp_dt = border_distance((gt == 0) & pred & valid) * not_clicked
    positive = fn_dt.max() > fp_dt.max()
    rows, cols = np.nonzero(fn_dt == fn_dt.max()) if positive else np.nonzero(fp_dt == fp_dt.max())
    return int(rows[0]), int(cols[0]), bool(positive)
