"""The interface the plugin's helpers use to reach the annotation of one viewer.

:class:`AnnotationHost` is what :mod:`.commit_flow`, :mod:`.propagating`, :mod:`.stack_tools`,
:mod:`.undoing`, :mod:`.segment_all_panel` and :mod:`.recovery_banner` may use of the controller
(:class:`~.controller.SegmentationController` satisfies it): the viewer, the images' states, the
prediction queue, the committer, the clicks layers' sync, the stack runs, and a few actions. Nothing
else of the controller is theirs to touch.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSet
from pathlib import Path
from typing import Any, Protocol

import napari
from napari.layers import Image

from napari_fcfi.annotation.geometry import SliceKey
from napari_fcfi.annotation.objects import SliceObject

from .background import BackgroundRun
from .committing import Committer
from .image_state import AnnotationSettings, ImageState
from .journaling import HistoryStep
from .models import ModelCache
from .points_sync import PointsSync
from .predictions import Predictor
from .stack_runs import PropagationRun


class AnnotationHost(Protocol):
    """One viewer's annotation as the helpers see it (see the module docstring)."""

    viewer: napari.Viewer
    model_cache: ModelCache
    #: Engine settings recorded in click logs and used by segment all.
    engine_settings: dict[str, Any]
    journal_root: str | Path | None
    images: dict[str, ImageState]  # every annotated image's state, by layer id
    state: ImageState | None  # the image being annotated
    predictor: Predictor
    committer: Committer
    points: PointsSync
    propagation: PropagationRun | None  # the running propagation or fill
    background_runs: MutableSet[BackgroundRun]  # segment all, adaptation: closing detaches them
    #: What changed, for the widget: "object" (cheap to show) or "all" (the default).
    on_change: Callable[..., None]
    on_stack_run: Callable[[PropagationRun | None], None]  # a fill or continuation started by a key
    stack_axis: Callable[[], int | None]  # the stack axis chosen in the widget (None: the default one)

    @property
    def settings(self) -> AnnotationSettings: ...

    @property
    def image_layer(self) -> Image | None: ...

    def update(self, **changes: Any) -> None:
        """Change settings (names of :class:`AnnotationSettings`)."""

    def current_key(self) -> SliceKey | None:
        """The slice on screen of the image being annotated."""

    def current_object(self, create: bool = True) -> SliceObject | None:
        """The object in progress on the slice on screen."""

    def show_status(self, message: str) -> None:
        """Show ``message`` in the viewer's status bar and the widget."""

    def on_labels_history(self, step: HistoryStep) -> None:
        """napari undid or redid a change of a journaled labels layer (say so, show the next label id)."""

    def request_prediction(self, state: ImageState, obj: SliceObject) -> None:
        """Predict ``obj`` from its clicks (or show its starting mask when it has none)."""

    def refresh_view(self, recompute: bool = False) -> None:
        """Show the object of the slice on screen (``recompute``: predict it when it has no prediction)."""

    def update_preview(self) -> None:
        """Redraw the preview of the slice on screen."""


class HostOwner(Protocol):
    """What a panel of the dock widget holds on to: the widget, whose controller may be replaced."""

    @property
    def controller(self) -> AnnotationHost: ...
