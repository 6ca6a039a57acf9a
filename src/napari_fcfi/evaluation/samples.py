"""What the robot user evaluates: a :class:`Sample` (one object) and the :class:`EvalDataset` interface.

A dataset is a sequence of *entries* (images, or slices for stacks); ``dataset.samples(i)`` returns
the objects of entry ``i`` and iterating the dataset yields every :class:`Sample`. Instance datasets
choose their objects with :func:`sample_object_labels`: labels with at least ``min_area`` pixels, and
when there are more than ``max_objects``, a subset drawn with a generator seeded from ``seed`` and the
image id (so the choice for one image does not depend on which other images are read).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np


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


def drop_alpha(image: np.ndarray) -> np.ndarray:
    """``image`` without its alpha channel (RGBA -> RGB); other images unchanged."""
    if image.ndim == 3 and image.shape[-1] == 4:
        return image[..., :3]
    return image


def stable_unit_float(*parts: object) -> float:
    """A float in [0, 1) that depends only on ``parts`` (sha256; unlike ``hash`` it is not salted)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stable_seed(*parts: object) -> int:
    """A 64-bit seed that depends only on ``parts`` (sha256, not salted like ``hash``)."""
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
        rng = np.random.default_rng(stable_seed(seed, key))
        chosen = rng.choice(len(eligible), size=max_objects, replace=False)
        eligible = sorted(eligible[i] for i in chosen)
    return eligible


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


class InstanceDataset(EvalDataset):
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
