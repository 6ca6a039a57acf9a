"""Classical click-based segmenters, so result tables show what a learned model adds.

Both follow the evaluation's segmenter protocol (``start(image)``, ``add_click(row, col, positive)``
returning a float32 foreground probability (H, W), ``threshold`` = 0.5) and work on a window around
the clicks and the current mask, so their cost follows the object, not the image. The window is the
bounding box of the clicks and the current mask, grown on each side by ``margin_fraction`` (0.5) of
its larger extent and at least ``min_margin`` (24) pixels; the first click's window is therefore
49 × 49 pixels, right for nuclei and too small for large photographed objects, which the next
(positive) clicks then extend. The first click seeds a disk of ``seed_radius`` (2) pixels; later
clicks seed a disk of ``correction_radius`` (0: the click pixel only) restricted to the pixels whose
current label they correct (see :meth:`_WindowedClickSegmenter._click_seed_pixels`).

* :class:`RandomWalkerSegmenter`: :func:`skimage.segmentation.random_walker` (Grady 2006) on the
  normalised image; clicks become disk-shaped seeds (positive → object, negative → background), and
  the window's rim inside the image is background seed (the object is assumed to lie inside the
  window, which grows with every click and with the mask).
* :class:`GeodesicSegmenter`: geodesic distance segmentation (in the spirit of Bai & Sapiro's
  geodesic matting): the cost of a path is its length weighted by ``epsilon + |∇I|`` (gradient
  magnitude of the Gaussian-smoothed normalised image, scaled by its 95th percentile in the window),
  computed with :class:`skimage.graph.MCP_Geometric` from the positive clicks and from the negative
  clicks plus the window rim. A pixel is object when it is geodesically closer to a positive click;
  the soft output is ``d_bg / (d_fg + d_bg)``.
"""

from __future__ import annotations

import numpy as np

from napari_fcfi.engine.intensity import normalize_intensity
from napari_fcfi.engine.windows import bbox_of_mask, bbox_with_points


