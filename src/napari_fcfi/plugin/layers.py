"""The helper layers of an annotated image: its clicks (points) and the object preview (labels).

Helper layers carry ``metadata["napari_fcfi"] = {"role": ..., "image": <image layer unique_id>}``, so a
widget opened again (or a second widget) finds and reuses them instead of adding duplicates, and
they can be removed with their image. Markers keep a fixed size on screen (their size follows the
camera's zoom, :func:`fit_markers`), so clicks never hide the object on a large image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_fcfi.annotation.clicklog import ClickLog
from napari_fcfi.annotation.geometry import ImageGeometry, make_geometry
from napari_fcfi.engine.windows import Box

from .pyramid import clear, is_pyramid, needs_pyramid, pyramid_levels, write_region

POSITIVE_COLOR = np.array([0.2, 1.0, 0.2, 1.0], dtype=np.float32)
NEGATIVE_COLOR = np.array([1.0, 0.15, 0.35, 1.0], dtype=np.float32)
PREVIEW_COLOR = (1.0, 0.85, 0.0, 1.0)
MARKER_SCREEN_PX = 9.0  # click markers are drawn this many screen pixels wide at any zoom
TAG = "napari_fcfi"


CLICK_LOG_KEY = "click_log"  # in labels.metadata[TAG]


OWNER_KEY = "layer"  # in labels.metadata[TAG]: the unique_id of the layer the dict belongs to
#: What a copy of a labels layer does not take over from the original's metadata: its journal (the
#: original's crash record) and the file it was saved to (a Save of the copy must not replace it).
NOT_COPIED = ("journal", "saved_to")


def own_tag(layer: Any) -> dict[str, Any]:
    """The layer's own FCFI metadata dict (created on first use) for writing.

    napari's Duplicate Layer copies ``metadata`` shallowly: the copy held the very dict of the original,
    so a commit into either went into both click logs, and a journal or save of one moved the other's.
    The dict names the layer it belongs to; a copy gets its own, with a copy of the click log (which
    describes the copied labels) and neither the journal nor the file of the original (:data:`NOT_COPIED`).
    """
    metadata = getattr(layer, "metadata", None)
    if not isinstance(metadata, dict):
        return {}
    me = str(layer.unique_id)
    tag = metadata.get(TAG)
    if not isinstance(tag, dict):
        tag = {}
    elif tag.get(OWNER_KEY, me) != me:
        tag = {key: value for key, value in tag.items() if key not in NOT_COPIED}
        log = tag.get(CLICK_LOG_KEY)
        if isinstance(log, ClickLog):
            tag[CLICK_LOG_KEY] = ClickLog(list(log.records), dict(log.metadata), log.axes)
    tag[OWNER_KEY] = me
    metadata[TAG] = tag
    return tag


def split_copied_tag(layer: Any, layers: Any) -> None:
    """``layer`` was just inserted: when it holds the very FCFI dict of another layer of ``layers`` (napari
    duplicated that one), the other keeps it and ``layer`` gets its own (:func:`own_tag`), before either
    changes. Called for every inserted layer, with or without a journal (the controller and the labels
    recorders listen)."""
    metadata = getattr(layer, "metadata", None)
    tag = metadata.get(TAG) if isinstance(metadata, dict) else None
    if not isinstance(tag, dict):
        return
    for other in layers:
        other_metadata = getattr(other, "metadata", None)
        if other is not layer and isinstance(other_metadata, dict) and other_metadata.get(TAG) is tag:
            own_tag(other)  # the original claims the dict first (it may name no owner yet)
            own_tag(layer)
            return


def click_log_of(labels: Any) -> ClickLog:
    """The click log stored with a labels layer (created empty on first use): it stays with the labels
    even when the widget is closed."""
    tag = own_tag(labels)
    log = tag.get(CLICK_LOG_KEY)
    if not isinstance(log, ClickLog):
        log = ClickLog()
        tag[CLICK_LOG_KEY] = log
    return log


def transform_problem(layer: Any) -> str | None:
    """Why the layer's world transform cannot be annotated (None when it is only scale and translate).

    Clicks, preview and labels live on a scale/translate grid; a rotated, sheared or affine-mapped
    image would put every click on a different pixel than the one under the cursor.
    """
    ndim = len(tuple(layer.scale))
    eye = np.eye(ndim)
    plain = (
        np.allclose(np.asarray(layer.rotate), eye)
        and np.allclose(np.asarray(layer.shear), 0)
        and np.allclose(np.asarray(layer.affine.affine_matrix), np.eye(ndim + 1))
    )
    if plain:
        return None
    return (
        f"image layer {layer.name!r} is rotated, sheared or has an affine transform; clicks would land on "
        "other pixels than the ones under the cursor. Reset its rotate/shear/affine to annotate it "
        "(scale and translate are fine)"
    )


def geometry_of(layer: Any, channel_axis: int | None = None) -> ImageGeometry:
    """Label-grid geometry of a napari image layer (RGB layers use their colour axis).

    Raises ``ValueError`` for a layer whose transform is more than scale and translate.
    """
    problem = transform_problem(layer)
    if problem is not None:
        raise ValueError(problem)
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    return make_geometry(
        data.shape,
        None if rgb else channel_axis,
        rgb=rgb,
        scale=tuple(layer.scale),
        translate=tuple(layer.translate),
    )


def image_data(layer: Any) -> Any:
    """The full-resolution array of an image layer (multiscale: level 0)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


