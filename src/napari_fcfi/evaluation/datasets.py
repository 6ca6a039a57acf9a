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

Instance datasets sample their objects deterministically: labels with at least ``min_area`` pixels,
and when there are more than ``max_objects``, a subset drawn with a generator seeded from ``seed`` and
the image id (so the choice for one image does not depend on which other images are read).

A dataset is a sequence of *entries* (images, or slices for stacks); ``dataset.samples(i)`` returns
the objects of entry ``i`` and iterating the dataset yields every :class:`Sample`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fcfi.engine.io import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
DATASET_TYPES = (
    "grabcut",
    "berkeley",
    "davis",
    "sbd",
    "coco_mval",
    "instance-folder",
    "tiff-stack",
)


@dataclass(frozen=True)
class Sample:
    """One object to segment.

    ``image`` is (H, W) or (H, W, C); ``gt_mask`` is a bool (H, W) mask of the object; ``ignore_mask``
    (bool, (H, W)) marks pixels that neither count in the IoU nor receive robot clicks.
    """

    image: np.ndarray
    gt_mask: np.ndarray
    ignore_mask: np.ndarray | None
    sample_id: str


# ----------------------------------------------------------------------------------------- helpers
def _drop_alpha(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[-1] == 4:
        return image[..., :3]
    return image


def _stable_unit_float(*parts: object) -> float:
    """A float in [0, 1) that depends only on ``parts`` (sha256; unlike ``hash`` it is not salted)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _stable_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def sample_object_labels(
    labels: np.ndarray,
    *,
    key: str,
    seed: int = 0,
    min_area: int = 1,
    max_objects: int | None = None,
) -> list[int]:
    """Deterministically choose which instance labels of ``labels`` to evaluate.

    Labels (non-zero) with at least ``min_area`` pixels are kept; when more than ``max_objects``
    remain, ``max_objects`` of them are drawn without replacement by a generator seeded from
    ``(seed, key)``. Returns the chosen labels in increasing order.
    """
    ids, counts = np.unique(labels[labels != 0], return_counts=True)
    eligible = [int(i) for i, c in zip(ids, counts) if c >= min_area]
    if max_objects is not None and len(eligible) > max_objects:
        rng = np.random.default_rng(_stable_seed(seed, key))
        chosen = rng.choice(len(eligible), size=max_objects, replace=False)
        eligible = sorted(eligible[i] for i in chosen)
    return eligible


def _find_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"{what}: folder {path} does not exist")
    return path


# ------------------------------------------------------------------------------------ base classes
class EvalDataset:
    """A sequence of entries (images or slices), each giving one or more :class:`Sample` objects."""

    name: str = "dataset"

    def __len__(self) -> int:
        return len(self.entry_ids)

    @property
    def entry_ids(self) -> list[str]:
        raise NotImplementedError

    def samples(self, index: int) -> list[Sample]:
        """The objects of entry ``index``."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self)):
            yield from self.samples(index)

    def limit(self, n_entries: int | None) -> EvalDataset:
        """The first ``n_entries`` entries (all when ``None``)."""
        if n_entries is None or n_entries >= len(self):
            return self
        if n_entries < 0:
            raise ValueError(f"limit must be >= 0, got {n_entries}")
        return _EntrySubset(self, list(range(n_entries)))


class _EntrySubset(EvalDataset):
    def __init__(self, parent: EvalDataset, indices: Sequence[int]):
        self.parent = parent
        self.indices = list(indices)
        self.name = parent.name

    @property
    def entry_ids(self) -> list[str]:
        ids = self.parent.entry_ids
        return [ids[i] for i in self.indices]

    def samples(self, index: int) -> list[Sample]:
        return self.parent.samples(self.indices[index])


class SampleList(EvalDataset):
    """Wrap an in-memory list of samples (each sample is its own entry)."""

    def __init__(self, samples: Iterable[Sample], name: str = "samples"):
        self._samples = list(samples)
        for s in self._samples:
            if not isinstance(s, Sample):
                raise TypeError(f"SampleList expects Sample objects, got {type(s).__name__}")
        self.name = name

    @property
    def entry_ids(self) -> list[str]:
        return [s.sample_id for s in self._samples]

    def samples(self, index: int) -> list[Sample]:
        return [self._samples[index]]


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
        image = _drop_alpha(read_image(image_path, lazy=False))
        raw = read_image(mask_path, lazy=False)
        gt, ignore = self.decode_mask(raw)
        if gt.shape != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask shape {gt.shape} differs from image shape {image.shape[:2]}")
        return [Sample(image, gt, ignore, sample_id)]


def _pairs_from_dirs(images_dir: Path, masks_dir: Path, name: str) -> list[tuple[str, Path, Path]]:
    images = _find_by_stem(_require_dir(images_dir, name))
    masks = _find_by_stem(_require_dir(masks_dir, name))
    pairs = []
    for stem, image_path in images.items():
        mask_path = masks.get(stem)
        if mask_path is None:
            raise ValueError(f"{name}: no mask for image {image_path} in {masks_dir}")
        pairs.append((stem, image_path, mask_path))
    return pairs


def _pairs_from_suffixes(
    folder: Path, image_tag: str, mask_tag: str, name: str
) -> list[tuple[str, Path, Path]]:
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for path in sorted(_require_dir(folder, name).iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem.endswith(image_tag):
            images[path.stem[: -len(image_tag)]] = path
        elif path.stem.endswith(mask_tag):
            masks[path.stem[: -len(mask_tag)]] = path
    pairs = []
    for stem, image_path in sorted(images.items()):
        if stem not in masks:
            raise ValueError(f"{name}: no {mask_tag} file for image {image_path}")
        pairs.append((stem, image_path, masks[stem]))
    return pairs


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
            pairs = _pairs_from_dirs(path / "data_GT", path / "boundary_GT", name)
        else:
            pairs = _pairs_from_suffixes(path, "_image", "_gt", name)
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
            pairs = _pairs_from_dirs(path / "images", path / "masks", name)
        elif (path / "images-f-BRS" / "test").is_dir():
            pairs = _pairs_from_dirs(path / "images-f-BRS" / "test", path / "masks-f-BRS" / "test", name)
        else:
            raise ValueError(f"{name}: {path} has neither images/ nor images-f-BRS/test")
        _PairedMaskDataset.__init__(self, pairs, name)


class DavisDataset(_PairedMaskDataset):
    """DAVIS-345 / COCO-MVal layout: ``img/`` + ``gt/``; any non-zero value in any channel is object."""

    def __init__(self, path: str | Path, name: str = "davis"):
        path = Path(path)
        super().__init__(_pairs_from_dirs(path / "img", path / "gt", name), name)

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


class _InstanceDataset(EvalDataset):
    """Entries whose label images hold several instances, sampled deterministically."""

    def __init__(self, seed: int, min_area: int, max_objects: int | None):
        if min_area < 1:
            raise ValueError(f"min_area must be >= 1, got {min_area}")
        if max_objects is not None and max_objects < 1:
            raise ValueError(f"max_objects must be >= 1 or None, got {max_objects}")
        self.seed = seed
        self.min_area = min_area
        self.max_objects = max_objects

    def _objects(self, key: str, image: np.ndarray, labels: np.ndarray) -> list[Sample]:
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{key}: labels shape {labels.shape} differs from image shape {image.shape[:2]}")
        chosen = sample_object_labels(
            labels, key=key, seed=self.seed, min_area=self.min_area, max_objects=self.max_objects
        )
        return [Sample(image, labels == lab, None, f"{key}#{lab}") for lab in chosen]


class SBDDataset(_InstanceDataset):
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
        image = _drop_alpha(read_image(self.path / "img" / f"{image_id}.jpg", lazy=False))
        labels = read_sbd_instances(self.path / "inst" / f"{image_id}.mat")
        return self._objects(image_id, image, labels)


def instance_folder_pairs(path: str | Path) -> list[tuple[str, Path, Path]]:
    """``(id, image path, labels path)`` of an instance folder of ``<id>_image.*`` / ``<id>_labels.*`` files."""
    return _pairs_from_suffixes(Path(path), "_image", "_labels", f"instance folder {path}")


def instance_folder_ids(path: str | Path) -> list[str]:
    """Sorted ids ``<id>`` of an instance folder holding ``<id>_image.*`` and ``<id>_labels.*`` files."""
    return [p[0] for p in instance_folder_pairs(path)]


def split_ids(ids: Iterable[str], val_fraction: float = 0.15, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of image ids (see :func:`split_instance_folder`)."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    unique = sorted(set(ids))
    n_val = round(val_fraction * len(unique))
    if len(unique) >= 2:
        # Never leave a side empty just because of rounding on small folders.
        if val_fraction > 0.0:
            n_val = max(n_val, 1)
        if val_fraction < 1.0:
            n_val = min(n_val, len(unique) - 1)
    ranked = sorted(unique, key=lambda i: (_stable_unit_float("fcfi-split", seed, i), i))
    val = set(ranked[:n_val])
    return [i for i in unique if i not in val], [i for i in unique if i in val]


def split_instance_folder(
    path: str | Path, val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of an instance folder, returned as sorted id lists.

    Each image id gets the key ``sha256("fcfi-split:<seed>:<id>")`` (first 8 bytes as a number);
    ids are ranked by that key and the first ``round(val_fraction * n)`` go to validation (at least one
    and at most ``n - 1`` when the folder has two images or more). The split depends only on the set
    of ids, the fraction and the seed: not on file order, platform, Python's hash salt or time. A
    larger fraction gives a superset of the smaller fraction's validation ids.
    """
    return split_ids(instance_folder_ids(path), val_fraction, seed)


class InstanceFolderDataset(_InstanceDataset):
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
            p[0]: p for p in _pairs_from_suffixes(self.path, "_image", "_labels", f"instance folder {path}")
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
        image = _drop_alpha(read_image(image_path, lazy=False))
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
        "tiff-stack": lambda: _tiff_stack(path, seed=seed, min_area=min_area, max_objects=max_objects),
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


def _tiff_stack(path: Path, **kwargs: object) -> EvalDataset:
    from .tiff_stack import TiffStackDataset  # its own module: it builds on the classes above

    return TiffStackDataset(path, **kwargs)
