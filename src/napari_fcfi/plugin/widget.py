"""The dock widget: choices and buttons around a :class:`SegmentationController`.

All behaviour lives in the controller; this module only builds the Qt form, keeps the layer
menus in sync with the viewer, binds the keyboard shortcuts on the annotated layers and shows
busy/status/errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fcfi.plugin.controller import SegmentationController, SegmenterFactory
from napari_fcfi.plugin.models import (
    DEFAULT_MODEL,
    ModelCache,
    available_devices,
    available_model_names,
    cache_for_viewer,
)
from napari_fcfi.plugin.worker import ImmediateRunner, ThreadedRunner

NEW_LABELS = "<new labels layer>"

# action name -> (napari key, text shown in tooltips); the README lists the same keys.
SHORTCUTS = {
    "commit": ("Space", "Space"),
    "undo": ("Control-Z", "Ctrl+Z"),
    "redo": ("Control-Shift-Z", "Ctrl+Shift+Z"),
    "reset": ("Escape", "Esc"),
}


def channel_choices(layer: Any) -> list[tuple[str, tuple[int | None, int | None]]]:
    """Menu entries ``(text, (channel_axis, channel))`` that make sense for an image layer."""
    if layer is None:
        return []
    if getattr(layer, "rgb", False):
        n = layer.data[0].shape[-1] if getattr(layer, "multiscale", False) else layer.data.shape[-1]
        return [("RGB composite", (None, None))] + [(f"channel {c}", (None, c)) for c in range(min(n, 3))]
    entries: list[tuple[str, tuple[int | None, int | None]]] = [("grayscale", (None, None))]
    shape = layer.data[0].shape if getattr(layer, "multiscale", False) else layer.data.shape
    if len(shape) >= 3 and 2 <= shape[0] <= 8:
        entries.append((f"axis 0 = {shape[0]} channels, composite", (0, None)))
        entries += [(f"axis 0 = channels, channel {c}", (0, c)) for c in range(shape[0])]
    return entries


class FCFIWidget(QWidget):
    """FCFI interactive segmentation dock widget.

    ``model_cache`` defaults to the cache shared by all widgets of the viewer;
    ``segmenter_factory`` and ``runner`` exist for tests and scripts (see the controller).
    """

    def __init__(
        self,
        napari_viewer: Any,
        model_cache: ModelCache | None = None,
        segmenter_factory: SegmenterFactory | None = None,
        runner: ThreadedRunner | ImmediateRunner | None = None,
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller = SegmentationController(
            napari_viewer,
            model_cache if model_cache is not None else cache_for_viewer(napari_viewer),
            segmenter_factory=segmenter_factory,
            runner=runner,
        )
        self.controller.on_status = self._show_status
        self.controller.on_busy = self._show_busy
        self.controller.on_label_id = self._show_label_id
        self._bound_layers: list[Any] = []
        self._syncing = False
        self._build()
        self._connect()
        self._refresh_layer_menus()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        form = QFormLayout()
        self.image_combo = QComboBox(
            toolTip="Image layer to annotate (2D, 3D or 4D; grayscale, RGB or channels)"
        )
        self.channel_combo = QComboBox(toolTip="Which channel(s) the network sees")
        self.labels_combo = QComboBox(
            toolTip="Labels layer that Commit writes into (created aligned with the image)"
        )
        self.model_combo = QComboBox(editable=True)
        self.model_combo.addItems(available_model_names())
        self.model_combo.setToolTip(
            "'default' = bundled weights, an official name (fcfi models), or a file path"
        )
        self.browse_button = QPushButton("…", toolTip="Choose a weights file (.safetensors or official .pth)")
        self.browse_button.setMaximumWidth(30)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.browse_button)
        self.device_combo = QComboBox(toolTip="Device that runs the network")
        self.device_combo.addItems(available_devices())
        self.threads_spin = QSpinBox(minimum=1, maximum=max(1, os.cpu_count() or 1))
        self.threads_spin.setValue(self.controller.cpu_threads or 1)
        self.threads_spin.setToolTip(
            "torch threads for CPU inference (whole process); fewer than the cores keeps napari responsive"
        )
        self.threshold_spin = QDoubleSpinBox(minimum=0.01, maximum=0.99, singleStep=0.05, decimals=2)
        self.threshold_spin.setValue(self.controller.threshold)
        self.threshold_spin.setToolTip("Probability threshold of the object mask")
        self.label_spin = QSpinBox(minimum=1, maximum=2**31 - 1)
        self.label_spin.setToolTip("Label id of the next committed object (defaults to the next free id)")
        self.edit_button = QPushButton(
            "Edit", toolTip="Edit this existing label on the slice on screen (or Shift+click it)"
        )
        label_row = QHBoxLayout()
        label_row.addWidget(self.label_spin, 1)
        label_row.addWidget(self.edit_button)
        self.overwrite_check = QCheckBox("paint over existing labels")
        self.overwrite_check.setToolTip(
            "Off: commits paint only background, other labels are never overwritten"
        )
        self.annotate_check = QCheckBox("annotation mode", checked=True)
        self.annotate_check.setToolTip(
            "Left click: positive click · right click or Ctrl+left: negative · Shift+left: edit label under "
            "the cursor · drag: pan"
        )
        form.addRow("Image", self.image_combo)
        form.addRow("Channel", self.channel_combo)
        form.addRow("Labels", self.labels_combo)
        form.addRow("Model", model_row)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device_combo, 1)
        device_row.addWidget(QLabel("threads"))
        device_row.addWidget(self.threads_spin)
        form.addRow("Device", device_row)
        form.addRow("Threshold", self.threshold_spin)
        form.addRow("Label id", label_row)
        form.addRow("", self.overwrite_check)
        form.addRow("", self.annotate_check)

        buttons = QGridLayout()
        self.commit_button = QPushButton("Commit")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.reset_button = QPushButton("Reset object")
        tips = {
            "commit": (self.commit_button, "Write the object into the labels layer"),
            "undo": (self.undo_button, "Remove the last click of this slice"),
            "redo": (self.redo_button, "Restore the last undone click"),
            "reset": (self.reset_button, "Forget the object in progress on this slice"),
        }
        for action, (button, text) in tips.items():
            button.setToolTip(f"{text} ({SHORTCUTS[action][1]})")
        self.save_button = QPushButton("Save click log…")
        self.save_button.setToolTip(
            "Save all committed objects' clicks, model and settings (CSV replayable by fcfi segment)"
        )
        for i, button in enumerate(
            (self.commit_button, self.undo_button, self.redo_button, self.reset_button)
        ):
            buttons.addWidget(button, i // 2, i % 2)
        buttons.addWidget(self.save_button, 2, 0, 1, 2)

        self.busy_bar = QProgressBar(minimum=0, maximum=0, textVisible=False, maximumHeight=6)
        self.busy_bar.setVisible(False)
        self.busy_bar.setToolTip("A prediction is running")
        self.status_label = QLabel(wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.busy_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.image_combo.currentIndexChanged.connect(self._on_image_choice)
        self.channel_combo.currentIndexChanged.connect(self._on_channel_choice)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_choice)
        self.model_combo.activated.connect(self._on_model_choice)
        self.model_combo.lineEdit().editingFinished.connect(self._on_model_choice)
        self.device_combo.currentIndexChanged.connect(self._on_model_choice)
        self.threads_spin.valueChanged.connect(lambda n: setattr(self.controller, "cpu_threads", int(n)))
        self.browse_button.clicked.connect(self._browse_model)
        self.threshold_spin.valueChanged.connect(self.controller.set_threshold)
        self.label_spin.valueChanged.connect(self._on_label_spin)
        self.edit_button.clicked.connect(lambda: self.controller.select_label(self.label_spin.value()))
        self.overwrite_check.toggled.connect(lambda on: setattr(self.controller, "overwrite", bool(on)))
        self.annotate_check.toggled.connect(self._on_annotate)
        self.commit_button.clicked.connect(self.controller.commit)
        self.undo_button.clicked.connect(self.controller.undo)
        self.redo_button.clicked.connect(self.controller.redo)
        self.reset_button.clicked.connect(self.controller.reset_object)
        self.save_button.clicked.connect(self._ask_save_click_log)
        self.viewer.layers.events.inserted.connect(self._refresh_layer_menus)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.layers.events.reordered.connect(self._refresh_layer_menus)

    # ------------------------------------------------------------------ layer menus
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _labels_layers(self) -> list[Any]:
        from napari.layers import Labels

        geometry = self.controller.geometry
        helpers = (self.controller.preview_layer,)
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Labels)
            and layer not in helpers
            and (geometry is None or tuple(layer.data.shape) == geometry.label_shape)
        ]

    def _refresh_layer_menus(self, event: Any = None) -> None:
        self._syncing = True
        try:
            current_image = self.controller.image_layer
            images = self._image_layers()
            self.image_combo.clear()
            for layer in images:
                self.image_combo.addItem(layer.name, layer)
            if current_image in images:
                self.image_combo.setCurrentIndex(images.index(current_image))
            self._refresh_labels_menu()
        finally:
            self._syncing = False
        if self.controller.image_layer is None and images:
            self._on_image_choice()

    def _refresh_labels_menu(self) -> None:
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItem(NEW_LABELS, None)
        for layer in self._labels_layers():
            self.labels_combo.addItem(layer.name, layer)
        if self.controller.labels_layer is not None:
            index = self.labels_combo.findData(self.controller.labels_layer)
            self.labels_combo.setCurrentIndex(max(index, 0))
        self.labels_combo.blockSignals(False)

    def _on_layer_removed(self, event: Any) -> None:
        removed = event.value
        if removed is self.controller.labels_layer:
            self.controller.set_labels_layer(None)
        if removed is not None and removed is not self.controller.points_layer:
            self.controller.drop_image_layer(removed)
        self._bound_layers = [layer for layer in self._bound_layers if layer is not removed]
        self._refresh_layer_menus()

    def _on_image_choice(self, index: int | None = None) -> None:
        if self._syncing:
            return
        layer = self.image_combo.currentData()
        if layer is None or layer is self.controller.image_layer:
            return
        self.channel_combo.blockSignals(True)
        self.channel_combo.clear()
        for text, value in channel_choices(layer):
            self.channel_combo.addItem(text, value)
        self.channel_combo.blockSignals(False)
        self._apply_image(layer, None, None)

    def _on_channel_choice(self, index: int = 0) -> None:
        value = self.channel_combo.currentData()
        if value is not None and self.controller.image_layer is not None:
            self._apply_image(self.controller.image_layer, *value)

    def _apply_image(self, layer: Any, channel_axis: int | None, channel: int | None) -> None:
        try:
            self.controller.set_image_layer(layer, channel_axis=channel_axis, channel=channel)
        except ValueError as error:
            self._show_status(f"FCFI: {error}")
            return
        self._bind_keys()
        self._refresh_labels_menu()
        self._show_label_id(self.controller.next_label_id())
        self._show_status(f"FCFI: annotating {layer.name!r}; left click = positive, right click = negative")

    def _on_labels_choice(self, index: int = 0) -> None:
        try:
            self.controller.set_labels_layer(self.labels_combo.currentData())
        except ValueError as error:
            self._show_status(f"FCFI: {error}")

    # ------------------------------------------------------------------ model, ids, modes
    def _on_model_choice(self, *args: Any) -> None:
        source = self.model_combo.currentText().strip() or DEFAULT_MODEL
        device = self.device_combo.currentText() or "cpu"
        if (source, device) != (self.controller.model_source, self.controller.device):
            self.controller.set_model(source, device)
            self._show_status(f"FCFI: model {source!r} on {device}")

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "FCFI weights", "", "Weights (*.safetensors *.pth *.pt)")
        if path:
            self.model_combo.setEditText(path)
            self._on_model_choice()

    def _on_label_spin(self, value: int) -> None:
        if self._syncing:
            return
        self.controller.label_id = None if value == self._auto_label_id() else int(value)

    def _auto_label_id(self) -> int:
        saved, self.controller.label_id = self.controller.label_id, None
        try:
            return self.controller.next_label_id()
        finally:
            self.controller.label_id = saved

    def _on_annotate(self, on: bool) -> None:
        self.controller.annotating = bool(on)
        if on and self.controller.points_layer is not None:
            self.viewer.layers.selection.active = self.controller.points_layer
            self.controller.points_layer.mode = "pan_zoom"

    def _bind_keys(self) -> None:
        actions = {
            "commit": self.controller.commit,
            "undo": self.controller.undo,
            "redo": self.controller.redo,
            "reset": self.controller.reset_object,
        }
        for layer in (self.controller.points_layer, self.controller.image_layer):
            if layer is None or layer in self._bound_layers:
                continue
            for action, (key, _text) in SHORTCUTS.items():
                layer.bind_key(key, _layer_action(actions[action]), overwrite=True)
            self._bound_layers.append(layer)

    # ------------------------------------------------------------------ saving
    def _ask_save_click_log(self) -> None:
        start = ""
        # Beside the labels file when the labels came from disk, else beside the image.
        for layer in (self.controller.labels_layer, self.controller.image_layer):
            path = getattr(getattr(layer, "source", None), "path", None)
            if path:
                start = str(Path(path).with_suffix("")) + "_clicks.csv"
                break
        path, _ = QFileDialog.getSaveFileName(self, "Save FCFI click log", start, "Click log (*.csv)")
        if path:
            self.save_click_log(path)

    def save_click_log(self, path: str | Path) -> Path | None:
        """Save the click log (CSV with model and settings, replayable by ``fcfi segment``)."""
        if not len(self.controller.click_log):
            self._show_status("FCFI: no committed objects yet; nothing to save")
            return None
        written = self.controller.click_log.save(
            path,
            model=self.controller.model_source,
            settings={
                **self.controller.segmenter_settings,
                "device": self.controller.device,
                "threshold": self.controller.threshold,
                "channel_axis": self.controller.channel_axis,
                "channel": self.controller.channel,
                "overwrite": self.controller.overwrite,
            },
            image_name=getattr(self.controller.image_layer, "name", ""),
        )
        self._show_status(f"FCFI: click log saved to {written}")
        return written

    # ------------------------------------------------------------------ feedback
    def _show_status(self, message: str) -> None:
        self.status_label.setText(message)

    def _show_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(bool(busy))

    def _show_label_id(self, label_id: int) -> None:
        self._syncing = True
        try:
            self.label_spin.setValue(int(label_id))
        finally:
            self._syncing = False

    def closeEvent(self, event: Any) -> None:
        self.controller.close()
        super().closeEvent(event)


def _layer_action(action: Any) -> Any:
    """A napari key binding callback (receives the layer) that calls ``action()``."""

    def callback(layer: Any) -> None:
        action()

    callback.__doc__ = getattr(action, "__doc__", None)
    return callback


__all__ = ["SHORTCUTS", "FCFIWidget", "channel_choices"]