PROPOSALS_ROLE = "proposals"  # segment all's proposals layer of an image


def role_of(layer: Any) -> tuple[str | None, str | None]:
    """``(role, image unique_id)`` of a helper layer, ``(None, None)`` for any other layer."""
    tag = getattr(layer, "metadata", {}).get(TAG) if hasattr(layer, "metadata") else None
    if not isinstance(tag, dict):
        return None, None
    return tag.get("role"), tag.get("image")


def is_helper(layer: Any) -> bool:
    return role_of(layer)[0] in ("clicks", "preview", "proposals")


def made_by_commit(labels: Any, image_ids: Any) -> bool:
    """Whether ``labels`` is a labels layer a commit made this session for one of ``image_ids``."""
    tag = labels.metadata.get(TAG, {}) if isinstance(getattr(labels, "metadata", None), dict) else {}
    return isinstance(tag, dict) and tag.get("labels_of") in image_ids


SESSION_KEY = "session"  # in clicks.metadata[TAG] while no widget annotates the image


def keep_session(clicks: Any, geometry: ImageGeometry, session: Any) -> None:
    """Leave the objects in progress of an image (its ``AnnotationSession``) with its clicks layer when
    the dock closes, so that a dock opened again in this napari session takes them up."""
    if isinstance(clicks.metadata, dict):
        clicks.metadata.setdefault(TAG, {})[SESSION_KEY] = (geometry, session)


def take_session(clicks: Any, geometry: ImageGeometry) -> Any | None:
    """The session :func:`keep_session` left with ``clicks`` (removed from it), when made for the same
    pixel grid as ``geometry`` (its objects are in pixels and slice indices: a new scale or translate of
    the layer leaves them where they were)."""
    tag = clicks.metadata.get(TAG) if isinstance(clicks.metadata, dict) else None
    kept = tag.pop(SESSION_KEY, None) if isinstance(tag, dict) else None
    if not isinstance(kept, tuple) or len(kept) != 2:
        return None
    before = kept[0]
    same_grid = (before.data_shape, before.channel_axis, before.rgb) == (
        geometry.data_shape,
        geometry.channel_axis,
        geometry.rgb,
    )
    return kept[1] if same_grid else None


def find_helper(viewer: Any, image: Any, role: str, geometry: ImageGeometry) -> Any | None:
    """The existing ``role`` layer of ``image`` when it still fits the image's label grid, placed where the
    image is now (the user may have changed its scale or translate while no dock annotated it)."""
    for layer in viewer.layers:
        if role_of(layer) == (role, str(image.unique_id)):
            ndim = len(geometry.label_shape) if role == "clicks" else 2
            if layer.ndim == ndim:
                layer.scale, layer.translate = geometry.scale[-ndim:], geometry.translate[-ndim:]
                return layer
    return None


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
    style_clicks_layer(layer, viewer.camera.zoom)
    return layer


def style_clicks_layer(layer: Any, zoom: float) -> None:
    """Markers :data:`MARKER_SCREEN_PX` wide on screen at the camera's ``zoom`` (kept so by
    :func:`fit_markers` on every zoom). ``canvas_size_limits`` only caps them: a lower limit would turn
    the invisible size-0 point napari draws at the grid's origin on a slice without points into a dot."""
    layer.canvas_size_limits = (0.0, MARKER_SCREEN_PX)
    fit_markers(layer, zoom)


def fit_markers(layer: Any, zoom: float) -> None:
    """Size the markers (in data units) so that they are :data:`MARKER_SCREEN_PX` wide at ``zoom``."""
    pixel = abs(float(layer.scale[-1])) * max(float(zoom), 1e-9)  # screen pixels per data unit
    size = MARKER_SCREEN_PX / pixel
    layer.current_size = size
    if len(layer.data):
        layer.size = size


def create_preview_layer(viewer: Any, image: Any, geometry: ImageGeometry) -> Any:
    """A 2D labels layer showing the object in progress of the slice on screen."""
    from napari.utils.colormaps import DirectLabelColormap

    plane = np.zeros(geometry.plane_shape, dtype=np.uint8)
    large = needs_pyramid(geometry.plane_shape)  # drawn tile by tile (see .pyramid)
    return viewer.add_labels(
        pyramid_levels(plane) if large else plane,
        multiscale=large,
        name=f"{image.name} FCFI preview",
        scale=geometry.scale[-2:],
        translate=geometry.translate[-2:],
        opacity=0.5,
        colormap=DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: PREVIEW_COLOR}),
        metadata={TAG: {"role": "preview", "image": str(image.unique_id)}},
    )


