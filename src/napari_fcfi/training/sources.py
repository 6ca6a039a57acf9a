"""The real images of a training run: instance folders split, used whole, or kept for validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_fcfi.evaluation.samples import Sample
from napari_fcfi.evaluation.splits import split_instance_folder
from napari_fcfi.training.data import LabeledImage, load_instance_folder
from napari_fcfi.training.validation import pick_validation_samples


@dataclass
class TrainingSources:
    """Training images, fixed validation objects and a JSON-able description of where they came from."""

    real: list[LabeledImage] = field(default_factory=list)
    val_samples: list[Sample] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)


def load_sources(
    data: Sequence[str | Path] = (),
    train_data: Sequence[str | Path] = (),
    val_data: Sequence[str | Path] = (),
    *,
    val_fraction: float = 0.15,
    val_objects: int = 30,
    say: Callable[[str], None] = lambda text: None,
) -> TrainingSources:
    """Read the folders of a run.

    ``data`` folders are split into training and validation images by
    :func:`~napari_fcfi.evaluation.splits.split_instance_folder` (seed 0, the split ``fcfi eval
    --split val`` reports on), ``train_data`` folders are used whole for training and ``val_data``
    folders only for validation (never trained on). ``val_objects`` fixed objects are picked per
    validation source.
    """
    sources = TrainingSources()
    val_sources: list[tuple[Path, list[LabeledImage]]] = []
    for folder in map(Path, data):
        train_ids, val_ids = split_instance_folder(folder, val_fraction=val_fraction, seed=0)
        sources.real += load_instance_folder(folder, train_ids)
        val_sources.append((folder, load_instance_folder(folder, val_ids)))
        sources.info.append(
            {"folder": str(folder), "train_images": len(train_ids), "val_images": len(val_ids)}
        )
        say(f"data {folder}: {len(train_ids)} train / {len(val_ids)} validation images")
    for folder in map(Path, train_data):
        items = load_instance_folder(folder)
        sources.real += items
        sources.info.append({"folder": str(folder), "train_images": len(items), "val_images": 0})
        say(f"training data {folder}: {len(items)} images")
    for folder in map(Path, val_data):
        items = load_instance_folder(folder)
        val_sources.append((folder, items))
        sources.info.append({"folder": str(folder), "train_images": 0, "val_images": len(items)})
        say(f"validation data {folder}: {len(items)} images")
    for folder, items in val_sources:
        sources.val_samples += pick_validation_samples(
            items, count=val_objects, seed=0, source=f"{folder.name}:"
        )
    return sources
