"""Evaluation datasets: one object (image, ground-truth mask, optional ignore mask) per sample.

Readers cover the classic interactive-segmentation benchmarks in the folder layouts of their public
releases (as RITM/FCFI distribute them) and the microscopy layouts this project uses:

* GrabCut:   ``data_GT/<name>.<ext>`` + ``boundary_GT/<name>.<ext>`` (0 bg, 128 ignore band, 255 fg),
             or a flat folder ``<name>_image.<ext>`` + ``<name>_gt.<ext>`` with the same encoding.
* Berkeley:  ``images/`` + ``masks/`` (or ``images-f-BRS/test`` + ``masks-f-BRS/test``), GrabCut encoding.
* DAVIS, COCO-MVal: ``img/<name>.jpg`` + ``gt/<name>.png`` (any non-zero value, any channel = object).
* SBD:       ``img/<name>.jpg`` + ``inst/<name>.mat`` (``GTinst.Segmentation``) listed in ``val.txt``;
             every instance is one object.
* instance folder: ``<id>_image.<ext>`` + ``<id>_labels.<ext>`` (integer instance labels, 0 = background).
* TIFF stack: ``<name>_image.tif`` + ``<name>_labels.tif`` with a leading Z axis; objects are taken
  per slice.

The dataset interface and the object sampling live in :mod:`.samples`, the file matching in
:mod:`.layouts`, the train/validation split in :mod:`.splits` and the TIFF stack reader in
:mod:`.tiff_stack`; this module holds the other readers and :func:`open_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from napari_fcfi.engine.io import read_image

from .layouts import TIFF_SUFFIXES, pairs_from_dirs, pairs_from_suffixes
from .samples import EvalDataset, InstanceDataset, Sample, drop_alpha
from .splits import split_instance_folder
from .tiff_stack import TiffStackDataset

DATASET_TYPES = (
    "grabcut",
    "berkeley",
    "davis",
    "sbd",
    "coco_mval",
    "instance-folder",
    "tiff-stack",
)


class _PairedMaskDataset(EvalDataset):
    """Images and single-object masks matched by name; subclasses decode the mask."""

    def __init__(self, pairs: list[tuple[str, Path, Path]], name: str):
        if not pairs:
            raise ValueError(f"{name}: no image/mask pairs found")
        self._pairs = pairs
        self.name = name

    @property
    def entry_ids(self) -> list[str]:
        return [p[0] for p in self._pairs]

    def decode_mask(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def samples(self, index: int) -> list[Sample]:
        sample_id, image_path, mask_path = self._pairs[index]
        image = drop_alpha(read_image(image_path, lazy=False))
        raw = read_image(mask_path, lazy=False)
        gt, ignore = self.decode_mask(raw)
        if gt.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask shape {gt.shape} differs from image shape {image.shape[:2]}")
        return [Sample(image, gt, ignore, sample_id)]


def _first_channel(raw: np.ndarray) -> np.ndarray:
    return raw[..., 0] if raw.ndim == 3 else raw


# --------------------------------------------------------------------------- single-object benchmarks
class GrabCutDataset(_PairedMaskDataset):
    """GrabCut: masks with 0 background, 128 ignore band, values above 128 object.

    Layouts: ``data_GT/`` + ``boundary_GT/`` (RITM release) or flat ``<name>_image.*`` + ``<name>_gt.*``.
    """

    def __init__(self, path: str | Path, name: str = "grabcut"):
        path = Path(path)
        if (path / "data_GT").is_dir():
            pairs = pairs_from_dirs(path / "data_GT", path / "boundary_GT", name)
        else:
            pairs = pairs_from_suffixes(path, "_image", "_gt", name)
        super().__init__(pairs, name)

    def decode_mask(self, raw):
        raw = _first_channel(raw)
        ignore = raw == 128
        return raw > 128, (ignore if ignore.any() else None)


class BerkeleyDataset(GrabCutDataset):
    """Berkeley (100 images): ``images/`` + ``masks/`` or ``images-f-BRS/test`` + ``masks-f-BRS/test``."""

    def __init__(self, path: str | Path, name: str = "berkeley"):
        path = Path(path)
        if (path / "images").is_dir():
            pairs = pairs_from_dirs(path / "images", path / "masks", name)
        elif (path / "images-f-BRS" / "test").is_dir():
            pairs = pairs_from_dirs(path / "images-f-BRS" / "test", path / "masks-f-BRS" / "test", name)
        else:
            raise ValueError(f"{name}: {path} has neither images/ nor images-f-BRS/test")
        _PairedMaskDataset.__init__(self, pairs, name)


class DavisDataset(_PairedMaskDataset):
    """DAVIS-345 / COCO-MVal layout: ``img/`` + ``gt/``; any non-zero value in any channel is object."""

    def __init__(self, path: str | Path, name: str = "davis"):
        path = Path(path)
        super().__init__(pairs_from_dirs(path / "img", path / "gt", name), name)

    def decode_mask(self, raw):
        raw = raw.max(axis=-1) if raw.ndim == 3 else raw
        return raw > 0, None


class CocoMValDataset(DavisDataset):
    """COCO-MVal (800 objects) as distributed by RITM: the DAVIS layout ``img/`` + ``gt/``."""

    def __init__(self, path: str | Path, name: str = "coco_mval"):
        super().__init__(path, name)


# ---------------------------------------------------------------------------------- instance datasets
def read_sbd_instances(mat_path: str | Path) -> np.ndarray:
    """Instance label image from an SBD ``inst/<name>.mat`` file (``GTinst.Segmentation``)."""
    from scipy.io import loadmat

    content = loadmat(str(mat_path))
    if "GTinst" not in content:
        raise ValueError(f"{mat_path}: no GTinst struct (is it an SBD inst/ file?)")
    gt_inst = content["GTinst"]
    try:
        return np.asarray(gt_inst["Segmentation"][0, 0]).astype(np.int32)
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"{mat_path}: GTinst has no Segmentation field") from exc


class SBDDataset(InstanceDataset):
    """SBD: ``img/<name>.jpg``, ``inst/<name>.mat``, image list ``<split>.txt``; each instance is an object.

    The standard protocol evaluates every instance (``max_objects=None``, ``min_area=1``).
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "val",
        *,
        seed: int = 0,
        min_area: int = 1,
        max_objects: int | None = None,
        name: str = "sbd",
    ):
        super().__init__(seed, min_area, max_objects)
        self.path = Path(path)
        self.name = name
        list_file = self.path / f"{split}.txt"
        if not list_file.is_file():
            raise ValueError(f"sbd: image list {list_file} not found")
        self._ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]

    @property
    def entry_ids(self) -> list[str]:
        return list(self._ids)

    def samples(self, index: int) -> list[Sample]:
        image_id = self._ids[index]
        image = drop_alpha(read_image(self.path / "img" / f"{image_id}.jpg", lazy=False))
        labels = read_sbd_instances(self.path / "inst" / f"{image_id}.mat")
        return self._objects(image_id, image, labels)


