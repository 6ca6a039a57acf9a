"""Microscopy augmentation and the engine's intensity normalisation.

Two kinds of augmentation, applied in this order by the dataset:

1. *Intensity* augmentation on the raw image, before normalisation: gamma, contrast,
   offset, a random 8/12/16-bit-like dynamic range, Poisson (shot) and Gaussian (read)
   noise, blur, inversion (dark objects on a bright background, as in brightfield or EM)
   and gray/colour changes (a grayscale image tinted into RGB, an RGB image turned gray).
   Then :func:`robust_normalise` maps the image to [0, 1] exactly as the engine does, so
   the network sees at training time what it will see in the plugin.
2. *Geometric* augmentation on the crop, applied to the image and the mask together:
   flips and 90° rotations (:func:`flip_rotate`). Scale jitter and crops around the object
   are done by the crop sampler in :mod:`napari_fcfi.training.data`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5


def robust_normalise(image: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE) -> np.ndarray:
    """Map ``image`` (H, W) or (H, W, C) to float32 [0, 1] with robust percentiles.

    The percentiles are taken over all pixels and channels together, so colour balance is
    kept. Non-finite values are treated as the low end; a constant image becomes zeros.
    Grayscale (H, W) or single-channel input is repeated to three channels.
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"robust_normalise expects (H, W) or (H, W, C), got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        fill = float(array[finite].min()) if finite.any() else 0.0
        array = np.where(finite, array, fill)
    lo, hi = np.percentile(array, [low, high])
    if hi - lo <= 1e-12:
        out = np.zeros(array.shape, np.float32)
    else:
        out = np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return out[..., :3]


def augment_intensity(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Randomly change the intensities of a raw image; returns float32 of the same layout.

    ``image`` is (H, W) or (H, W, 3) with any range. The result is *not* normalised: it has
    an arbitrary dynamic range (like a 16-bit camera), to be passed to
    :func:`robust_normalise`. ``strength`` scales the probabilities (0 disables all).
    """
    array = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(array, [0.1, 99.9])
    scale = hi - lo if hi > lo else 1.0
    x = np.clip((array - lo) / scale, 0.0, 1.5)

    # Colour handling: RGB -> gray, or gray -> RGB tint (fluorescence false colour, stains).
    if x.ndim == 3 and rng.random() < 0.3 * strength:
        x = x.mean(axis=-1)
    if x.ndim == 2 and rng.random() < 0.3 * strength:
        tint = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        tint[rng.integers(3)] = 1.0
        x = x[..., None] * tint
    if rng.random() < 0.25 * strength:  # inversion: dark-on-bright images
        x = x.max() - x
    if rng.random() < 0.8 * strength:  # gamma
        x = np.clip(x, 0, None) ** np.exp(rng.normal(0.0, 0.35))
    if rng.random() < 0.8 * strength:  # contrast and offset
        x = x * rng.uniform(0.5, 1.5) + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.3 * strength:  # defocus / low resolution
        sigma = rng.uniform(0.5, 1.8)
        x = ndi.gaussian_filter(x, (sigma, sigma, 0) if x.ndim == 3 else sigma)

    # Dynamic range of the sensor: map to 8/12/16-bit-like counts with a dark offset.
    full_scale = float(rng.choice([255.0, 4095.0, 65535.0]))
    counts = x * math.exp(rng.uniform(math.log(0.15), 0.0)) * full_scale
    if rng.random() < 0.4 * strength:  # shot noise at a random photon budget
        photons = math.exp(rng.uniform(math.log(20.0), math.log(500.0)))
        counts = rng.poisson(np.clip(counts, 0, None) / full_scale * photons).astype(np.float32) * (
            full_scale / photons
        )
    if rng.random() < 0.5 * strength:  # read noise
        counts = counts + rng.normal(0.0, rng.uniform(0.005, 0.05) * full_scale * 0.2, counts.shape)
    counts = counts + rng.uniform(0.0, 0.1) * full_scale
    return counts.astype(np.float32)


def flip_rotate(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip / 90° rotation applied to ``image`` (H, W, C) and ``mask`` (H, W, ...)."""
    k = int(rng.integers(4))
    image, mask = np.rot90(image, k, axes=(0, 1)), np.rot90(mask, k, axes=(0, 1))
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
