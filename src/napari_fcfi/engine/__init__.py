"""Engine room: one interactive session on one 2D image (no napari, no Qt).

Public API::

    from napari_fcfi.engine import InteractiveSegmenter
    seg = InteractiveSegmenter(model, preset="microscopy")   # or preset="paper", any setting override
    seg.set_image(image, channel_axis=None, initial_mask=None, channel=None)
    prob = seg.add_click(row, col, positive=True)          # (H, W) float32, read-only
    seg.mask, seg.probability, seg.clicks, seg.undo(), seg.redo(), seg.reset()
    state = seg.state()                                    # JSON-serialisable
    again = InteractiveSegmenter.replay(model, image, state)

Modules: :mod:`.session` (the segmenter and both protocols), :mod:`.settings` (presets),
:mod:`.clicks` (click rounding/validation), :mod:`.intensity` (normalisation, lazy crops),
:mod:`.windows` (boxes, patches, zoom-in math), :mod:`.postprocess` (connected-component cleanup),
:mod:`.io` (click-log CSV), :mod:`.cli` (``fcfi segment``).
"""

from .clicks import Click
from .intensity import ImageSource, normalize_intensity
from .io import ClickLog, ClickRecord, load_click_log, save_click_log
from .session import InteractiveSegmenter
from .settings import PRESETS, SegmenterSettings, resolve_settings
from .windows import Box, Patch

__all__ = [
    "PRESETS",
    "Box",
    "Click",
    "ClickLog",
    "ClickRecord",
    "ImageSource",
    "InteractiveSegmenter",
    "Patch",
    "SegmenterSettings",
    "load_click_log",
    "normalize_intensity",
    "resolve_settings",
    "save_click_log",
]
