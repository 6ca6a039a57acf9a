"""Generate the plugin's sample images: synthetic fluorescence nuclei, 2D and a small 3D stack.

The images imitate a widefield DAPI/Hoechst acquisition: elliptical nuclei of varied size and
brightness (some touching, a few small bright mitotic ones), chromatin texture, optical blur,
uneven illumination, camera offset and Poisson + read noise, stored as uint16. Everything comes
from a fixed seed, so running the script again rewrites identical files:

    python scripts/make_sample_data.py            # -> src/napari_fcfi/sample_data/*.tif

Each image is saved with its ground-truth instance labels (``*_labels.tif``), zlib-compressed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "napari_fcfi" / "sample_data"


def _place_nuclei(rng: np.random.Generator, shape: tuple[int, int], count: int, radius: tuple[float, float]):
    """Nucleus centres, semi-axes and angles, rejecting heavy overlaps (touching is allowed)."""
    nuclei: list[tuple[float, float, float, float, float]] = []
    attempts = 0
    while len(nuclei) < count and attempts < 5000:
        attempts += 1
        a = rng.uniform(*radius)
        b = a * rng.uniform(0.65, 0.95)
        row, col = rng.uniform(a, shape[0] - a), rng.uniform(a, shape[1] - a)
        if all(np.hypot(row - r, col - c) > 0.8 * (a + max(aa, bb)) for r, c, aa, bb, _ in nuclei):
            nuclei.append((row, col, a, b, rng.uniform(0, np.pi)))
    return nuclei


def _ellipse(shape: tuple[int, int], row: float, col: float, a: float, b: float, angle: float) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    dr, dc = rows - row, cols - col
    u = dr * np.cos(angle) + dc * np.sin(angle)
    v = -dr * np.sin(angle) + dc * np.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _camera(rng: np.random.Generator, photons: np.ndarray, offset: float = 100.0, read_noise: float = 6.0):
    counts = rng.poisson(np.clip(photons, 0, None)).astype(np.float32)
    counts += offset + rng.normal(0.0, read_noise, photons.shape).astype(np.float32)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def nuclei_2d(seed: int = 7, shape: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, np.ndarray]:
    """A 2D fluorescence nuclei image (uint16) and its instance labels (uint16)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    signal = np.zeros(shape, np.float32)
    texture = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), 1.5)
    texture /= texture.std()
    nuclei = _place_nuclei(rng, shape, 24, (9.0, 17.0))
    for index, (row, col, a, b, angle) in enumerate(nuclei, start=1):
        mitotic = index % 9 == 0
        if mitotic:
            a, b = a * 0.55, b * 0.45
        inside = _ellipse(shape, row, col, a, b, angle) & (labels == 0)
        labels[inside] = index
        brightness = rng.uniform(250, 700) * (2.2 if mitotic else 1.0)
        # Chromatin texture and a slightly brighter rim, as in DAPI stains.
        distance = ndi.distance_transform_edt(inside)
        rim = 1.0 + 0.25 * np.exp(-distance / 2.5)
        signal[inside] += brightness * rim[inside] * (1.0 + 0.18 * texture[inside])
    signal = ndi.gaussian_filter(signal, 1.3)  # optical blur
    rows, cols = np.mgrid[: shape[0], : shape[1]] / max(shape)
    illumination = 0.75 + 0.35 * np.exp(-((rows - 0.45) ** 2 + (cols - 0.55) ** 2) / 0.35)
    background = 25.0 + 15.0 * ndi.gaussian_filter(rng.random(shape).astype(np.float32), 20) * 10
    return _camera(rng, signal * illumination + background), labels


def nuclei_stack_3d(
    seed: int = 11, shape: tuple[int, int, int] = (16, 128, 128)
) -> tuple[np.ndarray, np.ndarray]:
    """A small 3D stack (z, y, x) of nuclei (uint16) and its 3D instance labels (uint16)."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    labels = np.zeros(shape, np.uint16)
    signal = np.zeros(shape, np.float32)
    zz, rows, cols = np.mgrid[:depth, :height, :width].astype(np.float32)
    nuclei = _place_nuclei(rng, (height, width), 12, (8.0, 14.0))
    texture = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), (0.7, 1.5, 1.5))
    texture /= texture.std()
    for index, (row, col, a, b, angle) in enumerate(nuclei, start=1):
        z_centre, z_half = rng.uniform(4, depth - 4), rng.uniform(3.0, 5.5)
        dr, dc = rows - row, cols - col
        u = dr * np.cos(angle) + dc * np.sin(angle)
        v = -dr * np.sin(angle) + dc * np.cos(angle)
        inside = ((u / a) ** 2 + (v / b) ** 2 + ((zz - z_centre) / z_half) ** 2 <= 1.0) & (labels == 0)
        labels[inside] = index
        signal[inside] += rng.uniform(250, 650) * (1.0 + 0.18 * texture[inside])
    signal = ndi.gaussian_filter(signal, (1.6, 1.2, 1.2))  # anisotropic PSF: blurrier along z
    background = 30.0 + 8.0 * zz / depth
    return _camera(rng, signal + background), labels


def save(path: Path, array: np.ndarray, axes: str) -> int:
    tifffile.imwrite(path, array, compression="zlib", predictor=True, metadata={"axes": axes})
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR, help="output folder (default: the package's sample_data)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    image, labels = nuclei_2d()
    stack, stack_labels = nuclei_stack_3d()
    for name, array, axes in (
        ("nuclei_2d.tif", image, "YX"),
        ("nuclei_2d_labels.tif", labels, "YX"),
        ("nuclei_stack_3d.tif", stack, "ZYX"),
        ("nuclei_stack_3d_labels.tif", stack_labels, "ZYX"),
    ):
        size = save(args.out / name, array, axes)
        print(f"{name}: {array.shape} {array.dtype}, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
