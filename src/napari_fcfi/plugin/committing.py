"""Commit: the object in progress -> the labels layer, the crash-recovery journal and the click log.

:class:`Committer` decides where an object goes (a labels layer that belongs to the image: same
label grid, scale and translate; or a new one named after the image), which id it gets (the chosen
one if it fits the layer's dtype, else the next free one), paints every slice of the object with the
rules of :mod:`napari_fcfi.annotation.painting` (all slices or none: one refused slice refuses the
commit, so nothing is half-written), writes through ``Labels.data_setitem`` so napari's own undo
sees it (and the layer's journal, :mod:`.journaling`, records it on disk before returning), and adds the object to the click log kept in
the labels layer's metadata (so it stays with the labels even when the widget is closed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Labels

from napari_fcfi.annotation.clicklog import ObjectRecord
from napari_fcfi.annotation.geometry import ImageGeometry, SliceKey, describe_slices
from napari_fcfi.annotation.painting import (
    LabelIdError,
    PaintResult,
    check_label_free,
    check_label_id,
    next_free_label,
    paint_region,
)
from napari_fcfi.engine.windows import Box

from .journaling import LabelsRecorder
from .layers import (
    TAG,
    click_log_of,
    image_data,
    index_in,
    is_helper,
    labels_fit,
    saved_without_transform,
    take_image_transform,
)
from .pyramid import is_pyramid, needs_pyramid, pyramid_levels, write_region


def _labels_of_another(layer: Any, image: Any) -> bool:
    tag = layer.metadata.get(TAG, {}) if isinstance(getattr(layer, "metadata", None), dict) else {}
    owner = tag.get("labels_of")
    return bool(owner) and owner != str(image.unique_id)


def click_log_metadata(
    labels: Any, state: Any, model: str, device: str, threshold: float, engine_settings: dict[str, Any]
) -> dict[str, Any]:
    """What a saved click log says about how it was made (``fcfi segment`` replays it with these):
    the image, the model (as saved), the engine settings, the channel choice and the labels grid."""
    return {
        "image": getattr(getattr(state, "layer", None), "name", ""),
        "model": model,
        "settings": {
            **engine_settings,
            "device": device,
            "threshold": threshold,
            "channel_axis": state.channel_axis if state else None,
            "channel": state.channel if state else None,
            "rgb": bool(state and state.geometry.rgb),
            "labels_dtype": str(image_data(labels).dtype),
            "scale": list(labels.scale),
            "translate": list(labels.translate),
        },
    }


@dataclass
class CommitOutcome:
    """What a commit did (``label_id`` None when refused, with the reason in ``message``)."""

    label_id: int | None
    message: str
    slices: list[SliceKey]
    pixels: int = 0


class Committer:
    """Paints committed objects into labels layers (see the module docstring)."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._tops: dict[str, int] = {}  # largest id of each multiscale labels layer (only FCFI writes them)
        # What the next commit's status must add: the layers :meth:`labels_for` passed over, and (by
        # layer id) the scale and translate it gave to the image's labels reopened without them.
        self.note = ""
        self._adopted: dict[str, str] = {}
        self._grouped: Any = None  # the labels layer whose commits are one undo item now (:meth:`as_one`)

    @contextmanager
    def as_one(self, labels: Any, journal: LabelsRecorder | None) -> Iterator[None]:
        """Commits into ``labels`` inside are one item of napari's undo history (Accept all: one Ctrl+Z
        takes every object back, and the click log follows). Multiscale labels have no undo history."""
        if is_pyramid(labels) or self._grouped is not None:
            yield
            return
        self._grouped = labels
        failure: BaseException | None = None
        try:
            with journal.group() if journal is not None else nullcontext(), labels.block_history():
                try:
                    yield
                except Exception as error:  # noqa: BLE001 - re-raised below, once napari has kept
                    failure = error  # what was written so far as one undo item (and the journal has it)
        finally:
            self._grouped = None
            labels.refresh()  # the group's writes skipped napari's redraw (one redraw instead of many)
        if failure is not None:
            raise failure

    def labels_for(
        self, image: Any, geometry: ImageGeometry, chosen: Any | None
    ) -> tuple[Any | None, str | None]:
        """The labels layer a commit on ``image`` writes to: the chosen one if it fits, else the image's own
        existing labels layer, else None (create one). Returns ``(layer, problem with the chosen one)``;
        :attr:`note` says what the next commit's status should add."""
        self.note = ""
        if index_in(self.viewer, chosen) is None:
            chosen = None  # removed from the viewer: it never receives objects again
        if chosen is not None:
            problem = labels_fit(chosen, geometry)
            if problem is None:
                return chosen, None
            return None, f"labels layer {chosen.name!r} cannot take objects of {image.name!r}: {problem}"
        for layer in self.viewer.layers:
            tag = layer.metadata.get(TAG, {}) if isinstance(getattr(layer, "metadata", None), dict) else {}
            if tag.get("labels_of") == str(image.unique_id) and labels_fit(layer, geometry) is None:
                return layer, None
        # The image's labels saved in an earlier session and opened again carry no tag (a layer's
        # unique id lives one session): the labels layer named as this image's own is taken, never a
        # new one of the same name whose ids would repeat the reopened ones.
        own_names = {f"{image.name} labels", f"{image.name} labels (restored)"}
        candidates = [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and not is_helper(layer) and not _labels_of_another(layer, image)
        ]
        for layer in candidates:
            if layer.name not in own_names:
                continue
            if saved_without_transform(layer, geometry):  # saved to a file without its scale, reopened
                self._adopted[str(layer.unique_id)] = f"; {take_image_transform(layer, geometry)}"
            if labels_fit(layer, geometry) is None:
                return layer, None
        # A new layer: say which layers on the image's grid were passed over and why (ids would repeat).
        skipped = [
            f"{layer.name!r} was not used: {labels_fit(layer, geometry)}"
            for layer in candidates
            if tuple(layer.data.shape) == geometry.label_shape and labels_fit(layer, geometry) is not None
        ]
        self.note = "".join(f"; {reason}" for reason in skipped)
        return None, None

    def create_labels(self, image: Any, geometry: ImageGeometry) -> Any:
        data = np.zeros(geometry.label_shape, dtype=np.uint32)
        large = needs_pyramid(geometry.plane_shape)  # multiscale: napari redraws only the screen (.pyramid)
        layer = self.viewer.add_labels(
            pyramid_levels(data) if large else data,
            multiscale=large,
            name=f"{image.name} labels",
            scale=geometry.scale,
            translate=geometry.translate,
            metadata={TAG: {"labels_of": str(image.unique_id)}},
        )
        return layer

    def label_id(self, labels: Any, requested: int | None) -> int:
        """The id for the next object: ``requested`` when it fits the layer's dtype, else the next free one."""
        if requested is not None:
            label_id = check_label_id(requested, labels.data.dtype)
            if is_pyramid(labels) and label_id > self._top(labels):
                return label_id  # above the largest id: free without scanning a huge plane
            return check_label_free(image_data(labels), label_id)
        return self.next_free(labels)

    def next_free(self, labels: Any) -> int:
        """:func:`next_free_label` of the layer; a multiscale layer's largest id is remembered, since
        scanning a huge plane on every commit would freeze napari."""
        data = image_data(labels)
        if not is_pyramid(labels):
            return next_free_label(data)
        top = self._top(labels)
        if top < np.iinfo(data.dtype).max:
            return top + 1
        return next_free_label(data)

    def _top(self, labels: Any) -> int:
        """The largest id of a multiscale labels layer (scanned once, then kept up to date by commits)."""
        key = str(labels.unique_id)
        if key not in self._tops:
            data = image_data(labels)
            self._tops[key] = int(data.max()) if data.size else 0
        return self._tops[key]

    def commit(
        self,
        labels: Any,
        masks: dict[SliceKey, np.ndarray],
        record: ObjectRecord,
        journal: LabelsRecorder | None,
        boxes: dict[SliceKey, Box | None] | None = None,
    ) -> CommitOutcome:
        """Paint ``masks`` (slice -> full-plane bool) with ``record.label_id``; all slices or none.

        ``boxes``: the masks' bounding boxes where known (saves scanning full planes)."""
        label_id = record.label_id
        try:
            check_label_id(label_id, labels.data.dtype)
        except LabelIdError as error:
            return CommitOutcome(None, f"FCFI: {error}", [])
        planned: list[tuple[SliceKey, tuple[slice, slice], PaintResult]] = []
        data = image_data(labels)
        for key, mask in masks.items():
            plane = data[key] if key else data
            region, result = paint_region(
                plane,
                mask,
                label_id,
                replace_label=record.edited,
                overwrite=record.overwrite,
                mask_box=(boxes or {}).get(key),
            )
            if result.refused is not None:
                where = f" on {describe_slices([key])}" if key else ""
                return CommitOutcome(None, f"FCFI: not committed{where}: {result.refused}", [])
            planned.append((key, region, result))
        if not planned:
            return CommitOutcome(None, "FCFI: nothing to commit on this slice", [])
        pixels = 0
        clicks = [(c.row, c.col, c.positive) for c in record.clicks]
        # One item of napari's undo history for the whole object (every slice): one Ctrl+Z takes the
        # commit back, and the journal gets one paint event for it.
        grouped = nullcontext() if is_pyramid(labels) or self._grouped is labels else labels.block_history()
        with journal.commit(label_id, clicks, record) if journal is not None else nullcontext(), grouped:
            for key, region, result in planned:  # each write reaches the journal through napari's paint event
                plane = data[key] if key else data
                rows, cols = np.nonzero(result.plane != np.asarray(plane[region]))
                if rows.size and is_pyramid(labels):
                    # multiscale labels (very large planes) emit no paint event: journaled here
                    write_region(labels, key, region, result.plane)
                    if journal is not None:
                        journal.record_write(key, region, result.plane)
                elif rows.size:
                    index = tuple(np.full(rows.size, k) for k in key) + (
                        rows + region[0].start,
                        cols + region[1].start,
                    )
                    # grouped commits (Accept all) redraw once, when the group ends
                    labels.data_setitem(index, result.plane[rows, cols], refresh=self._grouped is not labels)
                pixels += result.painted
        click_log_of(labels).add(record)
        if str(labels.unique_id) in self._tops:
            self._tops[str(labels.unique_id)] = max(self._tops[str(labels.unique_id)], label_id)
        blocked = sum(r.blocked for _, _, r in planned)
        note = f"; {blocked} px left to existing labels" if blocked else ""
        where = f" on {len(planned)} slices" if len(planned) > 1 else ""
        said = self._adopted.pop(str(labels.unique_id), "") + self.note
        return CommitOutcome(
            label_id,
            f"FCFI: committed label {label_id} ({pixels} px{where}{note}) into {labels.name!r}{said}",
            [k for k, _, _ in planned],
            pixels,
        )
