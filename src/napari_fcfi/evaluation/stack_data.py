"""Test stacks for the stack robot (:mod:`.stacks`): an image and its instance labels, both (Z, H, W).

Every stack is a pure function of its seed (and, for real images, of the source files), so the same
command measures the same stacks. Sets (:data:`STACK_SETS`, ``fcfi eval --stacks NAME``):

* ``sample``: the package's 3D sample (``nuclei_stack_3d.tif`` with ``nuclei_stack_3d_labels.tif``).
* ``procedural``: 3D nuclei (textured star-convex ellipsoids, half of them placed against a
  neighbour, drifting, turning and changing shape from slice to slice) and 3D cells (a moving
  weighted Voronoi tiling cut to each cell's changing radius: touching neighbours with shared
  edges, an inner nucleus, darker boundaries), with uneven background, blur and noise. Stacks
  alternate nuclei / cells.
* ``dsb-deformed``: DSB 2018 images of the **validation split only**
  (:func:`~.datasets.split_instance_folder`), each turned into a short stack by :func:`deformed_stack`.
* ``mnfinder-deformed``: the mnfinder **val** images (never ``train/``), several crops per image.
* ``membrane``: membrane-bounded cells as in serial-section EM (:func:`membrane_cells_stack`): a 3D
  Voronoi tiling of the volume seen through a drifting, elastically warped slice plane, dark
  membranes between bright textured cells with dark organelles; cells appear and end inside the
  stack wherever their 3D cell begins and ends, and the labels are the cell interiors (membranes
  belong to no cell, as annotators draw them).

:func:`deformed_stack` moves a 2D image through z with one smooth transform per slice (translation
with a little acceleration, rotation, scaling and an elastic field growing with the distance from the
middle slice), applied to image and labels through the same coordinates (labels by nearest
neighbour), so they stay aligned; about half of the objects also *end* inside the stack (their
cross-section shrinks towards their interior and fades into the inpainted background, like a nucleus
cut by the focal plane), and every slice gets its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine.distance import border_distance
from napari_fcfi.engine.io import read_image
from napari_fcfi.evaluation.layouts import instance_folder_ids
from napari_fcfi.evaluation.samples import stable_seed
from napari_fcfi.evaluation.splits import split_instance_folder

STACK_SETS = ("procedural", "sample", "dsb-deformed", "mnfinder-deformed", "membrane")
DEFAULT_DSB = Path("../shared/data/dsb2018_train")
DEFAULT_MNFINDER = Path("../shared/data/mnfinder_nuclei")


@dataclass(frozen=True)
class Stack:
    """One test stack: ``image`` (Z, H, W) or (Z, H, W, C) and int32 instance ``labels`` (Z, H, W)."""

    name: str
    image: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.labels.ndim != 3 or self.image.shape[:3] != self.labels.shape:
            raise ValueError(
                f"stack {self.name}: image {self.image.shape} and labels {self.labels.shape} differ"
            )


# ------------------------------------------------------------------------------------------ helpers
def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma) -> np.ndarray:
    """Gaussian-filtered noise with zero mean and unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    std = float(field.std())
    return field / std if std > 0 else field


def _finish(rng: np.random.Generator, signal: np.ndarray, noise: float) -> np.ndarray:
    """Blur (a little more across slices), add per-voxel noise, scale to a 16-bit-like range."""
    blurred = ndi.gaussian_filter(signal, (rng.uniform(0.5, 0.9), *[rng.uniform(0.6, 1.2)] * 2))
    noisy = blurred + noise * rng.standard_normal(blurred.shape).astype(np.float32)
    return (200.0 + 2000.0 * noisy).astype(np.float32)


