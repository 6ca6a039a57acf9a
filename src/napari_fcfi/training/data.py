"""Training data: instance-label folders, procedural images, object-centred crops.

A training sample is one object of one image, cropped at a scale the engine will show the
network, after microscopy augmentation and the engine's normalisation:

* the engine's first click runs in a window of ``input_size`` native pixels centred on the
  click (small objects are a small fraction of the window), later clicks in a zoom-in
  window around the object (the object fills about half the window). So the crop side is
  drawn such that the object's bounding-box side is a log-uniform fraction (default
  0.06..0.7) of it, then the crop is resized to the network's training size.
* neighbouring objects stay in the crop: for the network they are background.

Sampling is a pure function of ``(seed, step, index in batch)``
(:meth:`TrainingSampler.sample`), so a run is reproducible and a resumed run draws exactly
the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.io import read_image
from napari_fcfi.engine.windows import subsample_step
from napari_fcfi.evaluation.layouts import instance_folder_pairs
from napari_fcfi.training.augment import IntensityAugmentation, flip_rotate, normalise_like_engine
from napari_fcfi.training.clicks import sample_initial_clicks
from napari_fcfi.training.synthetic import synthetic_image

# Pixels of the strided subsample the percentile range is taken from (the engine uses up to 1 M; the
# range of 64 k pixels differs from it by well under one percent of the range).
PERCENTILE_SAMPLE_PIXELS = 65_536


@dataclass
class LabeledImage:
    """One raw image with its instance labels and the objects worth training on."""

    image: np.ndarray  # raw (H, W) or (H, W, 3), any dtype
    labels: np.ndarray  # int32 (H, W), 0 = background
    object_ids: np.ndarray  # ids of objects with at least ``min_area`` pixels
    boxes: list[tuple[int, int, int, int]]  # (r0, c0, r1, c1) per object id, same order
    name: str = ""
    group: str = ""  # the data source (e.g. the folder's name), for balanced sampling


def make_labeled_image(
    image: np.ndarray, labels: np.ndarray, name: str = "", min_area: int = 12
) -> LabeledImage:
    """Index the objects of ``labels`` (those with at least ``min_area`` pixels)."""
    labels = np.asarray(labels).astype(np.int32)
    if labels.shape != np.asarray(image).shape[:2]:
        raise ValueError(
            f"{name}: image shape {np.asarray(image).shape} does not match labels {labels.shape}"
        )
    areas = np.bincount(labels.ravel())
    slices = ndi.find_objects(labels)
    ids, boxes = [], []
    for label_id, sl in enumerate(slices, start=1):
        if sl is None or areas[label_id] < min_area:
            continue
        ids.append(label_id)
        boxes.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
    return LabeledImage(np.asarray(image), labels, np.array(ids, np.int32), boxes, name)


def source_group(folder: str | Path) -> str:
    """The data source name of ``folder``'s images: the folder's name, with its parent's when the
    folder is a split such as ``train``/``val`` (``mnfinder_nuclei/train``)."""
    folder = Path(folder)
    return f"{folder.parent.name}/{folder.name}" if folder.name in ("train", "val", "test") else folder.name


def load_instance_folder(folder: str | Path, ids: Sequence[str] | None = None) -> list[LabeledImage]:
    """Read the image/labels pairs of ``folder`` (all, or those in ``ids``) into memory.

    Each image's ``group`` is the data source, :func:`source_group`.
    """
    folder = Path(folder)
    group = source_group(folder)
    pairs = {sample_id: (image, labels) for sample_id, image, labels in instance_folder_pairs(folder)}
    if not pairs:
        raise ValueError(f"no '<id>_image.*' + '<id>_labels.*' pairs in {folder}")
    wanted = sorted(pairs) if ids is None else list(ids)
    images = []
    for sample_id in wanted:
        if sample_id not in pairs:
            raise ValueError(f"missing image or labels for id {sample_id!r} in {folder}")
        image_path, labels_path = pairs[sample_id]
        image = np.asarray(read_image(image_path, lazy=False))
        if image.ndim == 3:
            image = image[..., :3]
        item = make_labeled_image(image, np.asarray(read_image(labels_path, lazy=False)), name=sample_id)
        item.group = group
        if len(item.object_ids):
            images.append(item)
    return images


def make_synthetic_pool(count: int, seed: int, shape: tuple[int, int] = (256, 256)) -> list[LabeledImage]:
    """``count`` procedural images, each from its own seeded generator."""
    pool = []
    for index in range(count):
        image, labels = synthetic_image(np.random.default_rng([seed, 7919, index]), shape)
        item = make_labeled_image(image, labels, name=f"synthetic-{index}")
        if len(item.object_ids):
            pool.append(item)
    return pool


@dataclass
class Sample:
    """One training sample at the network's input size."""

    image: np.ndarray  # float32 (3, S, S) in [0, 1]
    mask: np.ndarray  # float32 (1, S, S), 1 on the object
    clicks: list[Click]
    source: str  # "real:<image name>" or "synthetic:<image name>"


