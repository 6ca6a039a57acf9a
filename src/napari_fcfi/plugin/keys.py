"""The keys and the mouse callback the controller puts on the layers an image is annotated on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SHORTCUTS = {  # action -> (napari key, text shown in tooltips); the README lists the same keys
    "commit": ("Space", "Space"),
    "undo": ("Control-Z", "Ctrl+Z"),
    "redo": ("Control-Shift-Z", "Ctrl+Shift+Z"),
    "reset": ("Escape", "Esc"),
}


class LayerBindings:
    """Binds ``shortcuts`` (action -> (key, text); default :data:`SHORTCUTS`) to ``actions`` and adds
    ``mouse_callback`` on layers; takes them off again."""

    def __init__(
        self,
        actions: dict[str, Callable[[], Any]],
        mouse_callback: Callable[..., Any],
        shortcuts: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.actions = actions
        self.mouse_callback = mouse_callback
        self.shortcuts = SHORTCUTS if shortcuts is None else shortcuts
        self.bound: list[Any] = []

    def bind(self, layers: tuple[Any, ...]) -> None:
        for layer in layers:
            if layer in self.bound:
                continue
            for action, (key, _text) in self.shortcuts.items():
                layer.bind_key(key, _layer_action(self.actions[action]), overwrite=True)
            layer.mouse_drag_callbacks.append(self.mouse_callback)
            self.bound.append(layer)

    def unbind(self, layers: tuple[Any, ...] | None = None) -> None:
        """Take the bindings off ``layers`` (None: every bound layer)."""
        chosen = list(self.bound) if layers is None else [layer for layer in self.bound if layer in layers]
        for layer in chosen:
            for key, _text in self.shortcuts.values():
                layer.bind_key(key, None)
            if self.mouse_callback in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.remove(self.mouse_callback)
            self.bound.remove(layer)


def _layer_action(action: Callable[[], Any]) -> Callable[[Any], None]:
    """A napari key-binding callback (receives the layer) that calls ``action()``."""

    def callback(layer: Any) -> None:
        action()

    callback.__doc__ = getattr(action, "__doc__", None)
    return callback