# --------------------------------------------------------------------------------------- procedural
def procedural_nuclei_stack(
    rng: np.random.Generator, depth: int = 15, shape=(128, 128), name: str = "nuclei"
) -> Stack:
    """Textured 3D nuclei: star-convex ellipsoids that drift, turn and change shape through z."""
    z_count, (height, width) = depth, shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    labels = np.zeros((z_count, height, width), np.int32)
    shading = np.zeros((z_count, height, width), np.float32)
    mean_radius = rng.uniform(10, 16)
    count = max(3, int(0.3 * height * width / (np.pi * mean_radius**2)))
    placed: list[tuple[np.ndarray, float]] = []
    for label in range(1, count + 1):
        radius = float(np.clip(rng.normal(mean_radius, 0.2 * mean_radius), 6, 30))
        if placed and rng.random() < 0.5:  # against an earlier nucleus: touching neighbours
            other, other_radius = placed[int(rng.integers(len(placed)))]
            angle = rng.uniform(0, 2 * np.pi)
            gap = (other_radius + radius) * rng.uniform(0.8, 0.95)
            centre = other + gap * np.array([np.sin(angle), np.cos(angle)])
        else:
            centre = rng.uniform([0, 0], [height, width])
        placed.append((centre, radius))
        z_mid, half = rng.uniform(0, z_count - 1), rng.uniform(3.0, 7.5)
        velocity, accel = rng.normal(0, 0.8, 2), rng.normal(0, 0.08, 2)
        elongation, theta0, spin = rng.uniform(1.0, 1.6), rng.uniform(0, np.pi), rng.normal(0, 0.05)
        harmonics = [
            (h, rng.normal(0, 0.24 / h), rng.uniform(0, 2 * np.pi), rng.normal(0, 0.15)) for h in range(2, 6)
        ]
        brightness, rim = rng.uniform(0.45, 1.0), rng.uniform(-0.3, 0.4)
        for z in range(z_count):
            dz = z - z_mid
            if abs(dz) >= half:
                continue
            scale = np.sqrt(1 - (dz / half) ** 2)
            cy, cx = centre + velocity * dz + accel * dz * abs(dz)
            theta = theta0 + spin * dz
            u = (cols - cx) * np.cos(theta) + (rows - cy) * np.sin(theta)
            v = (-(cols - cx) * np.sin(theta) + (rows - cy) * np.cos(theta)) * elongation
            angle = np.arctan2(v, u)
            wobble = 1 + sum(a * np.cos(h * angle + p + dp * dz) for h, a, p, dp in harmonics)
            depth_ratio = np.hypot(u, v) / (radius * scale * wobble)
            inside = depth_ratio <= 1
            labels[z][inside] = label  # a later nucleus covers an earlier one where they overlap
            shading[z][inside] = brightness * (0.8 + rim * (1 - depth_ratio[inside]))
    background = 0.07 * _smooth_field(rng, (1, height, width), (0, 30, 30)) + 0.05 * rng.random()
    texture = _smooth_field(rng, labels.shape, (1.5, 2.0, 2.0)) * rng.uniform(0.05, 0.15)
    signal = background + shading + texture * (labels > 0)
    return Stack(name, _finish(rng, signal.astype(np.float32), rng.uniform(0.02, 0.06)), labels)


