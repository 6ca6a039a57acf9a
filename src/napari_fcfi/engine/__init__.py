"""Engine room: one interactive session on one 2D image (no napari, no Qt).

Public API::

    from napari_fcfi.engine import InteractiveSegmenter
    seg = InteractiveSegmenter(model, preset="microscopy")   # or preset="paper", any setting override
    seg.set_image(image, channel_axis=None, initial_mask=None, channel=None)
    prob = seg.add_click(row, col, positive=True)          # (H, W) float32, read-only
    seg.mask, seg.probability, seg.clicks, seg.undo(), seg.redo(), seg.reset()
    state = seg.state()                                    # JSON-serialisable
    again = InteractiveSegmenter.replay(model, image, state)

Modules: :mod:`.session` (the segmenter: image, history, persistence), :mod:`.protocols` (paper and
microscopy: where each click runs the network), :mod:`.network_runner` (running the network on a
window), :mod:`.settings` (presets), :mod:`.clicks` (the click type, rounding/validation),
:mod:`.intensity` (normalisation, lazy crops), :mod:`.windows` (boxes, patches, zoom-in math),
:mod:`.masks` (exact JSON form of masks), :mod:`.postprocess` (connected-component cleanup),
:mod:`.io` (reading image files). Stacks, labels and click logs are the annotation room's
(:mod:`napari_fcfi.annotation`).
"""

from .clicks import Click
from .intensity import ImageSource, normalize_intensity
from .io import read_image
from .session import InteractiveSegmenter
from .settings import PRESETS, SegmenterSettings, resolve_settings
from .windows import Box, Patch

__all__ = [
    "PRESETS",
    "Box",
    "Click",
    "ImageSource",
    "InteractiveSegmenter",
    "Patch",
    "SegmenterSettings",
    "read_image",
    "normalize_intensity",
    "resolve_settings",
]
