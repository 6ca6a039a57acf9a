"""The plugin's dock widget as tests build it: stand-in models, runs on the calling thread."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from helpers.standins import DiskSegmenter
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner


def stand_in_model_cache() -> ModelCache:
    """A model cache whose "models" are their names (the stand-in segmenters need no network)."""
    return ModelCache(loader=lambda source, device: SimpleNamespace(name=source))


def docked_widget(
    viewer: Any,
    journal_root: str | Path | None,
    segmenter_factory: Any = DiskSegmenter,
    model_cache: ModelCache | None = None,
    **dock_options: Any,
) -> FCFIWidget:
    """An :class:`FCFIWidget` on ``viewer`` with a stand-in segmenter, docked like the plugin's."""
    widget = FCFIWidget(
        viewer,
        model_cache=model_cache or stand_in_model_cache(),
        segmenter_factory=segmenter_factory,
        runner=ImmediateRunner(),
        journal_root=journal_root,
    )
    viewer.window.add_dock_widget(widget, **dock_options)
    return widget