def procedural_cells_stack(
    rng: np.random.Generator, depth: int = 15, shape=(128, 128), name: str = "cells"
) -> Stack:
    """Touching 3D cells: a moving Voronoi tiling cut to each cell's radius, with an inner nucleus."""
    z_count, (height, width) = depth, shape
    cell_size = rng.uniform(32, 46)
    count = max(4, int(0.8 * height * width / cell_size**2))
    seeds = rng.uniform([0, 0], [height, width], size=(count, 2)).astype(np.float32)
    velocity = rng.normal(0, 0.7, (count, 2)).astype(np.float32)
    z_mid = rng.uniform(-2, z_count + 1, count)
    half = rng.uniform(4.0, 9.0, count)
    radii = rng.uniform(0.5, 0.75, count) * cell_size
    levels = np.concatenate([[0.0], rng.uniform(0.25, 0.6, count)]).astype(np.float32)
    wobble = 0.18 * _smooth_field(rng, (z_count, height, width), (2.0, cell_size / 5, cell_size / 5))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    labels = np.zeros((z_count, height, width), np.int32)
    nucleus = np.zeros((z_count, height, width), bool)
    for z in range(z_count):
        dz = z - z_mid
        active = np.flatnonzero(np.abs(dz) < half)
        if active.size == 0:
            continue
        centres = seeds[active] + velocity[active] * dz[active, None]
        dist = np.sqrt((rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2)
        nearest = np.argmin(dist, axis=-1)
        near = np.take_along_axis(dist, nearest[..., None], -1)[..., 0]
        # Flat-topped cells: the cross-section stays large and shrinks quickly near the ends.
        cut = radii[active] * np.sqrt(np.clip(1 - (dz[active] / half[active]) ** 4, 0, 1))
        inside = near <= cut[nearest] * (1 + wobble[z])
        labels[z] = np.where(inside, active[nearest] + 1, 0)
        nucleus[z] = inside & (near <= 0.4 * cut[nearest])
    background = 0.07 * _smooth_field(rng, (1, height, width), (0, 30, 30))
    signal = background + levels[labels] + rng.uniform(0.15, 0.35) * nucleus
    signal = signal + (labels > 0) * rng.uniform(0.03, 0.1) * _smooth_field(rng, labels.shape, (1, 2, 2))
    edges = np.stack([ndi.morphological_gradient(s, size=3) > 0 for s in labels]) & (labels > 0)
    signal[edges] *= rng.uniform(0.55, 0.85)
    return Stack(name, _finish(rng, signal.astype(np.float32), rng.uniform(0.02, 0.05)), labels)


def procedural_stacks(count: int = 2, depth: int = 15, size: int = 128, seed: int = 0) -> list[Stack]:
    """``count`` procedural stacks alternating nuclei (even index) and cells (odd index)."""
    stacks = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        make = procedural_nuclei_stack if index % 2 == 0 else procedural_cells_stack
        kind = "nuclei" if index % 2 == 0 else "cells"
        stacks.append(make(rng, depth, (size, size), name=f"procedural-{kind}-{index}"))
    return stacks


def membrane_cells_stack(
    rng: np.random.Generator, depth: int = 15, shape=(192, 192), name: str = "membrane"
) -> Stack:
    """Serial-section EM-like cells: a 3D Voronoi tiling cut by a drifting, warped slice plane.

    Seeds fill a volume reaching past the stack on every side (so cells enter and leave through the
    stack's top, bottom and borders); the z distance is stretched so a cell spans about 5-10 slices.
    Each slice's plane drifts (about 1 px per slice) and bends (a smooth elastic field changing
    slowly through z). Cells are 1-3 px membranes apart; membranes are dark on bright, slightly
    varying cytoplasm with dark organelle blobs (smooth 3D noise), under uneven illumination, blur
    and noise, so only the membranes tell neighbouring cells apart.
    """
    z_count, (height, width) = depth, shape
    cell_size = rng.uniform(40, 56)
    z_extent = rng.uniform(5.0, 10.0)
    z_stretch = cell_size / z_extent
    pad = cell_size
    volume = (height + 2 * pad) * (width + 2 * pad) * (z_count + z_extent)
    count = max(8, int(volume / (cell_size**2 * z_extent)))
    seeds = rng.uniform(
        [-z_extent / 2, -pad, -pad], [z_count + z_extent / 2, height + pad, width + pad], size=(count, 3)
    ).astype(np.float32)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    drift = np.cumsum(rng.normal(0, 0.7, (z_count, 2)), axis=0).astype(np.float32)
    bend = _smooth_field(rng, (2, z_count, height, width), (0, 3.0, cell_size / 2, cell_size / 2))
    bend *= rng.uniform(0.1, 0.2) * cell_size
    wall_width = int(rng.integers(1, 3))
    labels = np.zeros((z_count, height, width), np.int32)
    walls = np.zeros((z_count, height, width), bool)
    for z in range(z_count):
        r = rows + drift[z, 0] + bend[0, z]
        c = cols + drift[z, 1] + bend[1, z]
        near = np.flatnonzero(np.abs(seeds[:, 0] - z) * z_stretch < 2.5 * cell_size)
        dist2 = (
            (r[..., None] - seeds[near, 1]) ** 2
            + (c[..., None] - seeds[near, 2]) ** 2
            + ((z - seeds[near, 0]) * z_stretch) ** 2
        )
        nearest = near[np.argmin(dist2, axis=-1)] + 1
        edge = np.zeros((height, width), bool)
        edge[:-1] |= nearest[:-1] != nearest[1:]
        edge[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
        walls[z] = ndi.binary_dilation(edge, iterations=wall_width)
        labels[z] = np.where(walls[z], 0, nearest)
    cytoplasm = rng.uniform(0.55, 0.75) + rng.uniform(0.02, 0.08) * rng.standard_normal(count + 1)
    signal = np.where(labels > 0, cytoplasm[labels], 0.0).astype(np.float32)
    signal += 0.06 * _smooth_field(rng, labels.shape, (1.0, 2.0, 2.0))
    organelles = _smooth_field(rng, labels.shape, (1.0, 3.0, 3.0)) > rng.uniform(1.6, 2.2)
    signal[organelles & (labels > 0)] -= rng.uniform(0.15, 0.3)
    signal[walls] = rng.uniform(0.05, 0.2)
    signal += 0.08 * _smooth_field(rng, (1, height, width), (0, 40, 40))
    return Stack(name, _finish(rng, signal, rng.uniform(0.03, 0.06)), labels)


def membrane_stacks(count: int = 3, depth: int = 15, size: int = 192, seed: int = 0) -> list[Stack]:
    """``count`` membrane-bounded cell stacks (:func:`membrane_cells_stack`), seeded apart from the others."""
    return [
        membrane_cells_stack(
            np.random.default_rng([seed, 5151, index]), depth, (size, size), name=f"membrane-{index}"
        )
        for index in range(count)
    ]


def sample_stack() -> Stack:
    """The package's 3D sample nuclei stack (16 x 128 x 128) with its labels."""
    from napari_fcfi.sample_data import load_sample  # napari-free: importlib.resources + tifffile

    image = np.asarray(load_sample("nuclei_stack_3d"))
    labels = np.asarray(load_sample("nuclei_stack_3d_labels")).astype(np.int32)
    return Stack("nuclei_stack_3d", image, labels)


# ----------------------------------------------------------------------------------------- deformed
def _warp(array: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    return ndi.map_coordinates(array, coords, order=order, mode="nearest")


def _inpainted_background(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``image`` with every labelled pixel replaced by the nearest unlabelled one, smoothed."""
    objects = ndi.binary_dilation(labels > 0, iterations=2)
    if objects.all():
        return np.full_like(image, float(np.median(image)))
    _, (ri, ci) = ndi.distance_transform_edt(objects, return_indices=True)
    filled = image[ri, ci]
    return ndi.gaussian_filter(filled, (3, 3, 0)[: image.ndim])


def deformed_stack(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    depth: int = 11,
    *,
    crop: int = 192,
    margin: int = 24,
    name: str = "deformed",
    ending_fraction: float = 0.5,
    noise: float = 0.03,
) -> Stack:
    """A ``depth``-slice stack from one 2D image (H, W) or (H, W, C) and its labels (H, W).

    Slice ``t`` (``t = 0`` the middle) samples the source at ``A(t)(p - c) + c + shift(t) + E(t)(p)``
    inside a ``crop``-pixel window (at most the image minus ``margin`` on each side, so the samples
    stay inside the source): ``A`` a rotation (about 1 degree per slice) and scaling (about 1 % per
    slice), ``shift`` a drift of about 1 px per slice with a little acceleration, ``E`` a smooth
    elastic field growing with ``|t|``. A fraction ``ending_fraction`` of the objects ends inside the
    stack (cross-section shrinking to the object's interior, fading into the inpainted background).
    ``noise`` is the per-slice Gaussian noise in units of the image's 1-99 percentile range.
    """
    labels = np.asarray(labels)
    source = np.asarray(image, np.float32)
    height, width = labels.shape
    if source.shape[:2] != labels.shape:
        raise ValueError(f"{name}: image {source.shape} and labels {labels.shape} differ")
    size_r, size_c = min(crop, height - 2 * margin), min(crop, width - 2 * margin)
    if min(size_r, size_c) < 32:
        margin, size_r, size_c = 0, min(crop, height), min(crop, width)
    # Window around a random labelled pixel (a window with objects in it), clipped inside the margins.
    ys, xs = np.nonzero(labels)
    pick = int(rng.integers(len(ys))) if len(ys) else 0
    anchor = (ys[pick], xs[pick]) if len(ys) else (height // 2, width // 2)
    r0 = int(np.clip(anchor[0] - size_r // 2, margin, height - margin - size_r))
    c0 = int(np.clip(anchor[1] - size_c // 2, margin, width - margin - size_c))
    centre = np.array([r0 + size_r / 2, c0 + size_c / 2])
    rows, cols = np.mgrid[0:size_r, 0:size_c].astype(np.float32)
    rows, cols = rows + r0, cols + c0

    velocity, accel = rng.normal(0, 1.0, 2), rng.normal(0, 0.1, 2)
    spin, growth = np.deg2rad(rng.normal(0, 1.0)), rng.normal(0, 0.01)
    elastic = [_smooth_field(rng, (2, size_r, size_c), (0, 16, 16)) for _ in range(2)]
    elastic_amp, elastic_freq = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4)

    background = _inpainted_background(source, labels)
    ids = np.unique(labels[labels > 0])
    # Normalised depth inside each object (1 at its most interior pixel), for the shrinking ends.
    interior = np.zeros(labels.shape, np.float32)
    for lab, box in zip(range(1, int(labels.max()) + 1), ndi.find_objects(labels)):
        if box is not None:
            local = border_distance(labels[box] == lab)
            interior[box] = np.where(labels[box] == lab, local / max(local.max(), 1.0), interior[box])
    half_extent = np.full(int(labels.max()) + 1, np.inf)
    ending = ids[rng.random(len(ids)) < ending_fraction]
    half_extent[ending] = rng.uniform(2.5, max(3.0, depth / 2 + 1), len(ending))
    low, high = np.percentile(source, (1, 99))
    sigma = noise * max(float(high - low), 1e-6)

    channels = [source] if source.ndim == 2 else [source[..., c] for c in range(source.shape[-1])]
    backgrounds = [background] if source.ndim == 2 else [background[..., c] for c in range(source.shape[-1])]
    images, stack_labels = [], []
    for z in range(depth):
        t = z - depth // 2
        rotate = (1 + growth * t) * np.array(
            [[np.cos(spin * t), -np.sin(spin * t)], [np.sin(spin * t), np.cos(spin * t)]]
        )
        shift = velocity * t + accel * t * abs(t)
        wave = (
            elastic_amp
            * abs(t)
            * (np.sin(elastic_freq * t) * elastic[0] + np.cos(elastic_freq * t) * elastic[1])
        )
        dy, dx = rows - centre[0], cols - centre[1]
        coords = np.stack(
            [centre[i] + rotate[i, 0] * dy + rotate[i, 1] * dx + shift[i] + wave[i] for i in (0, 1)]
        )
        lab = _warp(labels, coords, 0).astype(np.int32)
        depth_in = _warp(interior, coords, 1)
        extent = half_extent[lab]
        keep_level = 1 - np.sqrt(np.clip(1 - (t / extent) ** 2, 0, 1))  # 0: whole object, 1: gone
        kept = (lab > 0) & (depth_in >= keep_level) & (np.abs(t) < extent)
        # Kept part: full contrast (dimmed towards the object's end); cut part: fading into the background.
        weight = np.clip(1 + (depth_in - keep_level) / 0.15, 0, 1) * np.where(kept, 1.0, 0.3)
        weight = np.where(np.isfinite(extent), weight * (0.6 + 0.4 * (1 - keep_level)), weight)
        weight = np.where(lab > 0, weight, 1.0)
        planes = []
        for channel, back in zip(channels, backgrounds):
            back_z = _warp(back, coords, 1)
            planes.append(back_z + (_warp(channel, coords, 1) - back_z) * weight)
        plane = np.stack(planes, axis=-1) if source.ndim == 3 else planes[0]
        images.append(plane + sigma * rng.standard_normal(plane.shape).astype(np.float32))
        stack_labels.append(np.where(kept, lab, 0).astype(np.int32))
    return Stack(name, np.stack(images).astype(np.float32), np.stack(stack_labels))


def _deformed_from_folder(
    folder: Path, ids: list[str], count: int, depth: int, crop: int, seed: int, prefix: str
) -> list[Stack]:
    if not ids:
        raise ValueError(f"{prefix}: no images in {folder}")
    stacks = []
    for index in range(count):
        image_id = ids[index % len(ids)]
        image = read_image(folder / f"{image_id}_image.png", lazy=False)
        image = image[..., :3] if image.ndim == 3 and image.shape[-1] == 4 else image
        labels = read_image(folder / f"{image_id}_labels.png", lazy=False)
        rng = np.random.default_rng(stable_seed("fcfi-stack", seed, image_id, index))
        name = f"{prefix}-{image_id}-{index}"
        stacks.append(deformed_stack(image, labels, rng, depth, crop=crop, name=name))
    return stacks


def dsb_deformed_stacks(
    path=DEFAULT_DSB, count: int = 4, depth: int = 11, crop: int = 192, seed: int = 0
) -> list[Stack]:
    """Stacks from the first ``count`` DSB images of the validation split (never a training image)."""
    path = Path(path)
    val_ids = split_instance_folder(path)[1]
    return _deformed_from_folder(path, val_ids[:count], count, depth, crop, seed, "dsb")


def mnfinder_deformed_stacks(
    path=DEFAULT_MNFINDER, count: int = 3, depth: int = 11, crop: int = 256, seed: int = 0
) -> list[Stack]:
    """Stacks from the mnfinder ``val`` images (cycled with different crops); ``train`` is refused."""
    path = Path(path)
    if (path / "val").is_dir():
        path = path / "val"
    if path.name != "val":
        raise ValueError(f"mnfinder stacks come from the val/ folder only, got {path}")
    return _deformed_from_folder(path, instance_folder_ids(path), count, depth, crop, seed, "mnfinder")


def stack_set(
    name: str,
    *,
    count: int | None = None,
    depth: int | None = None,
    size: int = 128,
    seed: int = 0,
    dsb_path=DEFAULT_DSB,
    mnfinder_path=DEFAULT_MNFINDER,
) -> list[Stack]:
    """The stacks of set ``name`` (:data:`STACK_SETS`); ``count``/``depth`` ``None``: the set's default."""
    if name == "sample":
        return [sample_stack()]
    if name == "procedural":
        return procedural_stacks(count or 4, depth or 15, size, seed)
    if name == "dsb-deformed":
        return dsb_deformed_stacks(dsb_path, count or 4, depth or 11, seed=seed)
    if name == "mnfinder-deformed":
        return mnfinder_deformed_stacks(mnfinder_path, count or 3, depth or 11, seed=seed)
    if name == "membrane":
        return membrane_stacks(count or 3, depth or 15, max(size, 192), seed)
    raise ValueError(f"unknown stack set {name!r}; choose one of {', '.join(STACK_SETS)}")


__all__ = [
    "STACK_SETS",
    "Stack",
    "deformed_stack",
    "dsb_deformed_stacks",
    "membrane_cells_stack",
    "membrane_stacks",
    "mnfinder_deformed_stacks",
    "procedural_cells_stack",
    "procedural_nuclei_stack",
    "procedural_stacks",
    "sample_stack",
    "stack_set",
]
