"""Sub-panels of the dock widget: propagation through the stack (and, beside it, model adaptation)."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Container, ProgressBar, PushButton, SpinBox

from .propagating import start_propagation


class PropagatePanel(Container):
    """Propagate the object on screen up/down/both along a stack axis, with progress and Cancel."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.direction = ComboBox(label="Propagate", choices=[("both ways", "both"), ("up (+)", "up"), ("down (-)", "down")],
                                  value="both", tooltip="Direction along the stack axis")
        self.axis = ComboBox(label="along", choices=self._axis_choices, tooltip="Stack axis (for 4D images: z or t)")
        self.slices = SpinBox(label="slices", min=0, max=100_000, value=0,
                              tooltip="Slices per direction (0: until the object ends)")
        self.run_button = PushButton(text="Propagate", tooltip="Carry the object through the stack slice by slice")
        self.cancel_button = PushButton(text="Cancel", enabled=False, tooltip="Stop; the slices done are kept")
        self.progress = ProgressBar(label="", min=0, max=1, value=0, visible=False)
        super().__init__(widgets=[self.direction, self.axis, self.slices,
                                  Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                                            labels=False), self.progress], labels=True)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self._run: Any = None

    def _axis_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        geometry = getattr(getattr(self, "owner", None), "controller", None)
        geometry = None if geometry is None else geometry.geometry
        count = 0 if geometry is None else len(geometry.slice_shape)
        names = {0: [], 1: ["z"], 2: ["t", "z"]}.get(count, [f"axis {i}" for i in range(count)])
        return [(name, i) for i, name in enumerate(names)] or [("-", None)]

    def refresh_axes(self, slice_axes: int) -> None:
        """Offer the stack axes of the image (z; t and z for 4D); z by default."""
        self.axis.reset_choices()
        self.axis.value = self._axis_choices()[-1][1]
        self.enabled = slice_axes > 0

    def start(self, *args: Any) -> None:
        max_slices = int(self.slices.value) or None
        run = start_propagation(self.owner.controller, self.direction.value, max_slices, self.axis.value)
        if run is None:
            return
        self._run = run
        self.progress.max = max(run.total, 1)
        self.progress.value = 0
        self.progress.visible = True
        self.cancel_button.enabled, self.run_button.enabled = True, False
        run.on_progress = lambda done, total: setattr(self.progress, "value", done)
        run.on_finished = self._finished
        if run.worker is None:  # ran synchronously
            self._finished(run.done)

    def _finished(self, done: int) -> None:
        self.cancel_button.enabled, self.run_button.enabled = False, True
        self.progress.visible = False
        self._run = None

    def cancel(self, *args: Any) -> None:
        if self._run is not None:
            self._run.cancel()
