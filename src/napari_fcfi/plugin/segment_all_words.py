"""Segment all's words and Accept all's progress: the object size it looked for, Accept all's progress in
its button's text and its refusals in a few words."""

from __future__ import annotations

import time
from typing import Any

from magicgui.widgets import PushButton


class CommitProgress:
    """Accept all's progress, in its button's text. The commits run on napari's main thread (they
    paint the labels layer) inside one undo item, so the event loop must not run between them (a
    brush stroke would join the item): the button is repainted directly, at most every 0.1 s, and
    only for long runs (a progress bar would need the event loop to make room for it)."""

    def __init__(self, button: PushButton, total: int) -> None:
        self.button, self.total = button, total
        self.text = button.text
        self._shown_at = time.perf_counter()
        self._shown = False

    def show(self, done: int) -> None:
        now = time.perf_counter()
        if now - self._shown_at < 0.1:
            return
        self._shown_at, self._shown = now, True
        self.button.text = f"{done} / {self.total}"
        self.button.native.repaint()

    def close(self) -> None:
        if self._shown:
            self.button.text = self.text


def refusal_notes(refusals: list[str]) -> list[str]:
    """Accept all's refusals in a few words: those lying on or covering existing labels are counted
    apart (their commit message's advice to paint over would replace the user's labels: not for a
    whole batch)."""
    on_labels = [r for r in refusals if "lies on existing labels" in r or "(already annotated)" in r]
    other = [r for r in refusals if r not in on_labels]
    notes = []
    if on_labels:
        notes.append(
            f"{len(on_labels)} on existing labels (already annotated? C corrects one, D deletes one)"
        )
    if other:
        notes.append(f"{len(other)} refused by the commit ({other[0]})")
    return notes


def sizes_note(sizes: list[tuple[float, str | None]], labels: Any) -> str:
    """The object size Segment all looked for (one per slice: a range on a stack) and where it came from:
    an estimate far off (a tissue's stained body) is the first thing a user would change."""
    if not sizes:
        return ""
    low, high = min(size for size, _ in sizes), max(size for size, _ in sizes)
    span = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"
    sources = {source for _, source in sizes}
    how = ""
    if "labelled" in sources and labels is not None:
        how = f", from the objects in {labels.name!r}"
    if "image" in sources:
        how += ", estimated: set Object size if the proposals are too big or small"
    return f" (object size {span} px{how})"


__all__ = ["CommitProgress", "refusal_notes", "sizes_note"]