def clear_preview(layer: Any, plane_shape: tuple[int, int]) -> None:
    """Empty a preview layer (every level of a multiscale one)."""
    if is_pyramid(layer):
        clear(layer)
    else:
        layer.data = np.zeros(plane_shape, dtype=np.uint8)


def redraw_preview(layer: Any, box: Box | None, mask: np.ndarray | None) -> None:
    """Rewrite only ``box`` of a preview layer with ``mask`` (None: empty), multiscale or not."""
    if box is None:
        return
    region = box.slices
    plane = image_data(layer)
    if is_pyramid(layer):
        write_region(
            layer, (), region, np.zeros(plane[region].shape, plane.dtype) if mask is None else mask[region]
        )
        return
    plane[region] = 0 if mask is None else mask[region]
    # Same shape and no selection: skip the extent, thumbnail and highlight updates.
    layer.refresh(extent=False, thumbnail=False, highlight=False)


def same_layer(a: Any, b: Any) -> bool:
    """Whether two references name one layer.

    A plugin's viewer is napari's public-only proxy: the layers it hands out are proxies, while layer
    events carry the real layer, so ``is`` would never match; napari's ``unique_id`` does.
    """
    if a is None or b is None:
        return False
    return a is b or getattr(a, "unique_id", None) == getattr(b, "unique_id", object())


def index_in(viewer: Any, layer: Any) -> int | None:
    """The position of ``layer`` (or its proxy) in the viewer's layer list, None when it is not there."""
    if layer is None:
        return None
    return next((i for i, other in enumerate(viewer.layers) if same_layer(layer, other)), None)


def remove_layers(viewer: Any, *layers: Any) -> None:
    """Remove ``layers`` (those still in the viewer) in one batch.

    napari runs a full garbage collection after each removed layer (0.3-0.6 s with torch loaded), but
    only once for a batch: removing an image's two helpers one by one doubled the freeze.
    """
    with viewer.layers.batched_update():
        for layer in layers:
            index = index_in(viewer, layer)
            if index is not None:
                viewer.layers.pop(index)


def keep_on_top(viewer: Any, *layers: Any) -> None:
    for layer in layers:
        index = index_in(viewer, layer)
        if index is not None:
            viewer.layers.move(index, len(viewer.layers))


def labels_fit(labels: Any, geometry: ImageGeometry) -> str | None:
    """Why a labels layer cannot receive the image's objects, or None when it can."""
    shape = tuple(labels.data.shape)
    if shape != geometry.label_shape:
        return f"its shape {shape} differs from the image's label grid {geometry.label_shape}"
    if not np.allclose(tuple(labels.scale), geometry.scale) or not np.allclose(
        tuple(labels.translate), geometry.translate
    ):
        if saved_without_transform(labels, geometry):
            return (
                "it has scale 1 and no translate (labels saved to a file lose them) while the image has "
                f"scale {_numbers(geometry.scale)}, translate {_numbers(geometry.translate)}; choose it under "
                "Labels to give it the image's"
            )
        return (
            f"its scale {_numbers(labels.scale)} / translate {_numbers(labels.translate)} differ from the "
            f"image's {_numbers(geometry.scale)} / {_numbers(geometry.translate)} (objects would be drawn in "
            "the wrong place); set them to the image's to use it"
        )
    if np.dtype(labels.data.dtype).kind not in "iu":
        return f"its data type {labels.data.dtype} is not an integer type"
    return None


def saved_without_transform(labels: Any, geometry: ImageGeometry) -> bool:
    """The image's label grid with the identity transform while the image has a scale or translate:
    most likely the image's labels written to a file (which keeps no scale) and opened again."""
    tag = labels.metadata.get(TAG) if isinstance(labels.metadata, dict) else None
    if isinstance(tag, dict) and tag.get("labels_of"):  # made in this session for an image: never re-scaled
        return False
    identity = np.allclose(tuple(labels.scale), 1) and np.allclose(tuple(labels.translate), 0)
    image_identity = np.allclose(geometry.scale, 1) and np.allclose(geometry.translate, 0)
    return (
        tuple(labels.data.shape) == geometry.label_shape
        and np.dtype(labels.data.dtype).kind in "iu"
        and identity
        and not image_identity
    )


def take_image_transform(labels: Any, geometry: ImageGeometry) -> str:
    """Give a labels layer saved without its scale (:func:`saved_without_transform`) the image's scale
    and translate, so it lies on the image again; returns what was done, for the status line."""
    labels.scale, labels.translate = geometry.scale, geometry.translate
    return (
        f"{labels.name!r} had scale 1 (saved without it): it now has the image's scale "
        f"{_numbers(geometry.scale)} and translate {_numbers(geometry.translate)}"
    )


def _numbers(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"
