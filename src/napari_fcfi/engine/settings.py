"""Segmenter settings and the two presets (``"microscopy"``, the default, and ``"paper"``).

============================  ==============  =============  =====================================
setting                       microscopy      paper          meaning
============================  ==============  =============  =====================================
``input_size``                256 (*)         700            network working size: long side of
                                                             every crop fed to the network
                                                             (paper: ZoomIn ``target_size``;
                                                             ``target_size=`` is accepted as alias)
``expansion_ratio``           2.0             3.0            zoom-in box = object box x ratio
``min_window``                input_size / 2  200            minimum zoom-in box side (pixels);
                                                             microscopy: at most 2x magnification
``zoom_in``                   True            True           zoom in after the first click
``flip``                      False           True           horizontal-flip averaging (2x cost)
``threshold``                 0.49            0.49           mask = probability > threshold
``keep_connected``            True            False          FCA-Net structural integrity
``normalization``             "percentile"    "uint8"        see :mod:`.intensity`
``percentiles``               (0.5, 99.5)     (0.5, 99.5)    percentile range for "percentile"
``roi_iou_threshold``         0.5             0.5            sticky ROI is replaced below this IoU
``roi_prob_threshold``        0.5             0.5            object = map > this, for the ROI
``focus_growth_steps``        3               (unused)       first-click window doublings
``autocast_dtype``            None            None           "float16"/"bfloat16" autocast on CUDA
============================  ==============  =============  =====================================

(*) or ``model.fcfi_metadata["input_size"]`` (or ``model.metadata``) when the model carries one
(safetensors metadata written by ``save_model``);
an explicit ``input_size=`` always wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

PRESETS = ("microscopy", "paper")


@dataclass(frozen=True)
class SegmenterSettings:
    preset: str = "microscopy"
    input_size: int = 256
    expansion_ratio: float = 2.0
    min_window: int | None = None  # None: input_size // 2
    zoom_in: bool = True
    flip: bool = False
    threshold: float = 0.49
    keep_connected: bool = True
    normalization: str = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    roi_iou_threshold: float = 0.5
    roi_prob_threshold: float = 0.5
    focus_growth_steps: int = 3
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
        if not self.expansion_ratio > 0:
            raise ValueError(f"expansion_ratio must be positive, got {self.expansion_ratio}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.autocast_dtype not in (None, "float16", "bfloat16"):
            raise ValueError(f"autocast_dtype must be None, 'float16' or 'bfloat16', got {self.autocast_dtype!r}")
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
}

_ALIASES = {"target_size": "input_size"}


def resolve_settings(model: Any = None, **overrides: Any) -> SegmenterSettings:
    """Settings for a preset (``preset=`` in ``overrides``) with explicit overrides applied.

    Unknown keywords raise ``TypeError`` naming them. For the microscopy preset the model's
    ``metadata["input_size"]`` (if any) replaces the default working size.
    """
    overrides = {_ALIASES.get(k, k): v for k, v in overrides.items()}
    known = {f.name for f in fields(SegmenterSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown segmenter setting(s) {unknown}; valid settings: {sorted(known)}")
    preset = overrides.get("preset", "microscopy")
    base = SegmenterSettings(**_PAPER_DEFAULTS) if preset == "paper" else SegmenterSettings()
    if preset != "paper" and "input_size" not in overrides:
        size = None
        for attribute in ("fcfi_metadata", "metadata"):  # load_model sets fcfi_metadata
            metadata = getattr(model, attribute, None)
            if isinstance(metadata, dict) and metadata.get("input_size") is not None:
                size = metadata["input_size"]
                break
        if size is not None:
            # Stored as JSON: an int, or [height, width] of the training crops (use the long side).
            base = replace(base, input_size=int(max(size) if isinstance(size, (list, tuple)) else size))
    if "percentiles" in overrides:
        overrides["percentiles"] = tuple(float(p) for p in overrides["percentiles"])
    settings = replace(base, **overrides)
    if settings.min_window is None:
        settings = replace(settings, min_window=max(1, int(settings.input_size) // 2))
    return settings.validate()
