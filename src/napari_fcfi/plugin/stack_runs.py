"""What a propagation or a fill is while it runs, and what it leaves behind (stops, slices to review).

Plain records, no napari: :mod:`.propagating` and :mod:`.stack_tools` create them, the controller
holds the running one (``propagation``), each image's :class:`~.image_state.ImageState` the stops of
its last propagation (``stops``) and the slices to review (``review``); the widget's panels show their
progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_fcfi.annotation.geometry import SliceKey, describe_slice, describe_slices
from napari_fcfi.annotation.history import Action
from napari_fcfi.annotation.review import PredictedSlice


class Stop:
    """A stop of the last propagation: where, why, and how to continue past it."""

    def __init__(
        self,
        image_id: str,
        key: SliceKey,
        last_key: SliceKey,
        axis: int,
        direction: str,
        span: int,
        reason: str,
    ) -> None:
        self.image_id, self.key, self.last_key = image_id, key, last_key
        self.axis, self.direction, self.span, self.reason = axis, direction, span, reason

    def describe(self) -> str:
        return f"stopped at slice {describe_slice(self.key)}: {self.reason}"


class PropagationRun:
    """One running propagation or fill: progress callbacks, cancel, and the worker thread."""

    def __init__(self, total: int, image_id: str) -> None:
        self.total = total
        self.image_id = image_id  # the image it runs on
        self.done = 0
        self.cancelled = False
        self.discarded = False  # undone while running: slices still on their way are dropped
        self.redone = False  # undone while running, then redone: it places what still comes again
        self.action: Action | None = None  # its entry in the image's action history
        self.group: int | None = None  # the stack object it extends
        self.step: Any = None  # its step in the object's record (cut to what the user keeps at the end)
        self.failed = False  # ended by an error: what it placed stays, its step is cut to it
        self.start_index = 0  # the slice index a propagation started from
        self.worker: Any = None  # the napari worker (None when it ran without a thread)
        self.on_progress: Callable[[int, int], None] = lambda done, total: None
        self.on_finished: Callable[[int], None] = lambda done: None
        self.stops: list[Stop] = []
        self.predicted: list[PredictedSlice] = []
        self.since = 0  # the image history's clock when it began (slices the user changed after it are kept)
        self.left_to_user: list[
            SliceKey
        ] = []  # slices it did not replace: the user changed them while it ran
        self.joined: list[SliceKey] = []  # of those, the ones with the same object: they joined it
        self.blocked: set[str] = set()  # directions that ended before such a slice ("up", "down")
        self.orphaned = False  # its object was committed, edited or reset while it ran: it stopped there
        # The dock closed while it ran: it was cancelled, and what it still places goes to the objects in
        # progress the closed dock left for the next one (a fill's unfinished slices: no gap).
        self.dock_closed = False
        self.image_dropped = False  # its image was removed (or its grid changed): it stopped

    def user_changes_message(self) -> str:
        """The status line's part about what the user changed while the run went on ("" when nothing)."""
        said = ""
        left = [key for key in self.left_to_user if key not in self.joined]
        if self.joined:
            where = describe_slices(self.joined, limit=5)
            said = f"; {where} (you clicked the object there while it ran) joined this object"
        if left:
            where = describe_slices(left, limit=5)
            it = "it" if len(left) == 1 else "them"
            said += f"; {where} left as you changed {it} while it ran"
        if self.orphaned:
            said += "; it stopped there: the object was committed, edited or reset while it ran"
        return said

    def cancel(self) -> None:
        self.cancelled = True


def busy_message(run: PropagationRun | None, image_id: str, group: int | None, verb: str) -> str | None:
    """Why the object of stack object ``group`` cannot be committed or edited (``verb``) now: ``run`` is
    still placing its slices (its record would not say what it placed). None when it can."""
    if run is None or group is None or run.image_id != image_id or run.group != group or run.discarded:
        return None
    return (
        f"FCFI: this object's propagation or fill is still running; {verb} it when it ends "
        "(Cancel stops it and keeps the slices done)"
    )


class ReviewList:
    """Slices of the last propagation or fill to look at, worst first; ``next_key()`` walks them."""

    def __init__(self, image_id: str, keys: list[SliceKey], group: int | None = None) -> None:
        self.image_id, self.keys, self.position = image_id, keys, -1
        self.group = group  # the stack object the run made (None: any object in progress)

    def next_key(self, wanted: Callable[[SliceKey], bool] = lambda key: True) -> SliceKey | None:
        """The next slice ``wanted`` accepts after the last one shown (round again at the end), or None."""
        for step in range(1, len(self.keys) + 1):
            position = (self.position + step) % len(self.keys)
            if wanted(self.keys[position]):
                self.position = position
                return self.keys[position]
        return None


def review_message(review: ReviewList) -> str:
    if not review.keys:
        return "no slice to review"
    return f"review {describe_slices(review.keys, limit=5)} (N: next)"


def finished_message(run: PropagationRun, done: str, elsewhere: str | None = None) -> str:
    """The status line at the end of a run: ``done`` (what it did), or that it was taken back (or taken
    back and redone while it ran). ``elsewhere``: the name of the run's image when another image is being
    annotated now (its keys act on the image chosen in the widget)."""
    where = f"{elsewhere!r}: " if elsewhere else ""
    back = f"choose {elsewhere!r} in Image, then " if elsewhere else ""
    if run.image_dropped:
        return f"FCFI: {where}the propagation or fill stopped: its image was removed or its axes changed"
    if run.discarded:
        return f"FCFI: {where}the run was stopped and taken back; {back}Ctrl+Shift+Z redoes what it did"
    if run.redone:
        return (
            f"FCFI: {where}{done}; it stopped when you undid it, and the redo brought back what it had "
            f"made; {back}Ctrl+Z takes it back"
        )
    return f"FCFI: {where}{done}; {back}Ctrl+Z takes it back"