class InstanceFolderDataset(InstanceDataset):
    """``<id>_image.*`` with ``<id>_labels.*`` instance labels (e.g. the DSB 2018 nuclei folder)."""

    def __init__(
        self,
        path: str | Path,
        *,
        ids: Sequence[str] | None = None,
        seed: int = 0,
        min_area: int = 1,
        max_objects: int | None = None,
        name: str | None = None,
    ):
        super().__init__(seed, min_area, max_objects)
        self.path = Path(path)
        self.name = name or self.path.name
        pairs = {
            p[0]: p for p in pairs_from_suffixes(self.path, "_image", "_labels", f"instance folder {path}")
        }
        if not pairs:
            raise ValueError(f"instance folder {path}: no <id>_image.* / <id>_labels.* pairs")
        if ids is None:
            ids = sorted(pairs)
        missing = [i for i in ids if i not in pairs]
        if missing:
            raise ValueError(f"instance folder {path}: unknown ids {missing[:5]}")
        self._pairs = [pairs[i] for i in ids]

    @property
    def entry_ids(self) -> list[str]:
        return [p[0] for p in self._pairs]

    def samples(self, index: int) -> list[Sample]:
        image_id, image_path, labels_path = self._pairs[index]
        image = drop_alpha(read_image(image_path, lazy=False))
        labels = read_image(labels_path, lazy=False)
        if labels.ndim != 2:
            raise ValueError(f"{labels_path}: instance labels must be 2D, got shape {labels.shape}")
        return self._objects(image_id, image, labels)


