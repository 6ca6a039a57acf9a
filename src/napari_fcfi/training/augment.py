"""Microscopy augmentation, applied where it is needed only.

Two kinds of augmentation, applied in this order by the sampler:

1. *Intensity* augmentation on the raw image, before normalisation: gamma, contrast, offset, a
   random 8/12/16-bit-like dynamic range, Poisson (shot) and Gaussian (read) noise, blur, inversion
   (dark objects on a bright background, as in brightfield or EM) and gray/colour changes (a
   grayscale image tinted into RGB, an RGB image turned gray). :class:`IntensityAugmentation` draws
   the parameters once per sample and applies them to any part of the image: to the crop that is
   trained on and to a strided subsample of the whole image, from which the engine's percentile
   range is taken (:func:`napari_fcfi.engine.intensity.percentile_range`). So the network sees what
   the engine would show it for the augmented image, without augmenting millions of pixels that are
   never looked at.
2. *Geometric* augmentation on the crop, applied to the image and the mask together: flips and 90°
   rotations (:func:`flip_rotate`). Scale jitter and crops around the object are done by the crop
   sampler in :mod:`napari_fcfi.training.data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine.intensity import percentile_range, rescale_to_unit

DEFAULT_PERCENTILES = (0.5, 99.5)


@dataclass
class IntensityAugmentation:
    """One draw of intensity-augmentation parameters (see :meth:`draw`), applicable to any crop."""

    lo: float
    scale: float
    to_gray: bool = False
    tint: np.ndarray | None = None
    invert_max: float | None = None
    gamma: float | None = None
    contrast: tuple[float, float] | None = None
    blur_sigma: float | None = None
    full_scale: float = 255.0
    exposure: float = 1.0
    photons: float | None = None
    read_noise: float | None = None
    dark_offset: float = 0.0

    @classmethod
    def identity(cls, sample: np.ndarray) -> IntensityAugmentation:
        """No augmentation: only the mapping to [0, 1.5] and back to counts (monotonic)."""
        lo, hi = np.percentile(np.asarray(sample, np.float32), [0.1, 99.9])
        return cls(float(lo), float(hi - lo) if hi > lo else 1.0, full_scale=1.0)

    @classmethod
    def draw(
        cls, sample: np.ndarray, rng: np.random.Generator, strength: float = 1.0
    ) -> IntensityAugmentation:
        """Random parameters for an image represented by ``sample`` (e.g. a strided subsample)."""
        sample = np.asarray(sample, np.float32)
        lo, hi = np.percentile(sample, [0.1, 99.9])
        aug = cls(float(lo), float(hi - lo) if hi > lo else 1.0)
        is_rgb = sample.ndim == 3
        if is_rgb and rng.random() < 0.3 * strength:
            aug.to_gray, is_rgb = True, False
        if not is_rgb and rng.random() < 0.3 * strength:
            tint = rng.uniform(0.0, 1.0, 3).astype(np.float32)
            tint[rng.integers(3)] = 1.0
            aug.tint = tint
        if rng.random() < 0.25 * strength:  # inversion: dark-on-bright images
            aug.invert_max = float(np.clip((sample - lo) / aug.scale, 0.0, 1.5).max())
        if rng.random() < 0.8 * strength:
            aug.gamma = float(np.exp(rng.normal(0.0, 0.35)))
        if rng.random() < 0.8 * strength:
            aug.contrast = (float(rng.uniform(0.5, 1.5)), float(rng.uniform(-0.2, 0.2)))
        if rng.random() < 0.3 * strength:  # defocus / low resolution
            aug.blur_sigma = float(rng.uniform(0.5, 1.8))
        # Dynamic range of the sensor: 8/12/16-bit-like counts with a dark offset.
        aug.full_scale = float(rng.choice([255.0, 4095.0, 65535.0]))
        aug.exposure = math.exp(rng.uniform(math.log(0.15), 0.0))
        if rng.random() < 0.4 * strength:  # shot noise at a random photon budget
            aug.photons = math.exp(rng.uniform(math.log(20.0), math.log(500.0)))
        if rng.random() < 0.5 * strength:
            aug.read_noise = float(rng.uniform(0.005, 0.05) * aug.full_scale * 0.2)
        aug.dark_offset = float(rng.uniform(0.0, 0.1) * aug.full_scale)
        return aug

    def apply(self, raw: np.ndarray, rng: np.random.Generator, blur: bool = True) -> np.ndarray:
        """Augmented float32 counts of ``raw`` ((H, W) or (H, W, 3)); noise drawn from ``rng``."""
        x = np.clip((np.asarray(raw, np.float32) - np.float32(self.lo)) / np.float32(self.scale), 0.0, 1.5)
        if self.to_gray and x.ndim == 3:
            x = x.mean(axis=-1)
        if self.tint is not None and x.ndim == 2:
            x = x[..., None] * self.tint
        if self.invert_max is not None:
            x = np.float32(self.invert_max) - x
        if self.gamma is not None:
            x = np.clip(x, 0, None) ** np.float32(self.gamma)
        if self.contrast is not None:
            x = x * np.float32(self.contrast[0]) + np.float32(self.contrast[1])
        if blur and self.blur_sigma is not None:
            sigma = self.blur_sigma
            x = ndi.gaussian_filter(x, (sigma, sigma, 0) if x.ndim == 3 else sigma)
        counts = x * np.float32(self.exposure * self.full_scale)
        if self.photons is not None:
            counts = rng.poisson(np.clip(counts, 0, None) / self.full_scale * self.photons).astype(
                np.float32
            ) * (np.float32(self.full_scale / self.photons))
        if self.read_noise is not None:
            counts = counts + rng.normal(0.0, self.read_noise, counts.shape).astype(np.float32)
        return (counts + np.float32(self.dark_offset)).astype(np.float32)


def normalise_like_engine(
    crop: np.ndarray, sample: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> np.ndarray:
    """``crop`` ((H, W) or (H, W, 3)) as the engine's percentile mode shows it: (H, W, 3) float32 in [0, 1].

    The range comes from ``sample`` (a strided subsample of the same image, as in the engine); RGB
    shares one range over its channels, gray is repeated to three channels.
    """
    lo, hi = percentile_range(sample, percentiles)
    out = rescale_to_unit(crop, lo, hi)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return out[..., :3]


def flip_rotate(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip / 90° rotation applied to ``image`` (H, W, C) and ``mask`` (H, W, ...)."""
    k = int(rng.integers(4))
    image, mask = np.rot90(image, k, axes=(0, 1)), np.rot90(mask, k, axes=(0, 1))
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
