"""The "Unsaved work found" banner at the top of the dock widget.

It lists the journals of the current image whose labels are not on screen (each one separately: a
crashed session and an earlier one closed without saving are never merged), says for the chosen one
what it holds and how many entries are intact or damaged, and offers Restore (a new labels layer,
exact, no model), Discard, and Later (hidden until another image was chosen). It only displays; :mod:`.commit_flow` does the work.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Labels

from .commit_flow import RecoveryOffer, discard_offer, journals_on_screen, recovery_offers, restore_offer
from .host import AnnotationHost
from .panels import wrap_text

STYLE = (
    "QWidget#fcfiRecoveryBanner { background-color: #6b4e00; border: 1px solid #e0a800; border-radius: 4px; }"
    "QWidget#fcfiRecoveryBanner QLabel { color: #fff4d6; }"
)


class RecoveryBanner(Container):
    """See the module docstring; :meth:`refresh` is called whenever the widget mirrors the controller."""

    def __init__(self, controller: AnnotationHost) -> None:
        self.controller = controller
        self.title = Label(value="")
        self.offers: list[RecoveryOffer] = []
        self.choice = ComboBox(
            choices=self._choices, tooltip="Each journal is the work on one labels layer in one session"
        )
        self.details = Label(value="")
        self.restore_button = PushButton(
            text="Restore",
            tooltip="Add this journal's labels as a new labels layer, exactly as they were (no model needed)",
        )
        self.discard_button = PushButton(
            text="Discard", tooltip="Delete this journal (its labels are not on screen)"
        )
        self.later_button = PushButton(
            text="Later",
            tooltip="Hide this while this image is annotated (it comes back when you switch images); the journals stay on disk",
        )
        buttons = Container(
            widgets=[self.restore_button, self.discard_button, self.later_button],
            layout="horizontal",
            labels=False,
        )
        super().__init__(
            widgets=[self.title, self.choice, self.details, buttons], labels=False, visible=False
        )
        for label in (self.title, self.details):  # wrapped to the dock's width, never widening it
            wrap_text(label)
        self.native.setObjectName("fcfiRecoveryBanner")
        self.native.setStyleSheet(STYLE)
        self._key: Any = None
        self._hidden_for: Any = None  # the image state the user said "Later" for
        self.choice.changed.connect(self._show_choice)
        self.later_button.changed.connect(self.later)
        self.restore_button.changed.connect(self.restore)
        self.discard_button.changed.connect(self.discard)

    def refresh(self, force: bool = False) -> None:
        """Look for journals again when the image or the labels layers on screen changed (not per commit)."""
        controller = self.controller
        key = (id(controller.state), tuple(sorted(journals_on_screen(controller.viewer))))
        if key == self._key and not force:
            return
        self._key = key
        self.offers = recovery_offers(controller)
        self.visible = bool(self.offers) and self._hidden_for is not controller.state
        if self._hidden_for is not controller.state:
            self._hidden_for = None
        if not self.offers:
            return
        self._span_full_width()
        image = controller.image_layer.name if controller.image_layer is not None else "this image"
        which = (
            f"{len(self.offers)} sessions not on screen; choose one"
            if len(self.offers) > 1
            else "1 session not on screen"
        )
        self._set_text(self.title, f"<b>⚠ Unsaved work found</b> for {breakable(repr(image))}<br>{which}:")
        self.choice.reset_choices()
        self.choice.value = 0
        self.choice.visible = len(self.offers) > 1
        self._show_choice()

    def _choices(self, widget: Any = None) -> list[tuple[str, int]]:
        # A callable, so that napari's reset_choices on the dock keeps the entries.
        # Cut at the end: when and how much come first and tell sessions apart; the layer name is last.
        return [
            (elide(f"{i + 1}. {offer.describe()}", 56, keep_start=True), i)
            for i, offer in enumerate(self.offers)
        ]

    @property
    def selected(self) -> RecoveryOffer | None:
        index = self.choice.value
        return self.offers[index] if isinstance(index, int) and 0 <= index < len(self.offers) else None

    def _show_choice(self, *args: Any) -> None:
        offer = self.selected
        if offer is None:
            return
        scan = offer.scan
        lines = [breakable(line) for line in scan.summary_lines()]
        if scan.problems:
            lines.append(f"<i>skipped ({len(scan.problems)}; details in the tooltip):</i>")
            lines += [html.escape(_short(problem)) for problem in scan.problems[:3]]
        self._set_text(self.details, "<br>".join(lines))
        self.details.tooltip = "\n".join([offer.describe(), *scan.problems]) or str(offer.journal.folder)

    def _set_text(self, label: Label, text: str) -> None:
        label.value = text

    def _span_full_width(self) -> None:
        """Hide the empty label column magicgui puts before the banner's row, so the banner is full width."""
        row = self.native.parentWidget()
        layout = row.layout() if row is not None else None
        first = layout.itemAt(0).widget() if layout is not None and layout.count() > 1 else None
        if first is not None and first is not self.native:
            first.hide()

    def restore(self, *args: Any) -> Labels | None:
        offer = self.selected
        layer = restore_offer(self.controller, offer) if offer is not None else None
        self.refresh(force=True)
        return layer

    def later(self, *args: Any) -> None:
        """Hide the banner while this image is annotated (it comes back after another image was chosen)."""
        self._hidden_for = self.controller.state
        self.visible = False
        self.controller.show_status(
            "FCFI: unsaved work kept on disk; switch images and back (or reopen the widget) to see the offer again"
        )

    def discard(self, *args: Any) -> None:
        offer = self.selected
        if offer is not None:
            discard_offer(self.controller, offer)
        self.refresh(force=True)


def elide(text: str, limit: int = 40, keep_start: bool = False) -> str:
    """``text`` cut to at most ``limit`` characters, in the middle (or at the end: ``keep_start``); a
    menu entry cannot wrap, and long image and labels names must not widen the dock."""
    if len(text) <= limit:
        return text
    if keep_start:
        return f"{text[: limit - 1]}…"
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


BREAK_AFTER = "_-./\\"  # file and layer names often have no spaces: let them wrap after these


def breakable(text: str) -> str:
    """``text`` as HTML that wraps inside long names too (a zero-width space after each of
    :data:`BREAK_AFTER`), so a wrapped label is never wider than the dock."""
    escaped = html.escape(text)
    return "".join(f"{c}\u200b" if c in BREAK_AFTER else c for c in escaped)


def _short(problem: str) -> str:
    """A skipped-entry message with the journal's file named by its name only (the full path is in the tooltip)."""
    words = [Path(word).name if word.startswith("/") else word for word in problem.split(" ")]
    return " ".join(words)


__all__ = ["RecoveryBanner"]
