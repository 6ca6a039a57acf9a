"""Segmenter settings and the two presets (``"microscopy"``, the default, and ``"paper"``).

============================  ==============  =============  =====================================
setting                       microscopy      paper          meaning
============================  ==============  =============  =====================================
``input_size``                256 (*)         700            network working size: long side of
                                                             every crop fed to the network
                                                             (paper: ZoomIn ``target_size``;
                                                             ``target_size=`` is accepted as alias)
``expansion_ratio``           2.0             3.0            zoom-in box = object box x ratio
``min_window``                focus_size / 4  200            minimum zoom-in box side (pixels);
                                                             microscopy: 64 for focus_size 256, so
                                                             a small nucleus is magnified up to
                                                             4x (measured: docs/engine.md)
``focus_size``                input_size (*)  (unused)       native side of the first-click focus
                                                             window (and of the zoom-in window
                                                             when there is no object yet)
``zoom_in``                   True            True           zoom in after the first click
``flip``                      False           True           horizontal-flip averaging (2x cost)
``threshold``                 0.49            0.49           mask = probability > threshold
``keep_connected``            True            False          FCA-Net structural integrity
``normalization``             "percentile"    "uint8"        see :mod:`.intensity`
``percentiles``               (0.5, 99.5)     (0.5, 99.5)    percentile range for "percentile"
``roi_iou_threshold``         0.5             0.5            sticky ROI is replaced below this IoU
``roi_prob_threshold``        0.5             0.5            object = map > this, for the ROI
``focus_growth_steps``        3               (unused)       first-click window doublings
``first_click_zoom``          "fresh"         (unused)       second first-click pass zoomed on a
                                                             small object: "fresh" (gate 0, no
                                                             feedback), "feedback" (gate 1, first
                                                             pass as feedback) or None (off)
``autocast_dtype``            None            None           "float16"/"bfloat16" autocast on CUDA;
                                                             "bfloat16" also on CPUs with AVX512-BF16
                                                             or AMX (slower on CPUs without them)
============================  ==============  =============  =====================================

(*) or ``model.fcfi_metadata["input_size"]`` / ``["focus_size"]`` (or ``model.metadata``) when the
model carries them (safetensors metadata written by ``save_model``); explicit arguments always win.
``input_size`` is the one name of the network's working size across training (``fcfi train
--input-size``), model metadata and engine. A model trained on windows of ``focus_size`` native pixels
shrunk to a smaller network size can store both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

PRESETS = ("microscopy", "paper")
#: Probability above which a pixel belongs to the object: FCFI's (and RITM's) evaluation value. The
#: package's only copy: the plugin, evaluation and training read it from here.
DEFAULT_THRESHOLD = 0.49
FIRST_CLICK_ZOOM_MODES = (None, "fresh", "feedback")


@dataclass(frozen=True)
class SegmenterSettings:
    preset: str = "microscopy"
    input_size: int = 256
    expansion_ratio: float = 2.0
    min_window: int | None = None  # None: focus_size // 4
    focus_size: int | None = None  # None: input_size
    zoom_in: bool = True
    flip: bool = False
    threshold: float = DEFAULT_THRESHOLD
    keep_connected: bool = True
    normalization: str = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    roi_iou_threshold: float = 0.5
    roi_prob_threshold: float = 0.5
    focus_growth_steps: int = 3
    first_click_zoom: str | None = "fresh"
    autocast_dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["percentiles"] = list(self.percentiles)
        return data

    def validate(self) -> SegmenterSettings:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if int(self.input_size) < 16:
            raise ValueError(f"input_size must be at least 16 pixels, got {self.input_size}")
        if self.focus_size is not None and int(self.focus_size) < 1:
            raise ValueError(f"focus_size must be positive, got {self.focus_size}")
        if not self.expansion_ratio > 0:
            raise ValueError(f"expansion_ratio must be positive, got {self.expansion_ratio}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.autocast_dtype not in (None, "float16", "bfloat16"):
            raise ValueError(f"autocast_dtype must be None, 'float16' or 'bfloat16', got {self.autocast_dtype!r}")
        if self.first_click_zoom not in FIRST_CLICK_ZOOM_MODES:
            raise ValueError(
                f"first_click_zoom must be one of {FIRST_CLICK_ZOOM_MODES}, got {self.first_click_zoom!r}"
            )
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        return self


_PAPER_DEFAULTS = {
    "preset": "paper",
    "input_size": 700,
    "expansion_ratio": 3.0,
    "min_window": 200,
    "flip": True,
    "keep_connected": False,
    "normalization": "uint8",
    "first_click_zoom": None,
}

_ALIASES = {"target_size": "input_size"}


def resolve_settings(model: Any = None, **overrides: Any) -> SegmenterSettings:
    """Settings for a preset (``preset=`` in ``overrides``) with explicit overrides applied.

    Unknown keywords raise ``TypeError`` naming them. For the microscopy preset the model's
    ``metadata["input_size"]`` / ``["focus_size"]`` (if any) replace the defaults.
    """
    overrides = {_ALIASES.get(k, k): v for k, v in overrides.items()}
    known = {f.name for f in fields(SegmenterSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown segmenter setting(s) {unknown}; valid settings: {sorted(known)}")
    preset = overrides.get("preset", "microscopy")
    base = SegmenterSettings(**_PAPER_DEFAULTS) if preset == "paper" else SegmenterSettings()
    if preset != "paper":
        for key in ("input_size", "focus_size"):
            size = _metadata_size(model, key)
            if size is not None and key not in overrides:
                base = replace(base, **{key: size})
    if overrides.get("first_click_zoom") is True or overrides.get("first_click_zoom") is False:
        overrides["first_click_zoom"] = "fresh" if overrides["first_click_zoom"] else None
    if "percentiles" in overrides:
        overrides["percentiles"] = tuple(float(p) for p in overrides["percentiles"])
    settings = replace(base, **overrides)
    if settings.focus_size is None:
        settings = replace(settings, focus_size=int(settings.input_size))
    if settings.min_window is None:
        settings = replace(settings, min_window=max(1, int(settings.focus_size) // 4))
    return settings.validate()


def _metadata_size(model: Any, key: str) -> int | None:
    """``key`` from the model's metadata dict (``fcfi_metadata`` from load_model, or ``metadata``)."""
    for attribute in ("fcfi_metadata", "metadata"):
        metadata = getattr(model, attribute, None)
        if isinstance(metadata, dict) and metadata.get(key) is not None:
            size = metadata[key]
            # Stored as JSON: an int, or [height, width] (use the long side).
            return int(max(size) if isinstance(size, (list, tuple)) else size)
    return None
