"""Accepted segment-all proposals come back when napari's undo takes their commit back.

Accepting a proposal commits it into the user's labels and drops it from the proposals layer. A user
who undoes Accept all (Ctrl+Z on the labels layer) wants the proposals again, to accept them
differently, not an empty proposals layer. :class:`AcceptedProposals` remembers each accepted
proposal's pixels (cropped to its box, per slice) by its click-log record and listens to the labels
layer's recorder: an undo that withdraws the record paints the proposal back where the proposals
layer is empty (with its old id when that is free), a redo drops it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_fcfi.annotation.clicklog import ObjectRecord
from napari_fcfi.annotation.geometry import SliceKey
from napari_fcfi.engine.windows import bbox_of_mask

from .journaling import HistoryStep, recorder_of

Region = tuple[slice, slice]


@dataclass
class _Accepted:
    record: ObjectRecord
    layer: Any  # the proposals layer it came from
    label: int  # its id there (a new one when the old id was taken meanwhile)
    parts: dict[SliceKey, tuple[Region, np.ndarray]]  # per slice: its box and its mask in the box


class AcceptedProposals:
    """Accepted proposals that undo brings back (see the module docstring)."""

    def __init__(self, viewer: Callable[[], Any], on_status: Callable[[str], None]) -> None:
        self.viewer = viewer  # the viewer of the proposals layers (asked each time: a widget's may change)
        self.on_status = on_status  # called with a short note after proposals came back or left
        self._accepted: dict[int, _Accepted] = {}  # id(record) -> the proposal it was made from

    def remember(self, labels: Any, record: ObjectRecord, layer: Any, label: int, masks: dict) -> None:
        """``record`` was committed into ``labels`` from proposal ``label`` of ``layer`` (``masks``:
        slice -> full-plane bool mask)."""
        parts = {}
        for key, mask in masks.items():
            box = bbox_of_mask(mask)
            if box is not None:
                region = box.slices
                parts[key] = (region, np.array(mask[region]))
        self._accepted[id(record)] = _Accepted(record, layer, int(label), parts)
        recorder = recorder_of(labels)
        if recorder is not None:
            recorder.listen(self.on_labels_history)

    def on_labels_history(self, step: HistoryStep) -> None:
        coming_back = [a for a in self._find(step.withdrawn) if self._live(a)]
        leaving = [a for a in self._find(step.added) if self._live(a)]
        layers = {id(a.layer): a.layer for a in coming_back + leaving}
        used = {key: set(np.unique(np.asarray(layer.data)).tolist()) for key, layer in layers.items()}
        for accepted in coming_back:
            self._put_back(accepted, used[id(accepted.layer)])
        for accepted in leaving:
            self._take_again(accepted)
        for layer in layers.values():
            layer.refresh()
        if coming_back:
            self.on_status(
                f"{step.message}; {len(coming_back)} proposal(s) back in {coming_back[0].layer.name!r}"
            )
        elif leaving:
            self.on_status(f"{step.message}; {len(leaving)} proposal(s) accepted again")

    def _find(self, records: tuple[ObjectRecord, ...]) -> list[_Accepted]:
        found = (self._accepted.get(id(record)) for record in records)
        return [a for a, record in zip(found, records) if a is not None and a.record is record]

    def _live(self, accepted: _Accepted) -> bool:
        return any(layer is accepted.layer for layer in self.viewer().layers)

    @staticmethod
    def _plane(layer: Any, key: SliceKey) -> np.ndarray:
        return layer.data[key] if key else layer.data

    def _put_back(self, accepted: _Accepted, used: set[int]) -> None:
        if accepted.label in used:  # its old id went to a proposal made since
            accepted.label = max(used) + 1
        used.add(accepted.label)
        for key, (region, mask) in accepted.parts.items():
            window = self._plane(accepted.layer, key)[region]
            window[mask & (window == 0)] = accepted.label  # never over a proposal made since

    def _take_again(self, accepted: _Accepted) -> None:
        for key, (region, mask) in accepted.parts.items():
            window = self._plane(accepted.layer, key)[region]
            window[mask & (window == accepted.label)] = 0


__all__ = ["AcceptedProposals"]
