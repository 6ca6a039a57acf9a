"""The FCFI dock widget: a magicgui container around a :class:`~.controller.SegmentationController`.

All behaviour lives in the controller (and its helpers); this module only builds the form, mirrors
the controller's state (what the widget acts on: image, labels layer, object in progress, model and
device) and forwards the user's choices. The image menu is a magicgui widget annotated with
``napari.layers.Image``, so napari keeps its choices in step with the viewer; the labels menu lists the
labels layers that fit the chosen image and says in its tooltip which ones it leaves out and why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)

from napari_fcfi.annotation.geometry import describe_slices
from napari_fcfi.annotation.labels_tiff import FCFI_SUFFIX
from napari_fcfi.model.device import available_devices

from . import layers as helpers
from .channels import channel_choices, guess_channels, image_notes
from .controller import SHORTCUTS, AnnotationSettings, SegmentationController
from .dock_window import compact_menus, keep_keys_for_the_canvas, watch_closing
from .io import default_labels_path, save_labels_layer
from .label_id_box import LABEL_ID_TIP, show_label_id
from .models import DEFAULT_MODEL, ModelCache, available_model_names, cache_for_viewer
from .panels import AdaptPanel, PropagatePanel, wrap_text
from .recovery_banner import RecoveryBanner
from .saving import save_click_log
from .segment_all_panel import ROLE as PROPOSALS_ROLE
from .segment_all_panel import SegmentAllPanel
from .worker import ImmediateRunner, ThreadedRunner

WEIGHTS_FILE = "weights file…"


class FCFIWidget(Container):
    """FCFI interactive segmentation dock widget (see the module docstring)."""

    def __init__(
        self,
        napari_viewer: Any,
        model_cache: ModelCache | None = None,
        segmenter_factory: Any = None,
        runner: ThreadedRunner | ImmediateRunner | None = None,
        journal_root: str | Path | None = None,
    ) -> None:
        # The form scrolls: napari docks ``.native`` (the layout's widget, not a magicgui scroll area), so
        # the dock holds this plain container and the form's scroll area is put into its layout.
        super().__init__(labels=False)
        self.form: Container = Container(labels=True, scrollable=True)
        self.native.layout().setContentsMargins(0, 0, 0, 0)
        self.native.layout().addWidget(self.form.root_native_widget)
        self.viewer = napari_viewer
        self.controller = SegmentationController(
            napari_viewer,
            model_cache if model_cache is not None else cache_for_viewer(napari_viewer),
            segmenter_factory=segmenter_factory,
            runner=runner,
            journal_root=journal_root,
        )
        self._syncing = False
        self._label_id_warned = False
        self._build()
        self._connect()
        self.controller.on_status = self._show_status
        self.controller.on_busy = self._show_busy
        self.controller.on_change = self._sync_from_controller
        self.controller.on_history = self.segment_all_panel.history.on_labels_history
        watch_closing(self)
        compact_menus(self.native)
        keep_keys_for_the_canvas(self.native)
        # magicgui fixed the scroll area's minimum width at each insert, from the menus' widths then
        # (a long image name made it wider than the dock): set it again from the compact form.
        scroll = self.form.root_native_widget
        scroll.setMinimumWidth(min(scroll.widget().layout().totalMinimumSize().width() + 20, 440))
        self.max_width = 460  # a form, not a canvas: leave the viewer its room
        napari_viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.reset_choices()
        self._on_image_choice()

    def reset_choices(self, *args: Any) -> None:
        """Refresh the menus (napari calls this when layers change); they live in the scrolling form."""
        super().reset_choices()
        if hasattr(self, "form"):
            self.form.reset_choices()

    # ------------------------------------------------------------------ form
    def _build(self) -> None:
        settings = self.controller.settings
        self.image_menu = cast(
            ComboBox,
            create_widget(
                annotation=_image_type(), label="Image", options={"tooltip": "Image layer to annotate"}
            ),
        )
        self.channel_menu = ComboBox(
            label="Channel", choices=self._channel_choices, tooltip="Which channel(s) the network sees"
        )
        self.labels_menu = ComboBox(
            label="Labels",
            choices=self._labels_choices,
            nullable=True,
            tooltip="Labels layer that Commit writes into",
        )
        self._session_models: list[str] = []  # models made in this session (adapted), offered in the menu
        self.model_menu = ComboBox(
            label="Model",
            choices=self._model_choices,
            value=DEFAULT_MODEL,
            tooltip="'default' = bundled weights, an official model, or a file",
        )
        self.weights_file = FileEdit(
            label="Weights",
            mode=FileDialogMode.EXISTING_FILE,
            filter="Weights (*.safetensors *.pth *.pt)",
            visible=False,
        )
        self.device_menu = ComboBox(
            label="Device", choices=available_devices(), value="cpu", tooltip="Device that runs the network"
        )
        self.threads = SpinBox(
            label="CPU threads",
            min=1,
            max=max(1, os.cpu_count() or 1),
            value=settings.cpu_threads or 1,
            tooltip="torch threads for CPU inference; fewer than the cores keeps napari responsive",
        )
        self.threshold = FloatSpinBox(
            label="Threshold",
            min=0.01,
            max=0.99,
            step=0.05,
            value=settings.threshold,
            tooltip="Probability threshold of the object mask (applied without rerunning)",
        )
        self.label_id = SpinBox(
            label="Label id",
            min=1,
            max=2**31 - 1,
            value=1,
            tooltip=LABEL_ID_TIP,
        )
        self.edit_button = PushButton(
            text="Edit this label",
            tooltip="Edit this existing label on the slice on screen (or Shift+click it)",
        )
        self.overwrite = CheckBox(
            text="paint over existing labels",
            value=settings.overwrite,
            tooltip="Off: commits paint only background, other labels are never overwritten",
        )
        self.annotate = CheckBox(
            text="annotation mode",
            value=settings.annotating,
            tooltip="Left click: positive · right click or Ctrl+left: negative · "
            "Shift+left: edit the label under the cursor · drag: pan",
        )
        tips = {
            "commit": "Write the object into the labels layer",
            "undo": "Take back the last click, propagation, fill, reset or edit",
            "redo": "Do the last undone change again",
            "reset": "Forget the object in progress (a corrected propagated slice: only its corrections)",
        }
        self.buttons = {
            action: PushButton(text=text, tooltip=f"{tips[action]} ({SHORTCUTS[action][1]})")
            for action, text in (
                ("commit", "Commit"),
                ("undo", "Undo"),
                ("redo", "Redo"),
                ("reset", "Reset object"),
            )
        }
        button_row = Container(widgets=list(self.buttons.values()), layout="horizontal", labels=False)
        self.propagate_panel = PropagatePanel(self)
        self.adapt_panel = AdaptPanel(self)
        self.segment_all_panel = SegmentAllPanel(self)
        self.log_file = FileEdit(
            label="Click log", mode=FileDialogMode.OPTIONAL_FILE, filter="Click log (*.csv)"
        )
        self.save_log_button = PushButton(
            text="Save click log",
            tooltip="All committed objects' steps, model and settings (CSV replayable by fcfi segment)",
        )
        self.recovery = RecoveryBanner(self.controller)  # "Unsaved work found", at the top
        self.restore_button, self.discard_button = self.recovery.restore_button, self.recovery.discard_button
        self.recovery_label = self.recovery.details
        self.busy = ProgressBar(label="", min=0, max=0, visible=False, tooltip="A prediction is running")
        self.object_info = Label(label="Object", value="")
        self.model_info = Label(label="Runs", value="")
        self.status = Label(label="", value="")
        for line in (self.object_info, self.model_info, self.status):
            wrap_text(line)  # long messages wrap instead of widening or clipping the dock
        self.form.extend(
            [
                self.recovery,
                self.image_menu,
                self.channel_menu,
                self.labels_menu,
                self.model_menu,
                self.weights_file,
                self.device_menu,
                self.threads,
                self.threshold,
                self.label_id,
                self.edit_button,
                self.overwrite,
                self.annotate,
                button_row,
                self.segment_all_panel,
                self.propagate_panel,
                self.adapt_panel,
                self.log_file,
                self.save_log_button,
                self.object_info,
                self.model_info,
            ]
        )
        self._build_save_labels()
        # Below the scrolling form, always in view: what a run did or why it stopped must not be
        # scrolled away (napari's status bar shows it too, until the mouse moves).
        for pinned in (self.busy, self.status):
            self.native.layout().addWidget(pinned.native)

    def _build_save_labels(self) -> None:
        self._offered_labels_file: Path | None = None  # what the field shows unless the user typed a path
        self.labels_file = FileEdit(
            label="Labels file",
            mode=FileDialogMode.OPTIONAL_FILE,
            filter=f"FCFI labels (*{FCFI_SUFFIX})",
            tooltip="Where Save labels writes (default: beside the image file)",
        )
        self.save_labels_button = PushButton(
            text="Save labels",
            tooltip="Write the labels layer to the labels file "
            "(type, scale, translate kept; .fcfi, a TIFF) and clear the journal",
        )
        at = self.form.index(self.log_file)
        self.form.insert(at, self.save_labels_button)
        self.form.insert(at, self.labels_file)

    def _connect(self) -> None:
        controller = self.controller
        self.image_menu.changed.connect(self._on_image_choice)
        self.channel_menu.changed.connect(self._on_channel_choice)
        self.labels_menu.changed.connect(self._on_labels_choice)
        self.model_menu.changed.connect(self._on_model_choice)
        self.weights_file.changed.connect(self._on_model_choice)
        self.device_menu.changed.connect(self._on_model_choice)
        self.threads.changed.connect(lambda n: controller.update(cpu_threads=int(n)))
        self.threshold.changed.connect(self._on_threshold)
        self.label_id.changed.connect(self._on_label_id)
        self.edit_button.changed.connect(lambda: controller.select_label(int(self.label_id.value)))
        self.overwrite.changed.connect(lambda on: controller.update(overwrite=bool(on)))
        self.annotate.changed.connect(self._on_annotate)
        for action, method in (
            ("commit", controller.commit),
            ("undo", controller.undo),
            ("redo", controller.redo),
            ("reset", controller.reset_object),
        ):
            self.buttons[action].changed.connect(lambda *_, m=method: m())
        self.save_log_button.changed.connect(lambda: self.save_click_log(_chosen_file(self.log_file)))
        self.labels_menu.changed.connect(self._suggest_labels_file)  # after the controller took the choice
        self.save_labels_button.changed.connect(lambda: self.save_labels(self._typed_labels_file()))

    # ------------------------------------------------------------------ choices
    def _channel_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        layer = self.image_menu.value if hasattr(self, "image_menu") else None
        return channel_choices(layer) or [("grayscale", (None, None))]

    def _model_choices(self, widget: Any = None) -> list[str]:
        return available_model_names() + getattr(self, "_session_models", []) + [WEIGHTS_FILE]

    def _labels_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        choices: list[tuple[str, Any]] = []
        left_out = []
        for layer in self.viewer.layers:
            if not isinstance(layer, Labels) or helpers.is_helper(layer):
                continue
            problem = self.controller.labels_problem(layer)
            if problem is None:
                choices.append((layer.name, layer))
            else:
                left_out.append(f"{layer.name!r}: {problem}")
        tip = "Labels layer that Commit writes into; empty: the image's own labels layer (created on the first commit)"
        if left_out:
            tip += "\nNot listed because they do not fit the image:\n" + "\n".join(left_out)
        if hasattr(self, "labels_menu"):
            self.labels_menu.tooltip = tip
        return choices

    def _on_image_choice(self, *args: Any) -> None:
        if self._syncing:
            return
        layer = self.image_menu.value
        if layer is None or layer is self.controller.image_layer:
            return
        channels, reason = guess_channels(layer)
        self._syncing = True
        try:
            self.channel_menu.reset_choices()
            self.channel_menu.value = channels
        finally:
            self._syncing = False
        self._apply_image(layer, *channels, why=reason)

    def _on_channel_choice(self, value: Any = None) -> None:
        if self._syncing or self.controller.image_layer is None or value is None:
            return
        self._apply_image(self.controller.image_layer, *value)

    def _apply_image(self, layer: Any, channel_axis: int | None, channel: int | None, why: str = "") -> None:
        controller = self.controller
        labels_before = controller.labels_layer if controller.image_layer is layer else None
        try:
            controller.set_image_layer(layer, channel_axis=channel_axis, channel=channel)
        except ValueError as error:
            self._show_status(f"FCFI: {error}")
            return
        geometry = controller.geometry
        self.propagate_panel.refresh_axes(len(geometry.slice_shape) if geometry is not None else 0)
        if channel_axis is not None and channel is not None:  # show the channel the network reads
            world_axis = self.viewer.dims.ndim - layer.ndim + channel_axis
            self.viewer.dims.set_point(
                world_axis, layer.translate[channel_axis] + channel * layer.scale[channel_axis]
            )
        seen = image_notes(layer, channel_axis, why)
        if labels_before is not None and controller.labels_layer is None:  # a new label grid
            seen += (
                f"; {labels_before.name!r} does not fit the image read this way, so the next commit "
                "creates a new labels layer (choose the former Channel to go on in it)"
            )
        self._show_status(
            f"FCFI: annotating {layer.name!r}{seen}; left click = positive, right click = negative"
        )
        self._sync_from_controller()

    def _on_labels_choice(self, layer: Any = None) -> None:
        if self._syncing:
            return
        try:
            self.controller.set_labels_layer(layer)
        except ValueError as error:
            self._show_status(f"FCFI: {error}")

    def _on_model_choice(self, *args: Any) -> None:
        if self._syncing:
            return
        choice = self.model_menu.value
        self.weights_file.visible = choice == WEIGHTS_FILE
        source = str(self.weights_file.value) if choice == WEIGHTS_FILE else choice
        if choice == WEIGHTS_FILE and not Path(source).is_file():
            self._show_status("FCFI: choose a weights file (.safetensors or official .pth)")
            return
        self.controller.update(model_source=source, device=str(self.device_menu.value))
        self._show_status(f"FCFI: model {source!r} on {self.device_menu.value}")

    def _on_threshold(self, value: float) -> None:
        try:
            self.controller.update(threshold=float(value))
        except ValueError as error:
            self._show_status(f"FCFI: {error}")

    def _on_label_id(self, value: int) -> None:
        if self._syncing:
            return
        saved = self.controller.settings.label_id
        self.controller.update(label_id=None)
        automatic = self.controller.next_label_id()
        self.controller.update(label_id=None if int(value) == automatic else int(value))
        del saved
        problem = self.controller.label_id_problem()
        if problem is not None:
            self._show_status(f"FCFI: {problem}")  # warned now; a commit with it is refused
            self._label_id_warned = True
        elif self._label_id_warned:  # typing "12" passes "1": its warning must not outlive it
            self._label_id_warned = False
            self._show_status(f"FCFI: the next object gets label id {int(value)}")

    def _on_annotate(self, on: bool) -> None:
        self.controller.update(annotating=bool(on))
        if on and self.controller.points_layer is not None:
            self.viewer.layers.selection.active = self.controller.points_layer
            self.controller.points_layer.mode = "pan_zoom"

    # ------------------------------------------------------------------ mirroring the controller
    def _sync_from_controller(self, what: str = "all") -> None:
        """Show what the widget acts on; called by the controller after every change.

        ``"object"`` changes (a click, a prediction, another slice) only touch the object line: they
        come with every click, so they must cost almost nothing on napari's main thread.
        """
        if what == "object":
            self._show_object()
            return
        controller = self.controller
        self._syncing = True
        try:
            self.labels_menu.reset_choices()
            labels = controller.labels_layer
            if labels is not None and labels in [c for _, c in self._labels_choices()]:
                self.labels_menu.value = labels
            else:
                self.labels_menu.value = None
            message = show_label_id(self.label_id, labels, controller.next_label_id())
            if message is not None:  # the layer became full, or no longer is: say so
                self._show_status(message)
            if self._typed_labels_file() is None:  # the offer follows a File > Save (napari tells nobody)
                self._suggest_labels_file()
        finally:
            self._syncing = False
        self.segment_all_panel.follow_commits()
        self._show_object()
        settings: AnnotationSettings = controller.settings
        self.model_info.value = f"{Path(settings.model_source).name} on {settings.device}"
        self.recovery.refresh()
        self._show_model(settings.model_source)

    def _show_object(self) -> None:
        controller = self.controller
        labels = controller.labels_layer
        obj = controller.current_object(create=False)
        if controller.state is None:
            self.object_info.value = "choose an image"
        else:
            key = controller.current_key()
            where = "" if not key else f" on {describe_slices([key])}"
            members = len(controller.state.objects.members(key)) if key is not None else 1
            clicks = 0 if obj is None else len(obj.clicks)
            extra = f", spans {members} slices" if members > 1 else ""
            editing = f", editing label {obj.edit_label}" if obj is not None and obj.edit_label else ""
            if obj is not None and obj.from_segment_all and not editing:
                editing = ", from a proposal"
            image_name = getattr(controller.image_layer, "name", "image")
            target = labels.name if labels is not None else f"{image_name} labels (new)"
            self.object_info.value = f"{clicks} click(s){where}{extra}{editing} → {target}"

    def _show_model(self, source: str) -> None:
        """The Model menu names the model in use (an adapted model gets its own entry)."""
        menu = self.model_menu
        if menu.value == source or (menu.value == WEIGHTS_FILE and str(self.weights_file.value) == source):
            return
        self._syncing = True
        try:
            if Path(source).is_file():
                menu.value = WEIGHTS_FILE
                self.weights_file.value = Path(source)
                self.weights_file.visible = True
            else:
                if source not in menu.choices:  # a model made in this session (adapted), kept in the cache
                    self._session_models.append(source)
                    menu.reset_choices()
                menu.value = source
                self.weights_file.visible = False
        finally:
            self._syncing = False

    def _on_active_layer(self, event: Any = None) -> None:
        """Clicks reach FCFI only on the image and its clicks layer: say so when another layer is selected."""
        if self._typed_labels_file() is None:  # (a File > Save of the labels may have come first)
            self._suggest_labels_file()
        state, active = self.controller.state, self.viewer.layers.selection.active
        if state is None or active is None or not self.controller.settings.annotating:
            return
        if helpers.same_layer(active, state.layer) or helpers.same_layer(active, state.clicks_layer):
            # (napari may hand the widget proxies of the layers: compared by identity, not `is`)
            if (
                "so clicks on the canvas go to it" in self.status.value
                or "select proposals" in self.status.value
            ):
                self.controller.show_status(  # the warning is not true any more
                    f"FCFI: annotating {state.layer.name!r} again; left click = positive, right click = negative"
                )
            return
        if helpers.role_of(active) == (PROPOSALS_ROLE, state.image_id):  # selected by Segment all
            self.controller.show_status(
                "FCFI: clicks on the canvas select proposals (then A accept, D delete, C correct); "
                f"select {state.clicks_layer.name!r} to annotate with clicks"
            )
            return
        self.controller.show_status(
            f"FCFI: {active.name!r} is selected, so clicks on the canvas go to it, not to FCFI; "
            f"select {state.clicks_layer.name!r} or {state.layer.name!r} to annotate"
        )

    def _show_status(self, message: str) -> None:
        self.status.value = message

    def _show_busy(self, busy: bool) -> None:
        self.busy.visible = bool(busy)

    # ------------------------------------------------------------------ saving and recovery
    def save_click_log(self, path: str | Path | None) -> Path | None:
        """Save the click log of the current labels layer (CSV replayable by ``fcfi segment``)."""
        written, message = save_click_log(self.controller, path)
        self._show_status(message)
        return written

    def save_labels(self, path: str | Path | None = None) -> Path | None:
        """Save the labels layer Commit writes into as FCFI labels (``path``, default: ``default_labels_path``)."""
        labels = self.controller.labels_layer
        if labels is None:
            self._show_status("FCFI: no labels to save yet; commit an object first")
            return None
        if path is None or str(path) in ("", ".") or Path(path).is_dir():
            path = default_labels_path(labels, self.controller.image_layer)
        try:
            written = save_labels_layer(labels, path)
        except (OSError, ValueError) as error:
            self._show_status(f"FCFI: labels not saved: {error}")
            return None
        self.labels_file.value = written
        self._offered_labels_file = _chosen_file(self.labels_file)  # as the field holds it (absolute)
        # napari's status bar too: it is wide enough for the whole path
        self.controller.show_status(
            f"FCFI: saved {labels.name!r} ({labels.data.dtype}) to {written}; journal cleared"
        )
        return written

    def _suggest_labels_file(self, *args: Any) -> None:
        labels = self.controller.labels_layer  # never leave another layer's file here
        if labels is None:
            self.labels_file.line_edit.value = ""  # FileEdit's own value cannot be empty
            self._offered_labels_file = None
        else:
            self.labels_file.value = Path(default_labels_path(labels, self.controller.image_layer))
            self._offered_labels_file = _chosen_file(self.labels_file)  # as the field holds it (absolute)

    def _typed_labels_file(self) -> Path | None:
        """The field's path when the user typed one; None while it holds the widget's own offer, so that
        Save labels follows a later File > Save of the layer instead of writing a second file."""
        chosen = _chosen_file(self.labels_file)
        return None if chosen == self._offered_labels_file else chosen

    def close_controller(self) -> None:
        """Detach from the viewer (the dock was closed); helper layers with clicks stay."""
        self.propagate_panel.cancel()
        self.adapt_panel.cancel()
        self.segment_all_panel.cancel()
        self.viewer.layers.selection.events.active.disconnect(self._on_active_layer)
        self.controller.close()


def _image_type() -> type:
    from napari.layers import Image

    return Image


__all__ = ["FCFIWidget", "channel_choices"]


def _chosen_file(edit: FileEdit) -> Path | None:
    """The one path a file field holds (None when empty)."""
    value = edit.value
    if isinstance(value, tuple):
        value = value[0] if value else None
    return None if value is None or str(value) in ("", ".") else Path(value)
