"""The commit action and crash recovery, on top of :class:`~.committing.Committer`.

A commit waits for the prediction of the object's latest clicks (it is then done as soon as that
arrives), writes every slice of the object, journals it, and clears the object's clicks. Crash
recovery: each labels layer the plugin writes into has its own journal (:mod:`.journaling`), filed
under the image's fingerprint; when the image is chosen, the journals whose labels are not on screen
are offered one by one, to restore (exactly, without a model) into a new labels layer or to discard.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import napari
import numpy as np
from napari.layers import Labels

from napari_fcfi.annotation.clicklog import ClicksStep, ObjectRecord, Step
from napari_fcfi.annotation.geometry import SliceKey
from napari_fcfi.annotation.journal import (
    JournalError,
    JournalScan,
    LabelsJournal,
    image_fingerprint,
    journals_for_image,
)
from napari_fcfi.annotation.journal_records import JournalWarning
from napari_fcfi.annotation.objects import SliceObject
from napari_fcfi.annotation.painting import LabelIdError
from napari_fcfi.engine.windows import Box, bbox_of_mask

from . import layers as helpers
from .host import AnnotationHost
from .image_state import ImageState
from .journaling import LabelsRecorder, journal_folder_of, record_layer
from .pyramid import needs_pyramid, pyramid_levels
from .stack_runs import busy_message


def commit_current(controller: AnnotationHost) -> bool:
    """Commit the object on the slice on screen (deferred while its prediction runs)."""
    state, obj = controller.state, controller.current_object()
    if state is None or obj is None:
        return False
    if obj.clicks and controller.predictor.pending(state.image_id, obj.key):
        obj.commit_pending = True
        controller.show_status("FCFI: commit will happen when the prediction finishes")
        return False
    return _commit(controller, state, obj)


def commit_if_pending(controller: AnnotationHost, state: ImageState, obj: SliceObject) -> None:
    if obj.commit_pending and not controller.predictor.pending(state.image_id, obj.key):
        obj.commit_pending = False
        _commit(controller, state, obj)


def _commit(controller: AnnotationHost, state: ImageState, obj: SliceObject) -> bool:
    obj.commit_pending = False
    members = state.objects.members(obj.key)
    if not state.session.has_object(obj.key):
        controller.show_status("FCFI: nothing to commit on this slice")
        return False
    if obj.clicks and obj.mask is None:
        controller.show_status("FCFI: the prediction has not arrived yet")
        return False
    busy = busy_message(state.session.running, state.image_id, obj.group, "commit")
    if busy is not None:
        controller.show_status(busy)
        return False
    empty = obj.mask is not None and obj.mask_box is None and not obj.mask.any()  # the box spares a full scan
    if obj.edit_label is None and empty and len(members) == 1:
        controller.show_status("FCFI: the object is empty; add a positive click or lower the threshold")
        return False
    record, masks = state.objects.record_for_commit(obj.key, 0, controller.settings.overwrite)
    boxes = {key: state.objects.slices[key].mask_box for key in masks if key in state.objects.slices}
    committed = _write(controller, state, record, masks, boxes, obj.edit_label)
    if committed is None:
        return False
    for member in state.session.committed(obj.key):  # napari's undo on the labels layer takes it back
        controller.points.remove(state, member)
        controller.predictor.cancel(state.image_id, member)
    if obj.from_segment_all:
        _back_to_proposals(controller, state, committed)
    controller.refresh_view()
    controller.on_change()
    return True


def commit_proposal(
    controller: AnnotationHost, state: ImageState, masks: dict[SliceKey, np.ndarray], corrected: Any = None
) -> bool:
    """Commit a segment-all proposal as it is (Accept): the same click-log record as a proposal made
    the object in progress and committed unchanged, without taking the slices' object slots, so an
    object in progress there stays as it is (and keeps the label id the user chose for it).
    ``corrected``: the proposal's correction token when it was corrected and given back (undo of that
    correction must not bring it back over the label)."""
    keys = sorted(masks)
    steps: list[Step] = [ClicksStep(key, (), masks[key], from_segment_all=True) for key in keys]
    record = ObjectRecord(0, steps, overwrite=controller.settings.overwrite)
    boxes = {key: bbox_of_mask(masks[key]) for key in keys}
    in_progress = any(obj.has_object for obj in state.objects.slices.values())
    if _write(controller, state, record, dict(masks), boxes, None, chosen_id=not in_progress) is None:
        return False
    state.session.proposal_committed(corrected, keys)  # (a run going on leaves these slices too)
    controller.refresh_view()
    controller.on_change()
    return True


def _write(
    controller: AnnotationHost,
    state: ImageState,
    record: ObjectRecord,
    masks: dict[SliceKey, np.ndarray],
    boxes: dict[SliceKey, Box | None],
    edit_label: int | None,
    chosen_id: bool = True,
) -> str | None:
    """Paint ``masks`` into the image's labels layer with ``record`` (its label id chosen here), journal
    it; the status says what happened. Returns that message, or None when nothing was written."""
    committer, settings = controller.committer, controller.settings
    labels = labels_to_commit_to(controller, state)
    if labels is None:
        return None
    try:
        chosen = settings.label_id if chosen_id else None
        label_id = edit_label if edit_label is not None else committer.label_id(labels, chosen)
    except LabelIdError as error:
        controller.show_status(f"FCFI: {error}")
        return None
    uses_chosen_id = edit_label is None and chosen is not None
    record.label_id = label_id
    record.threshold = settings.threshold  # the masks on screen are at this threshold (replayed with it)
    record.made_with = {"model": settings.model_source, "channel": state.channel}  # may change later
    outcome = committer.commit(labels, masks, record, journal_for(controller, state), boxes)
    controller.show_status(outcome.message)
    if outcome.label_id is None:
        return None
    if uses_chosen_id:  # a chosen id is used once (an edit keeps its own id); then the next free id again
        controller.update(label_id=None)
    return outcome.message


def _back_to_proposals(controller: AnnotationHost, state: ImageState, committed: str) -> None:
    """After a corrected (or accepted) proposal is committed, the proposals layer is the active one again
    while it holds proposals: the next click selects one and A / D / C act on it (the clicks layer left
    active made that click a new object, and A napari's select-all of points)."""
    viewer = controller.viewer
    for layer in viewer.layers:
        if helpers.role_of(layer) == (helpers.PROPOSALS_ROLE, state.image_id):
            if viewer.layers.selection.active is not layer and np.asarray(layer.data).any():
                viewer.layers.selection.active = layer  # (its own hint replaces the status: say both)
                controller.show_status(f"{committed}; clicks select proposals again (A / D / C)")
            return


def labels_to_commit_to(controller: AnnotationHost, state: ImageState) -> Labels | None:
    """The labels layer the image's commits write to, created when there is none (None: the chosen
    layer does not fit; the status says why)."""
    committer = controller.committer
    labels, problem = committer.labels_for(state.layer, state.geometry, state.labels_layer)
    if problem is not None:
        controller.show_status(f"FCFI: {problem}")
        return None
    if labels is None:
        viewer = controller.viewer
        before = viewer.layers.selection.active
        labels = committer.create_labels(state.layer, state.geometry)
        helpers.keep_on_top(viewer, state.preview_layer, state.clicks_layer)
        # napari selects the new layer: give the selection back (the next click does what it did
        # before: annotate, or select a proposal), or to the clicks layer
        viewer.layers.selection.active = before if before in viewer.layers else state.clicks_layer
    state.labels_layer = labels
    return labels


@contextmanager
def commits_as_one(controller: AnnotationHost, state: ImageState) -> Iterator[None]:
    """Commits on the image inside are one item of the labels layer's undo history (see
    :meth:`.committing.Committer.as_one`); without a labels layer that fits, each stays its own."""
    labels = labels_to_commit_to(controller, state)
    if labels is None:
        yield
        return
    with controller.committer.as_one(labels, journal_for(controller, state)):
        yield


# ---------------------------------------------------------------------- crash recovery
def fingerprint_of(state: ImageState) -> str:
    """The image's journal id (computed once per image: it reads sampled pixels)."""
    if state.fingerprint is None:
        source = getattr(getattr(state.layer, "source", None), "path", None)
        state.fingerprint = image_fingerprint(
            helpers.image_data(state.layer), state.layer.name, str(source) if source else None
        )
    return state.fingerprint


def journal_for(
    controller: AnnotationHost, state: ImageState, continue_journal: LabelsJournal | None = None
) -> LabelsRecorder:
    """The recorder of the labels layer commits go to (it journals every change of that layer, and
    tells the controller of napari's undo and redo there)."""
    recorder = record_layer(
        controller.viewer,
        state.labels_layer,
        fingerprint_of(state),
        {"image_name": state.layer.name},
        controller.journal_root,
        continue_journal,
    )
    recorder.listen(controller.on_labels_history)
    return recorder


@dataclass
class RecoveryOffer:
    """A journal of the current image whose labels are not on screen (a crash, or closed without saving)."""

    journal: LabelsJournal
    scan: JournalScan

    def describe(self) -> str:
        """One short line that tells this journal from the others (for the banner's menu)."""
        info, scan = self.scan.info, self.scan
        # Seconds and brush edits too: two sessions of one layer name minutes apart are common.
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(scan.last_time)) if scan.last_time else "?"
        edits = sum(change.kind == "paint" for change in scan.changes)
        counts = f"{len(scan.kept_label_ids)} obj" + (f", {edits} edit(s)" if edits else "")
        damaged = f", {scan.damaged} damaged" if scan.damaged else ""
        # When and how much first: a narrow dock clips the end of the entry, and names often repeat.
        return f"{when} · {counts}{damaged} · {str(info.get('labels_name', 'labels'))!r}"


