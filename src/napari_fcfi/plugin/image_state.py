"""What the plugin keeps per viewer (the user's settings) and per annotated image (its state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari.layers import Image, Labels, Points

from napari_fcfi.annotation.geometry import ImageGeometry
from napari_fcfi.annotation.history import ActionHistory
from napari_fcfi.annotation.objects import ObjectsInProgress
from napari_fcfi.annotation.session import AnnotationSession
from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.engine.windows import Box

from .models import DEFAULT_MODEL
from .predictions import default_cpu_threads
from .stack_runs import ReviewList, Stop


@dataclass(frozen=True)
class AnnotationSettings:
    """Everything the user chooses in the widget."""

    model_source: str = DEFAULT_MODEL
    device: str = "cpu"
    cpu_threads: int | None = field(default_factory=default_cpu_threads)
    threshold: float = DEFAULT_THRESHOLD
    overwrite: bool = False
    label_id: int | None = None  # None: the next free id of the labels layer
    annotating: bool = True


@dataclass
class ImageState:
    """What the controller keeps for one annotated image layer."""

    layer: Image
    geometry: ImageGeometry
    channel_axis: int | None
    channel: Any
    clicks_layer: Points
    preview_layer: Labels
    session: AnnotationSession = field(default_factory=AnnotationSession)  # objects in progress, history
    labels_layer: Labels | None = None
    preview_box: Box | None = None  # what the preview layer shows now
    fingerprint: str | None = None  # the image's journal id (see commit_flow.fingerprint_of)
    # When its last propagation or fill ended: time.monotonic() and the history's clock then.
    run_ended: tuple[float, int] = (0.0, -1)

    @property
    def stops(self) -> list[Stop]:
        """Where its last propagation stopped (kept in the session: a reopened dock continues past them)."""
        return self.session.stops

    @stops.setter
    def stops(self, stops: list[Stop]) -> None:
        self.session.stops = stops

    @property
    def review(self) -> ReviewList | None:
        """The slices of its last propagation or fill to review (kept in the session too)."""
        return self.session.review

    @review.setter
    def review(self, review: ReviewList | None) -> None:
        self.session.review = review

    @property
    def objects(self) -> ObjectsInProgress:
        return self.session.objects

    @property
    def history(self) -> ActionHistory:
        """Every change of ``objects``, for undo and redo."""
        return self.session.history

    @property
    def image_id(self) -> str:
        return str(self.layer.unique_id)
