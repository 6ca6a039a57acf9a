"""Which axis of an image layer holds channels: the choices the widget offers and its first guess."""

from __future__ import annotations

from typing import Any

from . import layers as helpers


def channel_choices(layer: Any) -> list[tuple[str, tuple[int | None, int | None]]]:
    """Menu entries ``(text, (channel_axis, channel))`` that make sense for an image layer."""
    if layer is None:
        return []
    data = helpers.image_data(layer)
    if getattr(layer, "rgb", False):
        return [("RGB composite", (None, None))] + [
            (f"channel {c}", (None, c)) for c in range(min(data.shape[-1], 3))
        ]
    entries: list[tuple[str, tuple[int | None, int | None]]] = [("grayscale", (None, None))]
    if len(data.shape) >= 3 and 2 <= data.shape[0] <= 8:
        if _composite_fits(data.shape[0], data.dtype):
            entries.append((f"axis 0 = {data.shape[0]} channels, composite", (0, None)))
        entries += [(f"axis 0 = channels, channel {c}", (0, c)) for c in range(data.shape[0])]
    return entries


def _composite_fits(count: int, dtype: Any) -> bool:
    """The engine shows the network a composite of 2 or 3 channels, or RGBA (4 channels of uint8)."""
    return count in (2, 3) or (count == 4 and str(dtype) == "uint8")


#: A leading axis of at most this many entries of a 3D, non-RGB image is taken for channels by default.
MAX_GUESSED_CHANNELS = 4
_CHANNEL_NAMES = {"c", "ch", "channel", "channels"}
_STACK_NAMES = {"z", "t", "time", "depth", "plane", "slice"}


def guess_channels(layer: Any) -> tuple[tuple[int | None, int | None], str]:
    """The channel entry chosen when an image is picked, and why (said in the status).

    The layer's axis names (napari's ``axis_labels`` or an ``"axes"`` string in its metadata, e.g.
    ``"CYX"``) decide when they name the first axis; otherwise a 3D, non-RGB image whose first axis has
    2..:data:`MAX_GUESSED_CHANNELS` entries is taken for channels (a z-stack that short is rare) when the
    network can see them as one composite (2-3 channels, or RGBA uint8); else it is a stack.
    """
    if layer is None or getattr(layer, "rgb", False):
        return (None, None), ""
    shape = tuple(helpers.image_data(layer).shape)
    offered = {value for _text, value in channel_choices(layer)}
    if (0, 0) not in offered:
        return (None, None), ""
    composite = (0, None) in offered
    first = _first_axis_name(layer)
    if first in _CHANNEL_NAMES:
        if composite:
            return (0, None), f"axis 0 is named {first!r}"
        return (
            0,
            0,
        ), f"axis 0 is named {first!r}; channel 0 shown to the network (choose another under Channel)"
    if first in _STACK_NAMES:
        return (None, None), ""
    # (unnamed: a short first axis is taken for channels only when the network can see them all)
    if composite and len(shape) == 3 and shape[0] <= MAX_GUESSED_CHANNELS:
        return (0, None), f"its first axis has only {shape[0]} entries"
    return (None, None), ""


def misplaced_channel_axis(layer: Any) -> int | None:
    """An axis after the first that looks like channels (named so, or, unnamed, a second axis of 2 to
    :data:`MAX_GUESSED_CHANNELS` entries of a 4D+ image behind a longer first one: ImageJ's Z, C, Y, X),
    or None. napari keeps labels aligned with a channel axis only when it comes first, so the widget
    says how to split such an image instead of stacking its channels."""
    if layer is None or getattr(layer, "rgb", False):
        return None
    shape = tuple(helpers.image_data(layer).shape)
    if len(shape) < 4:
        return None
    names = _axis_names(layer)
    if names is not None:
        named = [axis for axis, name in enumerate(names) if axis > 0 and name in _CHANNEL_NAMES]
        return named[0] if named and names[0] not in _CHANNEL_NAMES else None
    if 2 <= shape[1] <= MAX_GUESSED_CHANNELS < shape[0]:
        return 1
    return None


def image_notes(layer: Any, channel_axis: int | None, why: str) -> str:
    """What the status adds when an image is picked: a guessed channel axis (``why``) and an axis after
    the first that looks like channels (:func:`misplaced_channel_axis`), each with what to do."""
    notes = ""
    if why and channel_axis is not None:
        count = helpers.image_data(layer).shape[channel_axis]
        notes = (
            f"; axis {channel_axis} taken as {count} channels ({why}): choose 'grayscale' under "
            "Channel if it is a stack"
        )
    misplaced = misplaced_channel_axis(layer)
    if misplaced is not None:
        count = helpers.image_data(layer).shape[misplaced]
        notes += (
            f"; axis {misplaced} ({count} entries) looks like channels (ImageJ's Z, C, Y, X): if so, open "
            f"its channels as layers (in napari's console: viewer.add_image(viewer.layers[{layer.name!r}]"
            f".data, channel_axis={misplaced})) and annotate one of them; otherwise it is a stack axis"
        )
    return notes


def _axis_names(layer: Any) -> list[str] | None:
    """The layer's axis names, lower case (an ``"axes"`` string in its metadata or napari's own
    ``axis_labels`` when they are not its defaults), or None."""
    ndim = len(helpers.image_data(layer).shape)
    axes = (
        getattr(layer, "metadata", {}).get("axes")
        if isinstance(getattr(layer, "metadata", None), dict)
        else None
    )
    if isinstance(axes, str) and len(axes) == ndim:
        return [a.lower() for a in axes]
    labels = tuple(getattr(layer, "axis_labels", ()) or ())
    if len(labels) == ndim and not all(_default_axis_label(str(label)) for label in labels):
        return [str(label).strip().lower() for label in labels]
    return None


def _first_axis_name(layer: Any) -> str | None:
    names = _axis_names(layer)
    return None if names is None else names[0]


def _default_axis_label(label: str) -> bool:
    """napari's own names for unnamed axes ("-3" on a layer, "axis -3" in the viewer) say nothing."""
    return label.removeprefix("axis ").lstrip("-").isdigit()
