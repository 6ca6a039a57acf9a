"""Telling a click from a drag, and which kind of click it is.

napari pans the camera while the left button is dragged, so the *world* position under the cursor
hardly changes during a pan: deciding click-versus-drag on world positions turns every pan into a
click. The decision here is made on the cursor's canvas (screen) position, which napari's mouse
events carry as ``pos`` (vispy's canvas pixels). Events without it (scripted events) fall back to the
world distance times the camera zoom (screen pixels per world unit).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A press that moves farther than this many screen pixels before release is a drag (pan/zoom).
DRAG_THRESHOLD_PX = 4.0


@dataclass(frozen=True)
class ClickIntent:
    """What a completed click asks for, at the press position (world coordinates)."""

    position: tuple[float, ...]
    action: str  # "positive", "negative" or "edit"


def _modifiers(event: Any) -> set[str]:
    return {str(getattr(m, "name", m)).lower() for m in getattr(event, "modifiers", ())}


def intent_of(event: Any, position: tuple[float, ...]) -> ClickIntent | None:
    """Left: positive; right or Ctrl/Cmd+left: negative; Shift+left: edit the label under the cursor."""
    modifiers = _modifiers(event)
    button = getattr(event, "button", 1)
    if button == 1 and "shift" in modifiers:
        return ClickIntent(position, "edit")
    if button == 2 or (button == 1 and ({"control", "meta"} & modifiers)):
        return ClickIntent(position, "negative")
    if button == 1:
        return ClickIntent(position, "positive")
    return None


def _screen_point(event: Any) -> np.ndarray | None:
    pos = getattr(event, "pos", None)
    if pos is None:
        return None
    return np.asarray(pos, dtype=float)[:2]


def click_gesture(event: Any, on_click: Callable[[ClickIntent], None]) -> Generator[None, None, None]:
    """A napari mouse-drag callback body: calls ``on_click`` for a click, nothing for a drag.

    Use as ``yield from click_gesture(event, handler)`` inside a ``mouse_drag_callbacks`` generator.
    """
    press_world = np.asarray(event.position, dtype=float)
    press_screen = _screen_point(event)
    zoom = float(getattr(event, "camera_zoom", 1.0) or 1.0)
    moved = 0.0
    yield
    while getattr(event, "type", None) == "mouse_move":
        screen = _screen_point(event)
        if screen is not None and press_screen is not None:
            moved = max(moved, float(np.hypot(*(screen - press_screen))))
        else:
            world = np.asarray(event.position, dtype=float)
            if world.shape == press_world.shape:
                moved = max(moved, float(np.abs(world - press_world).max()) * zoom)
        yield
    if moved > DRAG_THRESHOLD_PX:
        return
    intent = intent_of(event, tuple(press_world))
    if intent is not None:
        on_click(intent)