# ------------------------------------------------------------------------------------------ dispatch
def detect_dataset_type(path: str | Path) -> str:
    """Guess the dataset type of ``path`` from its layout (see the module docstring)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in TIFF_SUFFIXES:
            return "tiff-stack"
        raise ValueError(f"cannot detect a dataset type for file {path}")
    if not path.is_dir():
        raise ValueError(f"dataset path {path} does not exist")
    if (path / "data_GT").is_dir():
        return "grabcut"
    if (path / "images-f-BRS").is_dir() or ((path / "images").is_dir() and (path / "masks").is_dir()):
        return "berkeley"
    if (path / "inst").is_dir() and (path / "img").is_dir():
        return "sbd"
    if (path / "img").is_dir() and (path / "gt").is_dir():
        return "coco_mval" if "coco" in path.name.lower() else "davis"
    names = [p.name for p in path.iterdir() if p.is_file()]
    stems = [Path(n).stem for n in names]
    if any(s.endswith("_gt") for s in stems):
        return "grabcut"
    label_files = [path / n for n in names if Path(n).stem.endswith("_labels")]
    if label_files:
        first = min(label_files)
        if first.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(first) as tif:
                shape = tif.series[0].shape
            if len(shape) == 3:
                return "tiff-stack"
        return "instance-folder"
    raise ValueError(f"cannot detect the dataset type of {path}; pass --dataset-type")


def open_dataset(
    path: str | Path,
    dataset_type: str = "auto",
    *,
    seed: int = 0,
    min_area: int = 1,
    max_objects: int | None = None,
    split: str = "all",
    val_fraction: float = 0.15,
    split_seed: int = 0,
    sbd_split: str = "val",
) -> EvalDataset:
    """Open a dataset by type (``auto`` detects it).

    ``split`` (``all``/``train``/``val``) applies :func:`split_instance_folder` and is only valid for
    instance folders.
    """
    path = Path(path)
    if dataset_type == "auto":
        dataset_type = detect_dataset_type(path)
    dataset_type = dataset_type.replace("_", "-") if dataset_type != "coco_mval" else dataset_type
    if dataset_type == "coco-mval":
        dataset_type = "coco_mval"
    if split not in ("all", "train", "val"):
        raise ValueError(f"split must be all, train or val, got {split!r}")
    if split != "all" and dataset_type != "instance-folder":
        raise ValueError(f"--split {split} applies to instance folders only, not to {dataset_type}")
    builders: dict[str, Callable[[], EvalDataset]] = {
        "grabcut": lambda: GrabCutDataset(path),
        "berkeley": lambda: BerkeleyDataset(path),
        "davis": lambda: DavisDataset(path),
        "coco_mval": lambda: CocoMValDataset(path),
        "sbd": lambda: SBDDataset(path, sbd_split, seed=seed, min_area=min_area, max_objects=max_objects),
        "tiff-stack": lambda: TiffStackDataset(path, seed=seed, min_area=min_area, max_objects=max_objects),
    }
    if dataset_type == "instance-folder":
        ids = None
        name = path.name
        if split != "all":
            train_ids, val_ids = split_instance_folder(path, val_fraction, split_seed)
            ids = val_ids if split == "val" else train_ids
            name = f"{path.name}[{split}]"
        return InstanceFolderDataset(
            path, ids=ids, seed=seed, min_area=min_area, max_objects=max_objects, name=name
        )
    if dataset_type not in builders:
        raise ValueError(
            f"unknown dataset type {dataset_type!r}; choose auto or one of {', '.join(DATASET_TYPES)}"
        )
    return builders[dataset_type]()