def normalise_for_baselines(image: np.ndarray) -> np.ndarray:
    """The engine's normalisation (:func:`napari_fcfi.engine.intensity.normalize_intensity`), so the
    baselines see what the network sees: float32 in [0, 1], (H, W) for gray input, (H, W, 3) for colour."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] > 4):
        raise ValueError(f"image must be (H, W) or (H, W, C) with C <= 4, got shape {array.shape}")
    normalised = normalize_intensity(array)
    return normalised[..., 0] if array.ndim == 2 else normalised


class _WindowedClickSegmenter:
    """Shared bookkeeping: clicks, the working window and pasting the window result."""

    threshold = 0.5
    name = "baseline"

    def __init__(
        self,
        seed_radius: int = 2,
        margin_fraction: float = 0.5,
        min_margin: int = 24,
        correction_radius: int = 0,
    ):
        if seed_radius < 0 or correction_radius < 0 or min_margin < 1 or margin_fraction < 0:
            raise ValueError(
                "seed_radius >= 0, correction_radius >= 0, min_margin >= 1 and margin_fraction >= 0 are required"
            )
        self.seed_radius = int(seed_radius)
        self.correction_radius = int(correction_radius)
        self.margin_fraction = float(margin_fraction)
        self.min_margin = int(min_margin)
        self._data: np.ndarray | None = None
        self.clicks: list[tuple[int, int, bool]] = []
        self._seeds: list[tuple[np.ndarray, np.ndarray, bool]] = []
        self._prob: np.ndarray | None = None

    # -- protocol -------------------------------------------------------------------------------
    def start(self, image: np.ndarray, gt_ignore: np.ndarray | None = None) -> None:
        """Begin a new object on ``image`` ((H, W) or (H, W, C)); ``gt_ignore`` is not used."""
        self._data = normalise_for_baselines(image)
        self.clicks = []
        self._seeds = []
        self._prob = np.zeros(self._data.shape[:2], np.float32)

    def add_click(self, row: int, col: int, positive: bool) -> np.ndarray:
        """Add a click and return the object probability (H, W) after it."""
        if self._data is None or self._prob is None:
            raise ValueError("add_click called before start(image)")
        h, w = self._data.shape[:2]
        if not (np.isfinite(row) and np.isfinite(col)) or not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"click ({row}, {col}) lies outside the image of shape {(h, w)}")
        self._seeds.append(self._click_seed_pixels(int(row), int(col), bool(positive)))
        self.clicks.append((int(row), int(col), bool(positive)))
        r0, r1, c0, c1 = self._window()
        window_prob = self._segment_window(r0, r1, c0, c1)
        prob = np.zeros((h, w), np.float32)
        prob[r0:r1, c0:c1] = window_prob
        self._prob = prob
        return prob.copy()

    # -- helpers --------------------------------------------------------------------------------
    def _window(self) -> tuple[int, int, int, int]:
        assert self._data is not None and self._prob is not None
        h, w = self._data.shape[:2]
        box = bbox_with_points(bbox_of_mask(self._prob > self.threshold), [(r, c) for r, c, _ in self.clicks])
        assert box is not None  # there is at least one click
        extent = max(box.r1 - box.r0, box.c1 - box.c0)
        margin = max(self.min_margin, round(self.margin_fraction * extent))
        return (
            max(0, box.r0 - margin),
            min(h, box.r1 + margin + 1),
            max(0, box.c0 - margin),
            min(w, box.c1 + margin + 1),
        )

    def _click_seed_pixels(self, row: int, col: int, positive: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        """Seed pixels of one click: the click pixel plus the pixels of a ``seed_radius`` disk whose
        current label the click corrects (background for a positive click, object for a negative one).

        A click corrects an error, so the disk must not spill across the error's border: on thin
        boundary errors (1-2 px bands around nuclei) a full disk would seed the wrong side and the
        next click would have to undo it.
        """
        assert self._data is not None and self._prob is not None
        h, w = self._data.shape[:2]
        r = self.seed_radius if not self.clicks else self.correction_radius
        yy, xx = np.mgrid[max(0, row - r) : min(h, row + r + 1), max(0, col - r) : min(w, col + r + 1)]
        in_disk = (yy - row) ** 2 + (xx - col) ** 2 <= r * r
        predicted_object = self._prob[yy, xx] > self.threshold
        keep = in_disk & (predicted_object != positive)
        keep |= (yy == row) & (xx == col)
        return yy[keep], xx[keep], positive

    def _seed_labels(self, r0: int, r1: int, c0: int, c1: int, scale: float = 1.0) -> np.ndarray:
        """Window seeds: 0 unknown, 1 object (positive disks), 2 background (negative disks, rim).

        ``scale`` < 1 builds the seeds for the window resampled by that factor (disks keep at least
        one pixel, so no click is lost).
        """
        assert self._data is not None
        h, w = self._data.shape[:2]
        out_h = max(2, round((r1 - r0) * scale))
        out_w = max(2, round((c1 - c0) * scale))
        labels = np.zeros((out_h, out_w), np.uint8)
        # The rim is background only where the window ends inside the image (the image border is
        # not evidence of background); if that leaves no background at all, use the whole rim.
        rim = np.zeros_like(labels, dtype=bool)
        if r0 > 0:
            rim[0, :] = True
        if r1 < h:
            rim[-1, :] = True
        if c0 > 0:
            rim[:, 0] = True
        if c1 < w:
            rim[:, -1] = True
        if not rim.any() and not any(not p for _, _, p in self.clicks):
            rim[0, :] = rim[-1, :] = rim[:, 0] = rim[:, -1] = True
        labels[rim] = 2
        sy, sx = out_h / (r1 - r0), out_w / (c1 - c0)
        for rows, cols, positive in self._seeds:  # later clicks override earlier ones where seeds overlap
            inside = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
            cy = np.minimum(((rows[inside] - r0 + 0.5) * sy).astype(int), out_h - 1)
            cx = np.minimum(((cols[inside] - c0 + 0.5) * sx).astype(int), out_w - 1)
            labels[cy, cx] = 1 if positive else 2
        return labels

    def _segment_window(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        raise NotImplementedError


class RandomWalkerSegmenter(_WindowedClickSegmenter):
    """Random walker from click seeds (see the module docstring).

    The linear system is solved directly (``mode="bf"``): the conjugate-gradient modes need tens of
    seconds per click on textured photographs. Windows larger than ``max_side`` pixels are resampled
    to ``max_side`` for the solve and the probability is resampled back (bilinear).
    """

    name = "random-walker"

    def __init__(
        self,
        beta: float = 130.0,
        seed_radius: int = 2,
        margin_fraction: float = 0.5,
        min_margin: int = 24,
        max_side: int = 192,
        correction_radius: int = 0,
    ):
        super().__init__(seed_radius, margin_fraction, min_margin, correction_radius)
        if max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {max_side}")
        self.beta = float(beta)
        self.max_side = int(max_side)

    def _segment_window(self, r0, r1, c0, c1):
        import warnings

        from skimage.segmentation import random_walker
        from skimage.transform import resize

        assert self._data is not None
        data = self._data[r0:r1, c0:c1]
        height, width = data.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        labels = self._seed_labels(r0, r1, c0, c1, scale)
        if not (labels == 1).any():
            return np.zeros((height, width), np.float32)
        if labels.shape != (height, width):
            data = resize(
                data, labels.shape + data.shape[2:], order=1, anti_aliasing=True, preserve_range=True
            ).astype(np.float32)
        with warnings.catch_warnings():
            # skimage warns about isolated unlabeled regions and solver precision; both are harmless here.
            warnings.simplefilter("ignore")
            probs = random_walker(
                data,
                labels,
                beta=self.beta,
                mode="bf",
                channel_axis=-1 if data.ndim == 3 else None,
                return_full_prob=True,
            )
        prob = np.clip(probs[0], 0.0, 1.0).astype(np.float32)
        if prob.shape != (height, width):
            prob = resize(prob, (height, width), order=1, preserve_range=True).astype(np.float32)
        return prob


class GeodesicSegmenter(_WindowedClickSegmenter):
    """Geodesic-distance segmentation from click seeds (see the module docstring)."""

    name = "geodesic"

    def __init__(
        self,
        epsilon: float = 0.02,
        sigma: float = 1.0,
        seed_radius: int = 2,
        margin_fraction: float = 0.5,
        min_margin: int = 24,
        correction_radius: int = 0,
    ):
        super().__init__(seed_radius, margin_fraction, min_margin, correction_radius)
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)

    def _cost(self, r0, r1, c0, c1) -> np.ndarray:
        from scipy import ndimage

        assert self._data is not None
        data = self._data[r0:r1, c0:c1]
        channels = data[..., None] if data.ndim == 2 else data
        grad_sq = np.zeros(channels.shape[:2], np.float64)
        for c in range(channels.shape[-1]):
            smooth = ndimage.gaussian_filter(channels[..., c].astype(np.float64), self.sigma)
            grad_sq += ndimage.sobel(smooth, 0) ** 2 + ndimage.sobel(smooth, 1) ** 2
        grad = np.sqrt(grad_sq)
        scale = np.percentile(grad, 95)
        if scale <= 0:
            scale = 1.0
        return self.epsilon + grad / scale

    def _segment_window(self, r0, r1, c0, c1):
        from skimage.graph import MCP_Geometric

        labels = self._seed_labels(r0, r1, c0, c1)
        if not (labels == 1).any():
            return np.zeros(labels.shape, np.float32)
        cost = self._cost(r0, r1, c0, c1)
        dist_fg, _ = MCP_Geometric(cost).find_costs(np.argwhere(labels == 1))
        dist_bg, _ = MCP_Geometric(cost).find_costs(np.argwhere(labels == 2))
        total = dist_fg + dist_bg
        prob = np.where(total > 0, dist_bg / np.maximum(total, 1e-12), 0.5)
        prob[labels == 1] = 1.0
        prob[labels == 2] = 0.0
        return prob.astype(np.float32)


BASELINES = {
    "random-walker": RandomWalkerSegmenter,
    "geodesic": GeodesicSegmenter,
}
