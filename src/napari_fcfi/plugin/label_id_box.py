"""The dock widget's "Label id" box: the id the next object gets, or plainly none when the labels
layer's integer type has no free id left (a disabled box that still showed an old id misled users)."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import SpinBox

from napari_fcfi.annotation.painting import label_id_range

LABEL_ID_TIP = "Label id of the next committed object (defaults to the next free id)"
FULL_LABELS_TIP = "Every label id of this labels layer's type is in use: no new object fits"
LABEL = "Label id"
FULL_LABEL = "Label id: none free"
MAX_BOX_ID = 2**31 - 1  # the largest value a Qt spin box holds


def show_label_id(box: SpinBox, labels: Any | None, next_id: int) -> str | None:
    """Show ``next_id`` (0: none is free) for ``labels`` in ``box``; returns the status to show when
    the box switched between full and not full (else None)."""
    _low, high = label_id_range(labels.data.dtype) if labels is not None else (1, MAX_BOX_ID)
    full = not next_id and labels is not None
    was_full = not box.enabled
    # 0 (the background, never an object's id) and the box's label say that no id is free.
    box.label = FULL_LABEL if full else LABEL
    box.min = 0 if full else 1
    box.max = min(high, MAX_BOX_ID)
    box.value = 0 if full else min(next_id, box.max)
    if full == was_full:
        return None
    box.enabled = not full
    box.tooltip = FULL_LABELS_TIP if full else LABEL_ID_TIP
    if full:
        return (
            f"FCFI: every label id of {labels.name!r} ({labels.data.dtype}) is in use: a new object cannot "
            "be committed there; choose or create a labels layer of a larger type (edit existing labels "
            "with Shift+click)"
        )
    return f"FCFI: label id {next_id} is free for the next object"
