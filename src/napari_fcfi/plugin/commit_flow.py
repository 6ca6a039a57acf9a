"""The commit action and crash recovery, on top of :class:`~.committing.Committer`.

A commit waits for the prediction of the object's latest clicks (it is then done as soon as that
arrives), writes every slice of the object, journals it, and clears the object's clicks. Crash
recovery: the journal of an image is found by the image's fingerprint when the image is chosen; the
widget offers to restore it (exactly, without a model) into a labels layer, or to discard it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_fcfi.annotation.journal import CommitJournal, image_fingerprint
from napari_fcfi.annotation.objects import SliceObject
from napari_fcfi.annotation.painting import LabelIdError

from . import layers as helpers


def commit_current(controller: Any) -> bool:
    """Commit the object on the slice on screen (deferred while its prediction runs)."""
    state, obj = controller.state, controller.current_object()
    if state is None or obj is None:
        return False
    if obj.clicks and controller.predictor.pending(state.image_id, obj.key):
        obj.commit_pending = True
        controller._status("FCFI: commit will happen when the prediction finishes")
        return False
    return _commit(controller, state, obj)


def commit_object(controller: Any, state: Any, obj: SliceObject) -> bool:
    """Commit the object in progress ``obj`` of ``state`` now (any slice; segment-all's Accept)."""
    return _commit(controller, state, obj)


def commit_if_pending(controller: Any, state: Any, obj: SliceObject) -> None:
    if obj.commit_pending and not controller.predictor.pending(state.image_id, obj.key):
        obj.commit_pending = False
        _commit(controller, state, obj)


def _commit(controller: Any, state: Any, obj: SliceObject) -> bool:
    obj.commit_pending = False
    members = state.objects.members(obj.key)
    if not any(state.objects.slices[k].has_object for k in members if k in state.objects.slices):
        controller._status("FCFI: nothing to commit on this slice")
        return False
    if obj.clicks and obj.mask is None:
        controller._status("FCFI: the prediction has not arrived yet")
        return False
    if obj.edit_label is None and obj.mask is not None and not obj.mask.any() and len(members) == 1:
        controller._status("FCFI: the object is empty; add a positive click or lower the threshold")
        return False
    committer, settings = controller.committer, controller.settings
    labels, problem = committer.labels_for(state.layer, state.geometry, state.labels_layer)
    if problem is not None:
        controller._status(f"FCFI: {problem}")
        return False
    if labels is None:
        labels = committer.create_labels(state.layer, state.geometry)
        helpers.keep_on_top(controller.viewer, state.preview_layer, state.clicks_layer)
        controller.viewer.layers.selection.active = state.clicks_layer  # the next click still annotates
    state.labels_layer = labels
    try:
        label_id = obj.edit_label if obj.edit_label is not None else committer.label_id(labels, settings.label_id)
    except LabelIdError as error:
        controller._status(f"FCFI: {error}")
        return False
    record, masks = state.objects.record_for_commit(obj.key, label_id, settings.overwrite)
    outcome = committer.commit(labels, masks, record, journal_for(controller, state))
    controller._status(outcome.message)
    if outcome.label_id is None:
        return False
    for member in state.objects.forget(obj.key):
        controller.points.remove(state, member)
        controller.predictor.cancel(state.image_id, member)
    state.actions = [a for a in state.actions if a[1] not in members]
    if settings.label_id is not None:
        controller.update(label_id=None)  # a chosen id is used once; then the next free id again
    controller._refresh_view()
    controller.on_change()
    return True


# ---------------------------------------------------------------------- crash recovery
def fingerprint_of(state: Any) -> str:
    """The image's journal id (computed once per image: it reads sampled pixels)."""
    if getattr(state, "fingerprint", None) is None:
        source = getattr(getattr(state.layer, "source", None), "path", None)
        state.fingerprint = image_fingerprint(helpers.image_data(state.layer), state.layer.name,
                                              str(source) if source else None)
    return state.fingerprint


def journal_for(controller: Any, state: Any) -> CommitJournal:
    """The image's journal, started (header written) for the labels layer commits go to."""
    if state.journal is None:
        state.journal = CommitJournal.for_image(fingerprint_of(state), controller.journal_root)
    labels = state.labels_layer
    state.journal.start({
        "image_name": state.layer.name,
        "labels_name": labels.name,
        "label_shape": list(state.geometry.label_shape),
        "dtype": str(np.dtype(labels.data.dtype)),
        "scale": list(state.geometry.scale),
        "translate": list(state.geometry.translate),
    })
    labels.metadata.setdefault(helpers.TAG, {})["journal"] = str(state.journal.folder)
    return state.journal


def pending_journal(controller: Any) -> CommitJournal | None:
    """A journal left by an earlier session for the current image (None when there is none)."""
    state = controller.state
    if state is None:
        return None
    journal = CommitJournal.for_image(fingerprint_of(state), controller.journal_root)
    if not journal.exists() or journal is state.journal or (
        state.journal is not None and state.journal.folder == journal.folder
    ):
        return None
    return journal


def restore_journal(controller: Any, journal: CommitJournal) -> Any:
    """Restore the journaled commits into a new labels layer (exactly; no model); returns the layer."""
    state = controller.state
    header = journal.header()
    dtype = np.dtype(header.get("dtype", "uint32"))
    labels = journal.restore(np.zeros(state.geometry.label_shape, dtype=dtype))
    layer = controller.viewer.add_labels(
        labels, name=f"{header.get('labels_name', state.layer.name + ' labels')} (restored)",
        scale=state.geometry.scale, translate=state.geometry.translate,
        metadata={helpers.TAG: {"labels_of": str(state.layer.unique_id), "journal": str(journal.folder)}},
    )
    state.labels_layer = layer
    state.journal = journal  # new commits continue the same journal
    helpers.keep_on_top(controller.viewer, state.preview_layer, state.clicks_layer)
    controller.viewer.layers.selection.active = state.clicks_layer
    controller._status(f"FCFI: restored {journal.summary()}")
    controller.on_change()
    return layer


def discard_journal(controller: Any, journal: CommitJournal) -> None:
    journal.discard()
    controller._status("FCFI: the recovery journal was discarded")
    controller.on_change()