def _resize(array: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resize (C, H, W) float32 to (C, size, size); bilinear with antialiasing when shrinking."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))[None]
    if mode == "bilinear":
        shrinking = tensor.shape[-1] > size or tensor.shape[-2] > size
        out = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
        )
    else:
        out = F.interpolate(tensor, size=(size, size), mode=mode)
    return out[0].numpy()


def crop_window(
    array: np.ndarray, top: int, left: int, height: int, width: int, fill: float = 0.0
) -> np.ndarray:
    """The window ``[top, top+height) x [left, left+width)`` of ``array`` (H, W, ...), padded with ``fill``."""
    out = np.full((height, width) + array.shape[2:], fill, dtype=array.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, array.shape[0]), min(left + width, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def _clamp_start(start: int, window: int, extent: int) -> int:
    """Window start shifted so the window lies inside ``[0, extent)``; centred if it cannot."""
    if window >= extent:
        return -((window - extent) // 2)
    return min(max(start, 0), extent - window)


MODALITIES = ("colour", "dark background", "light background")


def image_modality(item: LabeledImage) -> str:
    """Rough imaging modality of a real image, for balanced sampling.

    "colour": RGB whose channels really differ (stained tissue); otherwise "light background"
    when the objects are darker than the background (brightfield), else "dark background"
    (fluorescence).
    """
    image = np.asarray(item.image, np.float32)
    if image.ndim == 3 and image.shape[-1] >= 3:
        rgb = image[..., :3]
        spread = float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean())
        if spread > 0.02 * max(float(rgb.max() - rgb.min()), 1e-6):
            return "colour"
        image = rgb.mean(-1)
    inside = item.labels > 0
    if not inside.any() or inside.all():
        return "dark background"
    return "light background" if image[inside].mean() < image[~inside].mean() else "dark background"


class TrainingSampler:
    """Draws training samples from real and procedural images; deterministic per (seed, step, index).

    With ``balance_modalities`` a real image is drawn by first drawing one of the groups present, a
    group being a data source and a modality (:func:`image_modality`), with probability proportional
    to the square root of its image count, then an image of it. On the DSB training split (418
    fluorescence, 77 stained tissue, 12 brightfield images) that moves the shares from 82/15/2 % to
    62/27/11 %: the rare modalities are seen far more often without drawing the dozen brightfield
    images a third of the time; a second source of 30 large images (mnfinder) gets about 14 %.
    ``source_weights`` multiplies the weight of a source's groups (``{"mnfinder_nuclei/train": 2.0}``).
    """

    def __init__(
        self,
        real: Sequence[LabeledImage],
        synthetic: Sequence[LabeledImage] = (),
        synthetic_fraction: float = 0.25,
        crop_size: int = 256,
        object_fraction: tuple[float, float] = (0.06, 0.7),
        seed: int = 0,
        augment: bool = True,
        input_size: int | None = None,
        balance_modalities: bool = False,
        small_object_weight: float = 1.0,
        small_object_area: int = 150,
        source_weights: Mapping[str, float] | None = None,
    ) -> None:
        if not real and not synthetic:
            raise ValueError("TrainingSampler needs at least one real or synthetic image")
        if not 0.0 <= synthetic_fraction <= 1.0:
            raise ValueError(f"synthetic_fraction must be in [0, 1], got {synthetic_fraction}")
        if not 0 < object_fraction[0] <= object_fraction[1] <= 1:
            raise ValueError(f"object_fraction must satisfy 0 < low <= high <= 1, got {object_fraction}")
        self.real = list(real)
        self.synthetic = list(synthetic)
        self.synthetic_fraction = synthetic_fraction if self.real and self.synthetic else float(not self.real)
        self.crop_size = int(crop_size)
        self.object_fraction = object_fraction
        self.seed = int(seed)
        self.augment = augment
        # The engine shows the network windows of ``input_size`` pixels. With a
        # smaller ``crop_size`` (faster training), a crop is a ``crop_size`` part of such a view,
        # so objects keep the pixel size they will have at inference; only context is lost.
        self.input_size = int(input_size or crop_size)
        if self.input_size < self.crop_size:
            raise ValueError(f"input_size ({self.input_size}) must be >= crop_size ({self.crop_size})")
        self.balance_modalities = bool(balance_modalities)
        groups: dict[tuple[str, str], list[int]] = {}
        if self.balance_modalities:
            for index, item in enumerate(self.real):
                groups.setdefault((item.group, image_modality(item)), []).append(index)
        self.group_names = sorted(groups, key=lambda key: (key[0], MODALITIES.index(key[1])))
        self.modality_groups = [groups[key] for key in self.group_names]
        source_weights = dict(source_weights or {})
        if any(not weight > 0 for weight in source_weights.values()):
            raise ValueError(f"source weights must be > 0, got {source_weights}")
        weights = np.sqrt([len(group) for group in self.modality_groups]) * np.array(
            [source_weights.get(source, 1.0) for source, _ in self.group_names]
        )
        self.modality_weights = weights / weights.sum() if len(weights) else weights
        # Objects under ``small_object_area`` pixels (the ones that cost the most clicks) are drawn
        # ``small_object_weight`` times as often as the others of their image.
        if small_object_weight <= 0:
            raise ValueError(f"small_object_weight must be > 0, got {small_object_weight}")
        self.small_object_weight = float(small_object_weight)
        self.small_object_area = int(small_object_area)
        self._object_draw: dict[int, np.ndarray] = {}

    def _object_probabilities(self, item: LabeledImage) -> np.ndarray:
        """Draw probabilities of ``item``'s objects (cached per image)."""
        key = id(item)
        if key not in self._object_draw:
            areas = np.bincount(item.labels.ravel(), minlength=int(item.labels.max()) + 1)[item.object_ids]
            weights = np.where(areas < self.small_object_area, self.small_object_weight, 1.0)
            self._object_draw[key] = weights / weights.sum()
        return self._object_draw[key]

    def rng_for(self, step: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(step), int(index)])

    def sample(self, step: int, index: int) -> Sample:
        """The ``index``-th sample of the batch of optimizer step ``step``."""
        rng = self.rng_for(step, index)
        use_synthetic = rng.random() < self.synthetic_fraction
        pool = self.synthetic if use_synthetic else self.real
        if not use_synthetic and self.modality_groups:
            group = self.modality_groups[int(rng.choice(len(self.modality_groups), p=self.modality_weights))]
            item = pool[group[int(rng.integers(len(group)))]]
        else:
            item = pool[int(rng.integers(len(pool)))]
        if self.small_object_weight == 1.0:
            which = int(rng.integers(len(item.object_ids)))
        else:
            which = int(rng.choice(len(item.object_ids), p=self._object_probabilities(item)))
        return self.sample_object(
            item, which, rng, source=f"{'synthetic' if use_synthetic else 'real'}:{item.name}"
        )

    def sample_object(
        self, item: LabeledImage, which: int, rng: np.random.Generator, source: str = ""
    ) -> Sample:
        """A crop around object number ``which`` of ``item`` with augmentation and initial clicks."""
        object_id = int(item.object_ids[which])
        r0, c0, r1, c1 = item.boxes[which]
        image = np.asarray(item.image)
        step = subsample_step(image.shape[0], image.shape[1], PERCENTILE_SAMPLE_PIXELS)
        subsample = image[::step, ::step]
        augmentation = (
            IntensityAugmentation.draw(subsample, rng)
            if self.augment
            else IntensityAugmentation.identity(subsample)
        )

        side = max(r1 - r0, c1 - c0)
        lo, hi = self.object_fraction
        fraction = math.exp(rng.uniform(math.log(lo), math.log(hi))) if self.augment else math.sqrt(lo * hi)
        # ``fraction`` is relative to the engine's view; the object fills at most 90% of the crop.
        view_to_crop = self.crop_size / self.input_size
        fraction = min(fraction, 0.9 * view_to_crop)
        window = max(side / fraction * view_to_crop, 16.0)
        aspect = math.exp(rng.normal(0.0, 0.08)) if self.augment else 1.0  # mild anisotropic scale jitter
        win_h, win_w = max(8, int(round(window * aspect))), max(8, int(round(window / aspect)))
        # The object centre moves within the window but the object stays (mostly) inside.
        center_r = (r0 + r1) / 2 + rng.uniform(-0.5, 0.5) * max(win_h - (r1 - r0), 0) * 0.8
        center_c = (c0 + c1) / 2 + rng.uniform(-0.5, 0.5) * max(win_w - (c1 - c0), 0) * 0.8
        # A window larger than the image is capped to the image (the engine never looks
        # beyond it); a window that fits is shifted inside the image, as the engine clamps it.
        height, width = item.labels.shape
        win_h, win_w = min(win_h, max(height, width)), min(win_w, max(height, width))
        top = _clamp_start(int(round(center_r - win_h / 2)), win_h, height)
        left = _clamp_start(int(round(center_c - win_w / 2)), win_w, width)

        # Augment the part of the image inside the window only; the engine's percentile range comes
        # from the augmented subsample of the whole image, as the engine takes it once per image.
        inside = (slice(max(top, 0), min(top + win_h, height)), slice(max(left, 0), min(left + win_w, width)))
        crop = augmentation.apply(image[inside], rng)
        reference = augmentation.apply(subsample, rng, blur=False)
        image_crop = np.zeros((win_h, win_w, 3), np.float32)
        image_crop[
            inside[0].start - top : inside[0].stop - top, inside[1].start - left : inside[1].stop - left
        ] = normalise_like_engine(crop, reference)
        mask_crop = crop_window((item.labels == object_id).astype(np.float32), top, left, win_h, win_w)
        image_out = _resize(image_crop.transpose(2, 0, 1), self.crop_size, "bilinear")
        mask_out = _resize(mask_crop[None], self.crop_size, "bilinear") >= 0.5
        if not mask_out.any():  # a sliver object vanished when shrinking: keep its centre pixel
            rr = int(np.clip((center_r - top) / win_h * self.crop_size, 0, self.crop_size - 1))
            cc = int(np.clip((center_c - left) / win_w * self.crop_size, 0, self.crop_size - 1))
            mask_out[0, rr, cc] = True
        if self.augment:
            image_hwc, mask_hwc = flip_rotate(image_out.transpose(1, 2, 0), mask_out.transpose(1, 2, 0), rng)
            image_out, mask_out = image_hwc.transpose(2, 0, 1), mask_hwc.transpose(2, 0, 1)
        clicks = sample_initial_clicks(mask_out[0], rng)
        return Sample(
            image=np.ascontiguousarray(image_out, dtype=np.float32),
            mask=np.ascontiguousarray(mask_out, dtype=np.float32),
            clicks=clicks,
            source=source or item.name,
        )

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[list[Click]]]:
        """Images (B, 3, S, S), masks (B, 1, S, S) and initial clicks for optimizer step ``step``."""
        samples = [self.sample(step, i) for i in range(batch_size)]
        images = torch.from_numpy(np.stack([s.image for s in samples]))
        masks = torch.from_numpy(np.stack([s.mask for s in samples]))
        return images, masks, [s.clicks for s in samples]
