"""FCFI labels files in napari (``*.fcfi``, :mod:`napari_fcfi.annotation.labels_tiff`): reader, writer, Save labels.

The reader and the writer claim only ``.fcfi``. napari's builtins claim every TIFF extension, and
napari asks "Choose reader" whenever two plugins claim a file's pattern, so a reader claiming
``*.tif`` made every TIFF a user opened ask; now plain TIFFs stay napari's (no dialog), ``x.fcfi``
opens as labels with its dtype, scale and translate (napari has no other reader for it), and
``viewer.layers.save("x.fcfi")`` or the Save dialog's "FCFI labels" file type uses this writer.
Labels TIFFs written by earlier versions (``.tif`` with the same content) open once renamed to ``.fcfi``.

Saving labels through the FCFI writer also removes the crash-recovery journal of those labels: once
they are on disk, the journal has done its job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.annotation.journal import LabelsJournal
from napari_fcfi.annotation.labels_tiff import (
    FCFI_SUFFIX,
    LabelsFileError,
    fcfi_labels_path,
    read_labels_tiff,
    write_labels_tiff,
)

from .journaling import recorder_of_journal
from .layers import TAG, image_data, own_tag


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: FCFI labels (dtype kept, zlib, scale/translate) named ``*.fcfi``, then the journal goes.

    A name without ``.fcfi`` gets it (``x.tif`` -> ``x.fcfi``); the renamed file must not exist yet
    (napari's Save dialog only asked about the name the user typed).
    """
    target = fcfi_labels_path(path)
    if target != Path(path) and target.exists():
        raise FileExistsError(f"{target} exists already; save to that name explicitly to replace it")
    if attributes.get("multiscale") or isinstance(data, (list, tuple)):
        data = data[0]  # a multiscale labels layer (very large planes, see .pyramid): level 0 is the labels
    written = write_labels_tiff(target, data, attributes)
    metadata = attributes.get("metadata")
    tag = metadata.get(TAG) if isinstance(metadata, dict) else None
    if not isinstance(metadata, dict) or not (tag is None or isinstance(tag, dict)):
        return written
    tag = dict(tag or {})
    journal = tag.get("journal")
    owner = recorder_of_journal(journal) if journal else None
    journaled = None if owner is None else image_data(owner.layer)
    # a layer napari duplicated may name the original's journal but holds its own labels: saving the
    # copy ends the original's crash record only when they are the same labels
    unsaved = journaled is not None and journaled is not data
    if unsaved and not np.array_equal(np.asarray(journaled), np.asarray(data)):
        tag.pop("journal")
        journal = None
    if journal:
        LabelsJournal(journal).discard()  # the layer's next change starts a new one
    # napari hands the layer's own metadata: the widget's next Save labels goes to this file too (File >
    # Save used to leave it writing a second file under its old name). A new dict: a layer napari
    # duplicated shares the old one, and must keep its own file. The owner it names stays: a copy never
    # split from its original (no dock, no journal) then drops the file again at its next use, where
    # claiming it could make the copy's Save labels replace the original's file.
    metadata[TAG] = {**tag, "saved_to": written[0]}
    return written


def get_reader(path: str | list[str]) -> Any:
    """npe2 reader: ``*.fcfi`` files open as labels with their dtype, scale and translate."""
    if isinstance(path, list) or not str(path).lower().endswith(FCFI_SUFFIX):
        return None
    return _read


def _read(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    try:
        data, meta = read_labels_tiff(path)
    except LabelsFileError as error:
        raise LabelsFileError(f"not an FCFI labels file: {error}") from None
    attributes: dict[str, Any] = {"name": meta.get("name") or Path(path).stem}
    for key in ("scale", "translate", "units"):
        if key in meta and len(meta[key]) == data.ndim:
            attributes[key] = meta[key]
    return [(data, attributes, "labels")]


# ---------------------------------------------------------------------- the widget's Save labels
def default_labels_path(labels: Any, image: Any | None) -> Path:
    """Where Save labels writes ``labels`` unless told otherwise.

    The file it was last saved to or opened from; else a new ``<labels name>.fcfi`` beside the image's
    file (the home folder for an image that did not come from a file), numbered so that it never
    replaces an existing file.
    """
    tag = own_tag(labels)  # (a copy of a labels layer has no file of its own yet)
    if tag.get("saved_to"):
        return Path(tag["saved_to"])
    source = labels.source.path
    if source and str(source).lower().endswith(FCFI_SUFFIX):
        return Path(source)
    image_file = getattr(getattr(image, "source", None), "path", None)
    folder = Path(image_file).parent if image_file else Path.home()
    if not folder.is_dir():  # e.g. an image read from a URL
        folder = Path.home()
    stem = re.sub(r'[<>:"/\\|?*\x00-\x1f]', "_", labels.name).strip(" .") or "labels"
    candidate, number = folder / f"{stem}{FCFI_SUFFIX}", 2
    while candidate.exists():
        candidate, number = folder / f"{stem} {number}{FCFI_SUFFIX}", number + 1
    return candidate


def save_labels_layer(labels: Any, path: str | Path) -> Path:
    """Write a napari labels layer with the FCFI writer (dtype, scale, translate; journal cleared)."""
    data, attributes, _kind = labels.as_layer_data_tuple()
    (written,) = write_labels(str(path), data, attributes)
    own_tag(labels)["saved_to"] = written  # the next Save goes there
    return Path(written)
