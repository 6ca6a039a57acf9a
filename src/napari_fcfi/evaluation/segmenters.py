"""What the robot user clicks into: a *segmenter*, and :func:`resolve_segmenter` that makes one from any spec.

A segmenter follows the protocol

* ``start(image, gt_ignore=None)``: begin a new object on ``image`` ((H, W) or (H, W, C));
* ``add_click(row, col, positive)``: return the object's probability (float, (H, W)) or mask
  (bool) after the click; probabilities are thresholded with the segmenter's ``threshold``
  attribute (:data:`~napari_fcfi.engine.settings.DEFAULT_THRESHOLD` when it has none).

:func:`resolve_segmenter` accepts such an object, a callable returning one, a model (anything
:func:`napari_fcfi.model.load_model` returns, driven through the engine by :class:`EngineSegmenter`),
an engine session, a baseline name (``"random-walker"``, ``"geodesic"``) or a model source
(``"default"``, a path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.evaluation.baselines import BASELINES
from napari_fcfi.model import load_model


class EngineSegmenter:
    """Drive a network through :class:`napari_fcfi.engine.InteractiveSegmenter` (one session, reused).

    ``preset`` (e.g. ``"paper"``; ``None`` = the engine's default microscopy protocol) and
    ``settings`` go to the engine unchanged. Consecutive objects on the same image array reuse the
    image (``reset()`` instead of ``set_image``), so per-image preprocessing is paid once.
    """

    def __init__(self, model: Any, *, preset: str | None = None, name: str | None = None, **settings: Any):
        if preset is not None:
            settings["preset"] = preset
        self._session = InteractiveSegmenter(model, **settings)
        self._image: np.ndarray | None = None
        self.name = name or "model"

    @classmethod
    def from_session(cls, session: Any, name: str | None = None) -> EngineSegmenter:
        """Wrap an existing engine session (its settings are kept)."""
        self = cls.__new__(cls)
        self._session = session
        self._image = None
        self.name = name or "model"
        return self

    @property
    def threshold(self) -> float:
        return float(getattr(self._session, "threshold", DEFAULT_THRESHOLD))

    def start(
        self, image: np.ndarray, gt_ignore: np.ndarray | None = None, initial_mask: np.ndarray | None = None
    ) -> None:
        """Begin an object on ``image``; ``initial_mask`` (bool (H, W)) is the engine's starting mask."""
        if initial_mask is None and image is self._image and hasattr(self._session, "reset"):
            self._session.reset()
            return
        # (H, W, 3|4) is RGB(A) for the engine (one intensity range, colours kept); other channel
        # counts are a channel axis (composite).
        channel_axis = -1 if image.ndim == 3 and image.shape[-1] not in (3, 4) else None
        if initial_mask is None:
            self._session.set_image(image, channel_axis=channel_axis)
            self._image = image
        else:
            self._session.set_image(image, channel_axis=channel_axis, initial_mask=initial_mask)
            self._image = None  # reset() would keep this initial mask: the next start sets the image again

    def add_click(self, row: int, col: int, positive: bool) -> np.ndarray:
        return self._session.add_click(row, col, positive)


def _looks_like_model(obj: Any) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "forward")


def resolve_segmenter(
    spec: Any,
    *,
    preset: str | None = None,
    device: str | None = None,
    name: str | None = None,
    engine_settings: dict | None = None,
) -> tuple[str, Callable[[], Any]]:
    """Turn ``spec`` into ``(name, factory)``; ``factory()`` gives an object with ``start``/``add_click``.

    ``spec``: a baseline name, a model source for ``load_model`` (str/Path), a loaded model, an
    engine session (``set_image``/``add_click``), a segmenter object, or a zero-argument callable.
    ``preset`` and ``engine_settings`` (e.g. ``{"input_size": 128}``) configure the engine for models.
    """
    settings = dict(engine_settings or {})
    if isinstance(spec, (str, Path)):
        key = str(spec)
        if key in BASELINES:
            cls = BASELINES[key]
            return name or key, cls
        model = load_model(key, device=device) if device is not None else load_model(key)
        label = name or (Path(key).stem if Path(key).suffix else key)
        return label, lambda: EngineSegmenter(model, preset=preset, name=label, **settings)
    if isinstance(spec, type):  # a segmenter class is a factory (its methods are not bound yet)
        return name or getattr(spec, "name", spec.__name__), spec
    if _looks_like_model(spec):
        label = name or type(spec).__name__
        return label, lambda: EngineSegmenter(spec, preset=preset, name=label, **settings)
    if hasattr(spec, "start") and hasattr(spec, "add_click"):
        return name or getattr(spec, "name", type(spec).__name__), lambda: spec
    if hasattr(spec, "set_image") and hasattr(spec, "add_click"):
        label = name or "model"
        wrapped = EngineSegmenter.from_session(spec, label)
        return label, lambda: wrapped
    if callable(spec):
        return name or getattr(spec, "__name__", "segmenter"), spec
    raise ValueError(
        f"cannot evaluate {type(spec).__name__}: expected a baseline name, a model source, a model, "
        "an engine session, a segmenter with start/add_click, or a factory"
    )
