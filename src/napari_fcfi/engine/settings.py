"""Segmenter settings and the two presets (``"microscopy"``, the default, and ``"paper"``).

============================  ==============  =============  =====================================
setting                       microscopy      paper          meaning
============================  ==============  =============  =====================================
``input_size``                256 (*)         700 / 600 (+)  network working size: long side of
                                                             every crop fed to the network
                                                             (paper: ZoomIn ``target_size``;
                                                             ``target_size=`` is accepted as alias)
``expansion_ratio``           2.0             3.0 / 3.2 (+)  zoom-in box = object box x ratio
``paper_dataset``             (unused)        "grabcut"      official val config the paper preset
                                                             follows: "grabcut", "berkeley",
                                                             "davis" or "sbd" (case-insensitive)
``paper_backbone``            (unused)        from model (+) "h18s" or "r101": official config
                                                             family; None = from the model
``min_window``                focus_size / 4  200            minimum zoom-in box side (pixels);
                                                             microscopy: 64 for focus_size 256, so
                                                             a small nucleus is magnified up to
                                                             4x (measured: docs/reports/2026-11-engine-measurements.md)
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
``fuse_batchnorm``            True            True           run a copy of the network with BatchNorm
                                                             folded into its convolutions (same
                                                             output to float rounding; float32
                                                             networks up to 20 M parameters)
============================  ==============  =============  =====================================

(*) or ``model.fcfi_metadata["input_size"]`` / ``["focus_size"]`` (or ``model.metadata``) when the
model carries them (safetensors metadata written by ``save_model``); explicit arguments always win.
``input_size`` is the one name of the network's working size across training (``fcfi train
--input-size``), model metadata and engine. A model trained on windows of ``focus_size`` native pixels
shrunk to a smaller network size can store both.

(+) The official evaluation (``scripts/evaluate_model.py``, "cvpr" mode) reads its ZoomIn target size
and expansion ratio from ``configs/val/config_<dataset>_<backbone>.yml``, so they differ per backbone
and dataset (:data:`PAPER_ZOOM_IN`, fact sheet ``shared/docs/official_checkpoints/README.md`` section
3). The paper preset does the same: ``paper_backbone`` comes from ``model.config["arch"]`` ("hrnet"
-> "h18s"; "deeplab", any ResNet depth -> "r101"; anything else, e.g. "mobile" or a model without a
config -> "h18s", the preset's former single setting), ``paper_dataset`` defaults to "grabcut". The
table shows GrabCut for HRNet-18s / ResNet-101. Explicit ``input_size`` / ``expansion_ratio`` win.
Nothing else in the official evaluation varies per model or dataset (threshold 0.49, flip, minimum
crop 200 and skip_clicks 1 are the same in every config).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

PRESETS = ("microscopy", "paper")
#: Probability above which a pixel belongs to the object: FCFI's (and RITM's) evaluation value. The
#: package's only copy: the plugin, evaluation and training read it from here.
DEFAULT_THRESHOLD = 0.49
FIRST_CLICK_ZOOM_MODES = (None, "fresh", "feedback")
#: Official val configs (``configs/val/config_<dataset>_<backbone>.yml``, ZOOM_IN.CVPR):
#: backbone -> dataset -> (target_size, expansion_ratio).
PAPER_ZOOM_IN: dict[str, dict[str, tuple[int, float]]] = {
    "h18s": {"grabcut": (700, 3.0), "berkeley": (720, 2.8), "davis": (720, 3.5), "sbd": (480, 2.3)},
    "r101": {"grabcut": (600, 3.2), "berkeley": (720, 2.5), "davis": (640, 3.0), "sbd": (480, 2.3)},
}
PAPER_DATASETS = tuple(PAPER_ZOOM_IN["h18s"])
PAPER_BACKBONES = tuple(PAPER_ZOOM_IN)
#: ``model.config["arch"]`` -> official config family; other architectures fall back to "h18s".
_ARCH_TO_PAPER_BACKBONE = {"hrnet": "h18s", "deeplab": "r101"}


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
    fuse_batchnorm: bool = True
    paper_dataset: str = "grabcut"
    paper_backbone: str | None = None  # None: from the model (paper preset)

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
            raise ValueError(
                f"autocast_dtype must be None, 'float16' or 'bfloat16', got {self.autocast_dtype!r}"
            )
        if self.first_click_zoom not in FIRST_CLICK_ZOOM_MODES:
            raise ValueError(
                f"first_click_zoom must be one of {FIRST_CLICK_ZOOM_MODES}, got {self.first_click_zoom!r}"
            )
        if self.paper_dataset not in PAPER_DATASETS:
            raise ValueError(
                f"paper_dataset must be one of {PAPER_DATASETS} (the official evaluation's val configs), "
                f"got {self.paper_dataset!r}"
            )
        if self.paper_backbone not in (None, *PAPER_BACKBONES):
            raise ValueError(
                f"paper_backbone must be None or one of {PAPER_BACKBONES}, got {self.paper_backbone!r}"
            )
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        return self


# input_size and expansion_ratio come from PAPER_ZOOM_IN (per backbone and dataset).
_PAPER_DEFAULTS: dict[str, Any] = {
    "preset": "paper",
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
    ``metadata["input_size"]`` / ``["focus_size"]`` (if any) replace the defaults. For the paper
    preset ``input_size`` and ``expansion_ratio`` are the official evaluation's for the model's
    backbone and ``paper_dataset`` (:data:`PAPER_ZOOM_IN`); an unknown dataset raises ``ValueError``.
    """
    overrides = {_ALIASES.get(k, k): v for k, v in overrides.items()}
    known = {f.name for f in fields(SegmenterSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown segmenter setting(s) {unknown}; valid settings: {sorted(known)}")
    preset = overrides.get("preset", "microscopy")
    if isinstance(overrides.get("paper_dataset"), str):
        overrides["paper_dataset"] = overrides["paper_dataset"].lower()
    if isinstance(overrides.get("paper_backbone"), str):
        overrides["paper_backbone"] = overrides["paper_backbone"].lower()
    base = SegmenterSettings(**_PAPER_DEFAULTS) if preset == "paper" else SegmenterSettings()
    if preset == "paper":
        # Validate the dataset/backbone first, so a bad name is a ValueError, not a KeyError.
        replace(
            base, **{k: overrides[k] for k in ("paper_dataset", "paper_backbone") if k in overrides}
        ).validate()
        dataset = overrides.get("paper_dataset", base.paper_dataset)
        backbone = overrides.get("paper_backbone") or paper_backbone_of(model)
        target_size, expansion_ratio = PAPER_ZOOM_IN[backbone][dataset]
        base = replace(
            base,
            input_size=target_size,
            expansion_ratio=expansion_ratio,
            paper_dataset=dataset,
            paper_backbone=backbone,
        )
        overrides.pop("paper_backbone", None)  # None means "from the model": keep the resolved one
    else:
        for key in ("input_size", "focus_size"):
            size = _metadata_size(model, key)
            if size is not None and key not in overrides:
                sized: dict[str, Any] = {key: size}
                base = replace(base, **sized)
    if overrides.get("first_click_zoom") is True or overrides.get("first_click_zoom") is False:
        overrides["first_click_zoom"] = "fresh" if overrides["first_click_zoom"] else None
    if "percentiles" in overrides:
        overrides["percentiles"] = tuple(float(p) for p in overrides["percentiles"])
    settings = replace(base, **overrides)
    focus_size = int(settings.input_size) if settings.focus_size is None else settings.focus_size
    settings = replace(settings, focus_size=focus_size)
    if settings.min_window is None:
        settings = replace(settings, min_window=max(1, int(focus_size) // 4))
    return settings.validate()


def paper_backbone_of(model: Any) -> str:
    """Official config family for ``model``: "h18s" (HRNet) or "r101" (DeepLab), from ``model.config``.

    DeepLab models of any ResNet depth get the ResNet-101 configs (the only DeepLab ones); other
    architectures, and models without a config, get "h18s".
    """
    config = getattr(model, "config", None)
    arch = config.get("arch") if isinstance(config, Mapping) else None
    return _ARCH_TO_PAPER_BACKBONE.get(arch, "h18s") if isinstance(arch, str) else "h18s"


def _metadata_size(model: Any, key: str) -> int | None:
    """``key`` from the model's metadata dict (``fcfi_metadata`` from load_model, or ``metadata``)."""
    for attribute in ("fcfi_metadata", "metadata"):
        metadata = getattr(model, attribute, None)
        if isinstance(metadata, dict) and metadata.get(key) is not None:
            size = metadata[key]
            # Stored as JSON: an int, or [height, width] (use the long side).
            return int(max(size) if isinstance(size, (list, tuple)) else size)
    return None
