"""Sub-panels of the dock widget: propagation through the stack (and, beside it, model adaptation)."""

from __future__ import annotations

from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, ProgressBar, PushButton, SpinBox

from .adaptation_data import committed_training_data
from .background import BackgroundRun, callback_steps, run_generator
from .host import HostOwner
from .propagating import default_stack_axis, start_propagation
from .stack_tools import STACK_SHORTCUTS, continue_past_stop, next_review, start_fill


class PropagatePanel(Container):
    """Propagate the object on screen up/down/both along a stack axis, with progress and Cancel."""

    def __init__(self, owner: HostOwner) -> None:
        self.owner = owner
        self.direction = ComboBox(
            label="Direction",
            choices=[("both ways", "both"), ("up (+)", "up"), ("down (-)", "down")],
            value="both",
            tooltip="Direction along the stack axis",
        )
        self.axis = ComboBox(
            label="along", choices=self._axis_choices, tooltip="Stack axis (for 4D images: z or t)"
        )
        self.slices = SpinBox(
            label="slices",
            min=0,
            max=100_000,
            value=0,
            tooltip="Slices per direction (0: until the object ends)",
        )
        self.run_button = PushButton(
            text="Propagate", tooltip="Carry the object through the stack slice by slice"
        )
        self.cancel_button = PushButton(
            text="Cancel", enabled=False, tooltip="Stop; the slices done are kept"
        )
        keys = {action: text for action, (_key, text) in STACK_SHORTCUTS.items()}
        self.fill_button = PushButton(
            text="Fill between",
            tooltip="Predict the slices between this slice and the "
            f"nearest other annotated slice of the object, from both ({keys['fill']})",
        )
        self.continue_button = PushButton(
            text="Continue",
            tooltip=f"Propagate on past where the last propagation stopped ({keys['continue']})",
        )
        self.review_button = PushButton(
            text="Next review", tooltip=f"Go to the next slice most likely wrong ({keys['review']})"
        )
        self.progress = ProgressBar(label="", min=0, max=1, value=0, visible=False)
        super().__init__(
            widgets=[
                self.direction,
                self.axis,
                self.slices,
                Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
                Container(
                    widgets=[self.fill_button, self.continue_button, self.review_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.progress,
            ],
            labels=True,
        )
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.fill_button.changed.connect(
            lambda *_: self.track(start_fill(self.owner.controller, self.axis.value))
        )
        self.continue_button.changed.connect(lambda *_: self.track(continue_past_stop(self.owner.controller)))
        self.review_button.changed.connect(lambda *_: next_review(self.owner.controller))
        owner.controller.on_stack_run = self.track  # progress and Cancel for runs started by a key
        owner.controller.stack_axis = lambda: self.axis.value  # the keys fill along the axis shown here
        self._run: Any = None

    def _axis_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        geometry = getattr(getattr(self, "owner", None), "controller", None)
        geometry = None if geometry is None else geometry.geometry
        count = 0 if geometry is None else len(geometry.slice_shape)
        names = {0: [], 1: ["z"], 2: ["t", "z"]}.get(count, [f"axis {i}" for i in range(count)])
        return [(name, i) for i, name in enumerate(names)] or [("-", None)]

    def refresh_axes(self, slice_axes: int) -> None:
        """Offer the stack axes of the image (z; t and z for 4D); by default the last of the longest
        (z of t, z; a 2-entry axis beside a 20-slice one is more likely channels than depth)."""
        self.axis.reset_choices()
        state = self.owner.controller.state
        lengths = list(state.geometry.slice_shape) if state is not None else []
        choices = [i for _name, i in self._axis_choices() if i is not None]
        self.axis.value = default_stack_axis(lengths) if choices and len(lengths) == len(choices) else None
        self.enabled = slice_axes > 0

    def start(self, *args: Any) -> None:
        max_slices = int(self.slices.value) or None
        self.track(
            start_propagation(self.owner.controller, self.direction.value, max_slices, self.axis.value)
        )

    def track(self, run: Any) -> None:
        """Show the progress of a propagation or fill (started here or by a key) and enable Cancel."""
        if run is None:
            return
        self._run = run
        self.progress.max = max(run.total, 1)
        self.progress.value = 0
        self.progress.visible = True
        self._set_running(True)
        run.on_progress = lambda done, total: setattr(self.progress, "value", done)
        run.on_finished = self._finished
        if run.worker is None:  # ran synchronously
            self._finished(run.done)

    def _set_running(self, running: bool) -> None:
        """Cancel while a run goes on; the buttons that start one (Propagate, Fill, Continue) otherwise."""
        self.cancel_button.enabled = running
        for button in (self.run_button, self.fill_button, self.continue_button):
            button.enabled = not running

    def _finished(self, done: int) -> None:
        self._set_running(False)
        self.progress.visible = False
        self._run = None

    def cancel(self, *args: Any) -> None:
        if self._run is not None:
            self._run.cancel()


MIN_OBJECTS_TO_ADAPT = 10


class AdaptPanel(Container):
    """Adapt the model to the user's committed objects in the background; keep it only if it measured better.

    The committed labels of the annotated images (every slice that has committed objects) are the
    training data; :func:`napari_fcfi.training.adaptation.adapt_with_check` holds part of them back
    and compares the robot user's clicks there, base vs adapted. Annotation goes on with the current
    model meanwhile. The adapted model lives in the viewer's model cache under its own name; "Revert"
    goes back to the base model (never changed on disk); "Save adapted…" writes it with a model card.
    """

    def __init__(self, owner: HostOwner) -> None:
        from magicgui.widgets import FileEdit, Label

        self.owner = owner
        self.minutes = SpinBox(
            label="Adapt for (min)",
            min=1,
            max=120,
            value=3,
            tooltip="Time budget of the adaptation in minutes (the check comes on top)",
        )
        self.adapt_button = PushButton(
            text="Adapt model",
            tooltip=f"Fine-tune the model on your committed objects (at least {MIN_OBJECTS_TO_ADAPT})",
        )
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.revert_button = PushButton(
            text="Revert", enabled=False, tooltip="Back to the model before adapting"
        )
        self.progress = ProgressBar(label="", min=0, max=100, value=0, visible=False)
        self.result = Label(value="")
        wrap_text(self.result)  # the verdict says what was measured and what to do
        self.save_file = FileEdit(
            label="Save adapted to",
            mode=FileDialogMode.OPTIONAL_FILE,
            filter="Weights (*.safetensors)",
            tooltip="Where 'Save adapted model' writes the adapted weights (a new file)",
        )
        self.save_button = PushButton(
            text="Save adapted model",
            enabled=False,
            tooltip="safetensors plus a Markdown model card beside it",
        )
        super().__init__(
            widgets=[
                self.minutes,
                Container(
                    widgets=[self.adapt_button, self.cancel_button, self.revert_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.progress,
                self.result,
                self.save_file,
                self.save_button,
            ],
            labels=True,
        )
        self.adapt_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.revert_button.changed.connect(self.revert)
        self.save_button.changed.connect(lambda: self.save(self.save_file.value))
        self._run: BackgroundRun | None = None
        self.base_source: str | None = None
        self.adapted: Any = None

    # ------------------------------------------------------------------ data
    def training_data(self) -> tuple[list[Any], list[Any], int]:
        """(images, labels, objects): every slice of every annotated image with committed objects."""
        return committed_training_data(self.owner.controller.images.values())

    # ------------------------------------------------------------------ actions
    def start(self, *args: Any, threaded: bool = True) -> BackgroundRun | None:
        """Adapt in a napari worker thread (progress, Cancel); returns the run (None: refused, the
        result line says why)."""
        if self._run is not None:
            return None  # the button is disabled while a run goes on
        controller = self.owner.controller
        images, labels, objects = self.training_data()
        if objects < MIN_OBJECTS_TO_ADAPT:
            self.result.value = f"commit at least {MIN_OBJECTS_TO_ADAPT} objects first ({objects} so far)"
            return None
        settings = controller.settings
        base_source = self.base_source or settings.model_source
        try:
            base = controller.model_cache.get(base_source, settings.device)
        except Exception as error:  # noqa: BLE001 - shown to the user
            self.result.value = f"cannot load the model to adapt: {error}"
            return None
        from napari_fcfi.training import adaptation

        budget = 60.0 * float(self.minutes.value)
        threads = settings.cpu_threads
        run = self._run = BackgroundRun()
        controller.background_runs.add(run)  # closing the viewer or dock detaches it

        def adapt(report: Any) -> Any:
            if threads and settings.device.startswith("cpu"):
                import torch

                torch.set_num_threads(threads)
            return adaptation.adapt_with_check(base, images, labels, time_budget_s=budget, progress=report)

        def on_item(item: tuple[str, Any, Any]) -> None:
            kind, value, _ = item
            if kind == "progress":
                self.progress.value = int(round(100 * value))
            else:
                self._finished(run, base_source, value)

        def on_done(*_: Any) -> None:
            self._end(run)  # after the result nothing is left to do

        self.progress.value, self.progress.visible = 0, True
        self.adapt_button.enabled, self.cancel_button.enabled = False, True
        self.result.value = f"adapting on {objects} objects in {len(images)} image(s)/slice(s)…"

        run.worker = run_generator(
            lambda: callback_steps(adapt, lambda: run.cancelled),
            on_item,
            on_done,
            lambda error: self._failed(run, error),
            threaded,
            run=run,
        )
        return run

    @property
    def running(self) -> bool:
        return self._run is not None

    def _end(self, run: BackgroundRun) -> bool:
        """The run is over: buttons back; False when it was over already."""
        if self._run is not run:
            return False
        self._run = None
        self.progress.visible = False
        self.adapt_button.enabled, self.cancel_button.enabled = True, False
        return True

    def _finished(self, run: BackgroundRun, base_source: str, result: Any) -> None:
        adapted, check = result
        controller = self.owner.controller
        self._end(run)
        if check.cancelled or run.cancelled:
            self.result.value = "adaptation cancelled: nothing was measured; the current model stays"
            return
        before, after = check.base_clicks, check.adapted_clicks
        summary = (
            f"{after:.2f} clicks per held-back object (NoC@85+90) adapted vs {before:.2f} before "
            f"({check.change_percent:+.0f} %). {getattr(check, 'advice', '')}"
        )
        if not check.keep:
            self.result.value = f"kept the current model: {summary}"
            return
        self.base_source, self.adapted = base_source, adapted
        name = f"adapted from {base_source}"
        controller.model_cache.put(name, controller.settings.device, adapted)
        controller.update(model_source=name)
        self.revert_button.enabled = self.save_button.enabled = True
        self.result.value = f"now using the adapted model: {summary}"

    def _failed(self, run: BackgroundRun, error: Exception) -> None:
        if self._end(run):
            self.result.value = f"adaptation failed: {error}"

    def cancel(self, *args: Any) -> None:
        if self._run is not None:
            self._run.cancel()

    def revert(self, *args: Any) -> None:
        if self.base_source is not None:
            self.owner.controller.update(model_source=self.base_source)
            self.revert_button.enabled = False
            self.result.value = f"back to {self.base_source} (the adapted model can still be saved)"

    def save(self, path: Any) -> Any:
        from pathlib import Path

        from napari_fcfi.training.finetune import save_adapted

        if self.adapted is None:
            self.result.value = "no adapted model to save"
            return None
        if not str(path) or Path(path).is_dir():
            self.result.value = "choose a file name for the adapted model"
            return None
        try:
            written = save_adapted(self.adapted, path)
        except (OSError, ValueError) as error:
            self.result.value = f"adapted model not saved: {error}"
            return None
        self.result.value = f"adapted model saved to {written} (model card beside it)"
        return written


def wrap_text(label: Any) -> None:
    """Let a magicgui Label wrap its text to the dock's width instead of widening the dock."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setMinimumWidth(40)  # else Qt widens a long wrapped text to a pleasing block shape
