"""Deterministic train/validation splits of image ids (and of instance folders)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .layouts import instance_folder_ids
from .samples import stable_unit_float


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
    ranked = sorted(unique, key=lambda i: (stable_unit_float("fcfi-split", seed, i), i))
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
