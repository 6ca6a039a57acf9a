"""napari reader and writer contributions for labels TIFF files (:mod:`napari_fcfi.annotation.labels_tiff`).

Saving labels through the FCFI writer also removes the crash-recovery journal of those labels: once
they are on disk, the journal has done its job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_fcfi.annotation.journal import CommitJournal
from napari_fcfi.annotation.labels_tiff import TIFF_SUFFIXES, read_labels_tiff, write_labels_tiff

from .layers import TAG


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: the labels TIFF (dtype kept, zlib, scale/translate), then the journal goes."""
    if attributes.get("multiscale") or isinstance(data, (list, tuple)):
        data = data[0]  # a multiscale labels layer (very large planes, see .pyramid): level 0 is the labels
    written = write_labels_tiff(path, data, attributes)
    journal = ((attributes.get("metadata") or {}).get(TAG) or {}).get("journal")
    if journal:
        CommitJournal(journal).discard()
    return written


def get_reader(path: str | list[str]) -> Any:
    """npe2 reader: FCFI labels TIFFs (the ones our writer made) open as labels with scale/translate."""
    if isinstance(path, list) or Path(path).suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            meta = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    except Exception:  # noqa: BLE001 - not a TIFF we can read: let other readers try
        return None
    if not isinstance(meta, dict) or "scale" not in meta or "translate" not in meta:
        return None  # not written by the FCFI writer
    return _read


def _read(path: str) -> list[tuple[Any, dict[str, Any], str]]:
    data, meta = read_labels_tiff(path)
    attributes = {"scale": meta["scale"], "translate": meta["translate"], "name": meta.get("name") or Path(path).stem}
    return [(data, attributes, "labels")]