def journals_on_screen(viewer: napari.Viewer) -> set[str]:
    """The journal folders of the labels layers in the viewer (those are never offered or discarded)."""
    return {folder for layer in viewer.layers if (folder := journal_folder_of(layer))}


def recovery_offers(controller: AnnotationHost) -> list[RecoveryOffer]:
    """Journals of the current image not held by a layer on screen, newest first (each one separately)."""
    state = controller.state
    if state is None:
        return []
    shown = journals_on_screen(controller.viewer)
    offers = []
    for journal in journals_for_image(fingerprint_of(state), controller.journal_root):
        if str(journal.folder) in shown:
            continue
        try:
            scan = _scan(journal)
        except (JournalError, OSError):
            continue  # removed meanwhile
        if scan.intact or scan.damaged:  # an empty journal has nothing to restore: no banner for it
            offers.append(RecoveryOffer(journal, scan))
    return sorted(offers, key=lambda offer: offer.scan.last_time, reverse=True)


_SCANS: dict[Any, tuple[Any, JournalScan]] = {}  # folder -> (its files' names, sizes, times; the scan)


def _scan(journal: LabelsJournal) -> JournalScan:
    """A journal's scan, read again only when its files changed (offered journals are not being written)."""
    signature = tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in journal.folder.iterdir())
    )
    cached = _SCANS.get(journal.folder)
    if cached is None or cached[0] != signature:
        cached = _SCANS[journal.folder] = (signature, journal.scan())
    return cached[1]


