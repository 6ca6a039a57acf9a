"""Procedural cell-like images with instance labels.

Nuclei alone teach a network one kind of object: round, bright, textured blobs on a dark
background. The generators below add what other microscopy looks like (touching and
overlapping cells, membrane-bounded compartments as in EM or membrane stains, cells with an
inner nucleus, uneven backgrounds) so that the bundled model still helps on modalities it
was not trained on. Every generator is a pure function of a ``numpy.random.Generator``:
the same seed gives the same image.

Images are returned as raw float32 intensities (arbitrary range, as a microscope would
give); the training pipeline applies its intensity augmentation and the engine's robust
normalisation afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

SyntheticImage = tuple[np.ndarray, np.ndarray]  # (raw float32 (H, W), int32 labels (H, W))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise (texture and background unevenness)."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    std = float(field.std())
    return field / std if std > 0 else field


def _background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth uneven illumination: a tilted plane plus large-scale blotches."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    tilt = rng.normal(0, 0.15, 2) / max(shape)
    plane = tilt[0] * rows + tilt[1] * cols
    return plane + 0.08 * rng.random() * _smooth_noise(rng, shape, sigma=max(shape) / 8)


def _blob_mask(
    rng: np.random.Generator, shape: tuple[int, int], center: np.ndarray, radius: float, elongation: float
) -> np.ndarray:
    """A star-convex blob: an ellipse whose radius is modulated by a few random harmonics."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dy, dx = rows - center[0], cols - center[1]
    theta0 = rng.uniform(0, np.pi)
    cos_t, sin_t = np.cos(theta0), np.sin(theta0)
    u = dx * cos_t + dy * sin_t
    v = (-dx * sin_t + dy * cos_t) * elongation
    rho = np.hypot(u, v)
    angle = np.arctan2(v, u)
    wobble = np.ones_like(angle)
    for harmonic in range(2, 6):
        wobble += rng.normal(0, 0.06 / harmonic * 2) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return rho <= radius * wobble


def nuclei_image(rng: np.random.Generator, shape: tuple[int, int] = (256, 256)) -> SyntheticImage:
    """Bright textured blobs of varied size and brightness, some touching or overlapping."""
    labels = np.zeros(shape, np.int32)
    image = _background(rng, shape)
    mean_radius = rng.uniform(6, 28)
    count = int(rng.integers(4, max(6, int(0.35 * shape[0] * shape[1] / (np.pi * mean_radius**2)))))
    texture = _smooth_noise(rng, shape, sigma=rng.uniform(0.8, 3.0))
    next_label = 1
    for _ in range(count):
        radius = float(np.clip(rng.normal(mean_radius, 0.3 * mean_radius), 4, 60))
        center = rng.uniform([0, 0], shape)
        mask = _blob_mask(rng, shape, center, radius, elongation=rng.uniform(1.0, 1.8))
        if mask.sum() < 12:
            continue
        # Drawn in order: a later blob occludes the earlier one (overlapping nuclei).
        labels[mask] = next_label
        next_label += 1
        brightness = rng.uniform(0.3, 1.0)
        # Interior shading: brighter or darker rim, plus texture (chromatin).
        dist = ndi.distance_transform_edt(mask)
        profile = np.clip(dist / max(dist.max(), 1.0), 0, 1) ** rng.uniform(0.2, 1.0)
        shading = brightness * (rng.uniform(0.6, 1.0) + rng.uniform(-0.3, 0.4) * profile)
        image[mask] = shading[mask] + rng.uniform(0.0, 0.25) * brightness * texture[mask]
    image = ndi.gaussian_filter(image, rng.uniform(0.3, 1.5))
    return image.astype(np.float32), labels


