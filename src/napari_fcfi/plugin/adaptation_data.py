"""What model adaptation learns from: the user's committed objects, slice by slice.

Every slice of every annotated image whose labels layer has committed objects (the slices its click
log names) gives one training pair: the image plane, with the channels the network sees composed as
the engine composes them, and the labels plane. The adaptation panel (:mod:`.panels`) only shows
and starts the work.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from napari_fcfi.annotation.geometry import read_plane
from napari_fcfi.engine.intensity import ImageSource
from napari_fcfi.engine.windows import full_box

from .image_state import ImageState
from .layers import click_log_of, image_data


def committed_training_data(states: Iterable[ImageState]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """``(images, labels, objects)``: the planes with committed objects and how many objects they hold."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    objects = 0
    for state in states:
        if state.labels_layer is None:
            continue
        data = image_data(state.labels_layer)
        keys = {k for record in click_log_of(state.labels_layer).records for k in record.slice_keys}
        for key in sorted(keys):
            plane = np.asarray(data[key] if key else data)
            found = len(np.unique(plane[plane > 0]))
            if not found:
                continue
            image = read_plane(image_data(state.layer), state.geometry, key)
            axis = state.geometry.slice_channel_axis()
            if axis is not None:  # the channels the network sees, as the engine composes them
                source = ImageSource(image, channel_axis=axis, channel=state.channel)
                image = np.moveaxis(source.read(full_box(source.height, source.width)), 0, -1)
            images.append(image)
            labels.append(plane)
            objects += found
    return images, labels, objects


__all__ = ["committed_training_data"]