def restore_offer(controller: AnnotationHost, offer: RecoveryOffer) -> Labels | None:
    """Restore one journal into a new labels layer (exactly; no model); returns the layer (None: refused)."""
    state, viewer = controller.state, controller.viewer
    folder = str(offer.journal.folder)
    for layer in viewer.layers:
        if journal_folder_of(layer) == folder:  # already on screen: never a duplicate
            controller.show_status(f"FCFI: that work is already on screen in {layer.name!r}")
            return layer
    if state is None:
        controller.show_status("FCFI: choose the image first")
        return None
    try:
        labels, scan = offer.journal.restore(shape=state.geometry.label_shape)
    except JournalError as error:
        controller.show_status(f"FCFI: cannot restore: {error}")
        return None
    name = str(scan.info.get("labels_name") or f"{state.layer.name} labels")
    large = needs_pyramid(state.geometry.plane_shape)  # as the committer creates labels layers
    layer = viewer.add_labels(
        pyramid_levels(labels) if large else labels,
        multiscale=large,
        name=f"{name} (restored)",
        scale=state.geometry.scale,
        translate=state.geometry.translate,
        metadata={helpers.TAG: {"labels_of": str(state.layer.unique_id)}},
    )
    state.labels_layer = layer
    known_problems = len(scan.problems)
    log, refs = scan.click_log(state.geometry.plane_shape)
    for problem in scan.problems[known_problems:]:
        warnings.warn(problem, JournalWarning, stacklevel=2)
    lost = len(scan.problems) - known_problems
    layer.metadata[helpers.TAG][helpers.CLICK_LOG_KEY] = log  # before the journal: a new one lists it
    if offer.journal.is_v1:  # format 1: a new journal holds the restored labels, then the old files go
        journal_for(controller, state)
        offer.journal.discard()
    else:
        # new changes continue that journal, and its objects keep their numbers there
        journal_for(controller, state, continue_journal=offer.journal).adopt(refs)
    helpers.keep_on_top(viewer, state.preview_layer, state.clicks_layer)
    viewer.layers.selection.active = state.clicks_layer
    skipped = (
        f"; {scan.damaged} damaged entr{'y' if scan.damaged == 1 else 'ies'} skipped" if scan.damaged else ""
    )
    clicks = f" with the click log of {len(log)} commit(s)" if len(log) else ""  # an edit is a commit too
    if lost:
        clicks += f" ({lost} damaged click-log entr{'y' if lost == 1 else 'ies'} skipped)"
    controller.show_status(
        f"FCFI: restored {scan.objects_text()}, {scan.intact} entries into {layer.name!r}{clicks}{skipped}"
    )
    controller.on_change()
    return layer


def discard_offer(controller: AnnotationHost, offer: RecoveryOffer) -> bool:
    """Delete an offered journal; never one whose labels are on screen."""
    if str(offer.journal.folder) in journals_on_screen(controller.viewer):
        controller.show_status("FCFI: that journal belongs to labels on screen; it is kept")
        return False
    offer.journal.discard()
    controller.show_status("FCFI: the recovery journal was discarded")
    controller.on_change()
    return True