def compartments_image(rng: np.random.Generator, shape: tuple[int, int] = (256, 256)) -> SyntheticImage:
    """Membrane-bounded compartments (EM / membrane stain): a Voronoi tiling with bright walls.

    The labels are the compartment interiors; walls belong to no object, as annotators of
    membrane images usually draw them.
    """
    cell_size = rng.uniform(18, 70)
    count = max(4, int(shape[0] * shape[1] / cell_size**2))
    seeds = rng.uniform([0, 0], shape, size=(count, 2)).astype(np.float32)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    # Warp the coordinates so walls are curved, not straight Voronoi edges.
    warp = rng.uniform(0, 0.25) * cell_size
    rows_w = rows + warp * _smooth_noise(rng, shape, sigma=cell_size / 2)
    cols_w = cols + warp * _smooth_noise(rng, shape, sigma=cell_size / 2)
    dist2 = (rows_w[..., None] - seeds[:, 0]) ** 2 + (cols_w[..., None] - seeds[:, 1]) ** 2
    nearest = np.argmin(dist2, axis=-1)
    walls = np.zeros(shape, bool)
    walls[:-1, :] |= nearest[:-1, :] != nearest[1:, :]
    walls[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
    wall_width = int(rng.integers(1, 4))
    walls = ndi.binary_dilation(walls, iterations=wall_width)
    labels = np.where(walls, 0, nearest + 1).astype(np.int32)

    interior_level = rng.uniform(0.1, 0.5)
    image = np.full(shape, interior_level, np.float32) + _background(rng, shape)
    # Per-compartment intensity and organelle-like texture.
    per_cell = rng.uniform(-0.15, 0.15, count + 1).astype(np.float32)
    image += per_cell[labels] * (labels > 0)
    image += rng.uniform(0.02, 0.15) * _smooth_noise(rng, shape, sigma=rng.uniform(1.0, 4.0))
    image[walls] = rng.uniform(0.7, 1.0)
    if rng.random() < 0.5:  # dark membranes on bright cytoplasm (EM-like)
        image = 1.2 - image
    image = ndi.gaussian_filter(image, rng.uniform(0.5, 1.5))
    return image.astype(np.float32), labels


def cells_image(rng: np.random.Generator, shape: tuple[int, int] = (256, 256)) -> SyntheticImage:
    """Large irregular touching cells with a brighter inner nucleus (cytoplasm stain).

    The whole cell (cytoplasm plus nucleus) is the object, so a model cannot simply
    segment the brightest blob.
    """
    cell_size = rng.uniform(35, 90)
    count = max(3, int(0.6 * shape[0] * shape[1] / cell_size**2))
    seeds = rng.uniform([0, 0], shape, size=(count, 2)).astype(np.float32)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dist2 = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    nearest = np.argmin(dist2, axis=-1)
    nearest_dist = np.sqrt(np.min(dist2, axis=-1))
    # Cells are Voronoi regions cut to a noisy radius, so some touch and some float alone.
    radius_noise = _smooth_noise(rng, shape, sigma=cell_size / 5)
    radii = rng.uniform(0.35, 0.75, count).astype(np.float32) * cell_size
    inside = nearest_dist <= radii[nearest] * (1 + 0.2 * radius_noise)
    labels = np.where(inside, nearest + 1, 0).astype(np.int32)
    labels = _drop_small_pieces(labels, min_size=30)

    image = 0.1 * rng.random() + _background(rng, shape)
    levels = rng.uniform(0.2, 0.6, count + 1).astype(np.float32)
    image = image + levels[labels] * (labels > 0)
    image += (labels > 0) * rng.uniform(0.03, 0.15) * _smooth_noise(rng, shape, sigma=rng.uniform(1, 3))
    nucleus = nearest_dist <= radii[nearest] * rng.uniform(0.25, 0.45)
    image += (nucleus & (labels > 0)) * rng.uniform(0.2, 0.5)
    # A faint boundary line between touching cells, as in many cytoplasm stains.
    edges = ndi.morphological_gradient(labels, size=3) > 0
    image[edges & (labels > 0)] *= rng.uniform(0.6, 1.0)
    image = ndi.gaussian_filter(image, rng.uniform(0.5, 2.0))
    return image.astype(np.float32), labels


def _drop_small_pieces(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Keep the largest connected piece of each label and drop pieces under ``min_size`` px."""
    out = np.zeros_like(labels)
    for label_id in np.unique(labels):
        if label_id == 0:
            continue
        pieces, count = ndi.label(labels == label_id)
        if count == 0:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        biggest = int(np.argmax(sizes)) + 1
        if sizes[biggest - 1] >= min_size:
            out[pieces == biggest] = label_id
    return out


GENERATORS: dict[str, Callable[[np.random.Generator, tuple[int, int]], SyntheticImage]] = {
    "nuclei": nuclei_image,
    "compartments": compartments_image,
    "cells": cells_image,
}


def synthetic_image(rng: np.random.Generator, shape: tuple[int, int] = (256, 256)) -> SyntheticImage:
    """One procedural image of a randomly chosen kind; labels are relabelled 1..n."""
    kind = list(GENERATORS)[int(rng.integers(len(GENERATORS)))]
    image, labels = GENERATORS[kind](rng, shape)
    # Compact ids so that objects can be picked uniformly by id.
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return image, lut[labels]
