"""TIFF stacks with instance label stacks as an evaluation dataset (each slice is an entry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .layouts import TIFF_SUFFIXES, pairs_from_suffixes
from .samples import InstanceDataset, Sample, drop_alpha, sample_object_labels


class TiffStackDataset(InstanceDataset):
    """TIFF image stacks with instance label stacks; each slice is an entry, objects are per slice.

    ``path`` is a folder of ``<name>_image.tif`` + ``<name>_labels.tif`` pairs, or one
    ``<name>_image.tif`` file whose labels are ``<name>_labels.tif`` beside it. Image stacks are
    (Z, Y, X) or (Z, Y, X, C) with C <= 4; labels are (Z, Y, X). Slices without eligible objects are
    skipped.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        seed: int = 0,
        min_area: int = 1,
        max_objects: int | None = None,
        name: str | None = None,
    ):
        import tifffile

        super().__init__(seed, min_area, max_objects)
        path = Path(path)
        self.name = name or path.stem
        if path.is_file():
            stem = path.stem
            if not stem.endswith("_image"):
                raise ValueError(f"tiff stack {path}: expected a file named <name>_image.tif")
            labels = [
                p
                for p in path.parent.glob(stem[: -len("_image")] + "_labels.*")
                if p.suffix.lower() in TIFF_SUFFIXES
            ]
            if not labels:
                raise ValueError(f"tiff stack {path}: no matching <name>_labels.tif")
            pairs = [(stem[: -len("_image")], path, labels[0])]
        else:
            pairs = [
                p
                for p in pairs_from_suffixes(path, "_image", "_labels", f"tiff stacks {path}")
                if p[1].suffix.lower() in TIFF_SUFFIXES
            ]
            if not pairs:
                raise ValueError(f"tiff stacks {path}: no <name>_image.tif / <name>_labels.tif pairs")
        self._stacks: list[tuple[str, Path, Path]] = pairs
        # Entries are (stack index, z); list them from the label stacks (cheap compared to images).
        self._entries: list[tuple[int, int]] = []
        for stack_index, (stack_name, _image_path, labels_path) in enumerate(pairs):
            labels = np.asarray(tifffile.imread(labels_path))
            if labels.ndim == 2:
                labels = labels[None]
            if labels.ndim != 3:
                raise ValueError(f"{labels_path}: label stack must be (Z, Y, X), got shape {labels.shape}")
            for z in range(labels.shape[0]):
                if sample_object_labels(
                    labels[z], key=f"{stack_name}/z{z}", seed=seed, min_area=min_area, max_objects=1
                ):
                    self._entries.append((stack_index, z))

    @property
    def entry_ids(self) -> list[str]:
        return [f"{self._stacks[s][0]}/z{z}" for s, z in self._entries]

    def samples(self, index: int) -> list[Sample]:
        import tifffile

        stack_index, z = self._entries[index]
        stack_name, image_path, labels_path = self._stacks[stack_index]
        # Memory-map when possible so one slice of a big stack is read, not the whole file.
        try:
            images = tifffile.memmap(image_path, mode="r")
            labels_stack = tifffile.memmap(labels_path, mode="r")
        except (ValueError, OSError):
            images = tifffile.imread(image_path)
            labels_stack = tifffile.imread(labels_path)
        if labels_stack.ndim == 2:
            labels_stack = labels_stack[None]
            images = images[None]
        if images.shape[0] != labels_stack.shape[0]:
            raise ValueError(
                f"{image_path}: image stack has {images.shape[0]} slices, labels have {labels_stack.shape[0]}"
            )
        image = drop_alpha(np.array(images[z]))
        labels = np.array(labels_stack[z])
        return self._objects(f"{stack_name}/z{z}", image, labels)
