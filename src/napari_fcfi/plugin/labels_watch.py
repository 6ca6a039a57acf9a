"""Whether a labels layer changed since a moment (a segment-all run that began then reads it again)."""

from __future__ import annotations

from typing import Any

from napari.layers import Labels

from . import layers as helpers


class LabelsEditWatch:
    """Whether a labels layer changed since a segment-all run began: napari's paint event (commits and
    brush strokes) or a longer click log (commits into a multiscale layer paint no event)."""

    def __init__(self, labels: Labels | None) -> None:
        self.labels, self.painted = labels, False
        self.records = len(helpers.click_log_of(labels).records) if labels is not None else 0
        if labels is not None:
            labels.events.paint.connect(self._on_paint)
            labels.events.data.connect(self._on_paint)

    def _on_paint(self, *_: Any) -> None:
        self.painted = True

    def changed(self) -> bool:
        return self.labels is not None and (
            self.painted or len(helpers.click_log_of(self.labels).records) != self.records
        )

    def close(self) -> None:
        if self.labels is not None:
            self.labels.events.paint.disconnect(self._on_paint)
            self.labels.events.data.disconnect(self._on_paint)


__all__ = ["LabelsEditWatch"]
