"""A refused commit (no free label id, the painting rule, a labels layer that does not fit) leaves its
object in progress. The user is told so and how to go on; and a positive click far from that object
is not added to it: it was most likely meant for the next object (another nucleus), and adding it
would silently merge the two. Clicks on or near the object still correct it; Esc discards it.
"""

from __future__ import annotations

from napari_fcfi.annotation.geometry import SliceKey
from napari_fcfi.annotation.objects import SliceObject
from napari_fcfi.engine.windows import bbox_of_mask

from .image_state import ImageState

STAYS = "; the object stays in progress: correct it and commit again, or press Esc to discard it"
MIN_MARGIN_PX = 3  # clicks this close to the refused object's box still correct it


class RefusedCommitGuard:
    """Remembers the objects whose commit was refused (each while it stays the object of its slice)."""

    def __init__(self) -> None:
        self.objects: list[SliceObject] = []

    def after_commit(self, state: ImageState, obj: SliceObject | None) -> bool:
        """Call after a commit of ``obj`` was tried (now or deferred); True when it was refused with a
        mask to keep on screen (the caller then says that the object stays in progress)."""
        refused = (
            obj is not None
            and not obj.commit_pending  # deferred: not tried yet
            and state.objects.slices.get(obj.key) is obj  # a commit takes the object out
            and obj.mask is not None
            and bool(obj.mask.any())
        )
        # Objects no longer in progress (committed, discarded) are forgotten; a refused one is kept.
        live = set(map(id, state.objects.slices.values()))
        self.objects = [o for o in self.objects if id(o) in live and o is not obj]
        if refused and obj is not None:
            self.objects.append(obj)
        return refused

    def far_click(self, state: ImageState, key: SliceKey, row: int, col: int, positive: bool) -> bool:
        """Whether a click would extend a refused object far beyond itself (then it is not added)."""
        obj = state.objects.slices.get(key)
        if obj is None or not any(obj is o for o in self.objects) or not positive or obj.mask is None:
            return False
        box = obj.mask_box or bbox_of_mask(obj.mask)
        if box is None:
            return False
        # A positive click this far outside the object's box is a new object, not a correction.
        margin = max(MIN_MARGIN_PX, max(box.height, box.width) // 4)
        return not (box.r0 - margin <= row <= box.r1 + margin and box.c0 - margin <= col <= box.c1 + margin)


FAR_CLICK = (
    "FCFI: click not added: the object whose commit was refused is still in progress on this slice. "
    "Press Esc to discard it (or correct it with clicks on it and commit again), then click the next object"
)
