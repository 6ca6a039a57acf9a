"""The helper layers of an annotated image: its clicks (points) and the object preview (labels).

Helper layers carry ``metadata["napari_fcfi"] = {"role": ..., "image": <image layer unique_id>}``, so a
widget opened again (or a second widget) finds and reuses them instead of adding duplicates, and
they can be removed with their image. Markers keep a fixed size on screen (``canvas_size_limits``),
so clicks never hide the object on a large image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_fcfi.annotation.geometry import ImageGeometry, make_geometry

POSITIVE_COLOR = np.array([0.2, 1.0, 0.2, 1.0], dtype=np.float32)
NEGATIVE_COLOR = np.array([1.0, 0.15, 0.35, 1.0], dtype=np.float32)
PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)
MARKER_SCREEN_PX = 9.0  # click markers are drawn this many screen pixels wide at any zoom
TAG = "napari_fcfi"


def geometry_of(layer: Any, channel_axis: int | None = None) -> ImageGeometry:
    """Label-grid geometry of a napari image layer (RGB layers use their colour axis)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    return make_geometry(
        data.shape, None if rgb else channel_axis, rgb=rgb, scale=tuple(layer.scale), translate=tuple(layer.translate)
    )


def image_data(layer: Any) -> Any:
    """The full-resolution array of an image layer (multiscale: level 0)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def role_of(layer: Any) -> tuple[str | None, str | None]:
    """``(role, image unique_id)`` of a helper layer, ``(None, None)`` for any other layer."""
    tag = getattr(layer, "metadata", {}).get(TAG) if hasattr(layer, "metadata") else None
    if not isinstance(tag, dict):
        return None, None
    return tag.get("role"), tag.get("image")


def is_helper(layer: Any) -> bool:
    return role_of(layer)[0] in ("clicks", "preview", "proposals")


def find_helper(viewer: Any, image: Any, role: str, geometry: ImageGeometry) -> Any | None:
    """The existing ``role`` layer of ``image`` when it still fits the image's label grid."""
    for layer in viewer.layers:
        if role_of(layer) == (role, str(image.unique_id)):
            ndim = len(geometry.label_shape) if role == "clicks" else 2
            if layer.ndim == ndim:
                return layer
    return None


def helpers_of(viewer: Any, image_id: str) -> list[Any]:
    return [layer for layer in viewer.layers if role_of(layer)[1] == image_id and is_helper(layer)]


def create_clicks_layer(viewer: Any, image: Any, geometry: ImageGeometry) -> Any:
    """A points layer on the image's label grid whose ``positive`` feature colours the markers."""
    layer = viewer.add_points(
        np.empty((0, len(geometry.label_shape))),
        ndim=len(geometry.label_shape),
        name=f"{image.name} FCFI clicks",
        scale=geometry.scale,
        translate=geometry.translate,
        features={"positive": np.zeros(0, dtype=bool)},
        feature_defaults={"positive": True},
        face_color="positive",
        face_color_cycle={True: tuple(POSITIVE_COLOR), False: tuple(NEGATIVE_COLOR)},
        border_color="black",
        metadata={TAG: {"role": "clicks", "image": str(image.unique_id)}},
    )
    style_clicks_layer(layer)
    return layer


def style_clicks_layer(layer: Any) -> None:
    """Fixed on-screen marker size whatever the image size and zoom."""
    layer.canvas_size_limits = (MARKER_SCREEN_PX, MARKER_SCREEN_PX)
    layer.current_size = 1.0
    if len(layer.data):
        layer.size = 1.0


def create_preview_layer(viewer: Any, image: Any, geometry: ImageGeometry) -> Any:
    """A 2D labels layer showing the object in progress of the slice on screen."""
    from napari.utils.colormaps import DirectLabelColormap

    return viewer.add_labels(
        np.zeros(geometry.plane_shape, dtype=np.uint8),
        name=f"{image.name} FCFI preview",
        scale=geometry.scale[-2:],
        translate=geometry.translate[-2:],
        opacity=0.5,
        colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}),
        metadata={TAG: {"role": "preview", "image": str(image.unique_id)}},
    )


def remove_layers(viewer: Any, *layers: Any) -> None:
    for layer in layers:
        if layer is not None and layer in viewer.layers:
            viewer.layers.remove(layer)


def keep_on_top(viewer: Any, *layers: Any) -> None:
    for layer in layers:
        if layer is not None and layer in viewer.layers:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))


def labels_fit(labels: Any, geometry: ImageGeometry) -> str | None:
    """Why a labels layer cannot receive the image's objects, or None when it can."""
    shape = tuple(labels.data.shape)
    if shape != geometry.label_shape:
        return f"its shape {shape} differs from the image's label grid {geometry.label_shape}"
    if not np.allclose(tuple(labels.scale), geometry.scale) or not np.allclose(tuple(labels.translate), geometry.translate):
        return "its scale/translate differ from the image's (objects would be drawn in the wrong place)"
    if np.dtype(labels.data.dtype).kind not in "iu":
        return f"its data type {labels.data.dtype} is not an integer type"
    return None
