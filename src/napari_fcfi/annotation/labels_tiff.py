"""Labels TIFF files: compressed, dtype kept, scale/translate stored (napari writer and reader, fcfi segment).

The napari plugin names these files ``*.fcfi`` (:data:`FCFI_SUFFIX`): an extension no other napari
reader claims, so napari opens them with the FCFI reader without asking, while every ``.tif`` stays
napari's. The content is a standard TIFF either way (``fcfi segment --out`` writes ``.tif`` or ``.fcfi``).

The label dtype is kept as is, the data are zlib-compressed, and the layer's scale and translate
are stored twice: as the TIFF resolution tags of the x/y axes (pixels per unit, what most readers
understand) and in tifffile's JSON metadata (``scale``, ``translate``, ``axes``, ``units``), which
:func:`read_labels_tiff` gives back exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: How many times its size in the file a TIFF's data may unpack to: deflate cannot pass ~1032:1, so a
#: header that declares more than this (plus :data:`SIZE_SLACK`) is damaged, and reading it would only
#: fill memory (a flipped byte in ImageWidth declared 23 GB of labels in a 339-byte file). Other codecs
#: (zstd, LZW) compress runs of zeros further: they get :data:`OTHER_CODEC_EXPANSION`.
DEFLATE_EXPANSION = 1100
OTHER_CODEC_EXPANSION = 100_000
SIZE_SLACK = 64 << 20

TIFF_SUFFIXES = (".tif", ".tiff")
FCFI_SUFFIX = ".fcfi"
AXIS_NAMES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "QTZYX"}


def labels_file_target(path: str | Path) -> Path:
    """The file :func:`write_labels_tiff` writes for ``path``: a TIFF or ``.fcfi`` name as given, any
    other suffix replaced by ``.tif`` (what a tool checks before it writes)."""
    target = Path(path)
    if target.suffix.lower() not in (*TIFF_SUFFIXES, FCFI_SUFFIX):
        target = target.with_suffix(".tif")
    return target


def write_labels_tiff(path: str | Path, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save ``data`` (labels) with ``attributes['scale'/'translate'/'name'/'units']`` (npe2 writer signature)."""
    target = labels_file_target(path)
    array = np.asarray(data[0] if isinstance(data, list) else data)  # multiscale: full resolution
    if array.ndim < 2:
        raise ValueError(f"labels to write must have at least 2 axes, got shape {array.shape}")
    if array.dtype.kind not in "biu":
        raise ValueError(f"labels must have an integer dtype, got {array.dtype} for {target}")
    ndim = array.ndim
    scale = _per_axis(attributes.get("scale"), ndim, 1.0, "scale")
    translate = _per_axis(attributes.get("translate"), ndim, 0.0, "translate")
    units = attributes.get("units")
    metadata = {
        "axes": AXIS_NAMES.get(ndim, "Q" * (ndim - 2) + "YX"),
        "scale": scale,
        "translate": translate,
        "name": str(attributes.get("name", "")),
    }
    if units is not None:
        metadata["units"] = [str(u) for u in units]
    import tifffile

    tifffile.imwrite(
        target,
        array,
        compression="zlib",
        photometric="minisblack",  # a stack of 3 or 4 slices is not an RGB(A) image
        metadata=metadata,
        resolution=(1.0 / scale[-1], 1.0 / scale[-2]),  # (x, y) pixels per unit
    )
    return [str(target)]


def fcfi_labels_path(path: str | Path) -> Path:
    """``path`` named as FCFI labels: ``x.fcfi`` stays, ``x.tif``/``x.tiff`` -> ``x.fcfi``, ``x`` -> ``x.fcfi``."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == FCFI_SUFFIX:
        return target
    if suffix in TIFF_SUFFIXES:
        return target.with_suffix(FCFI_SUFFIX)
    return target.with_name(target.name + FCFI_SUFFIX)  # keeps dots in names like "cells.v2"


class LabelsFileError(ValueError):
    """A file that is not readable as labels; the message names the file and what is wrong."""


def read_labels_tiff(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a TIFF written by :func:`write_labels_tiff`: ``(labels, {"scale", "translate", ...})``.

    Whatever bytes the file holds, this returns integer labels or raises :class:`LabelsFileError`.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            _check_declared_size(tif, Path(path))
            data = tif.asarray()
            meta = dict(tif.shaped_metadata[0]) if tif.shaped_metadata else {}
        meta.pop("shape", None)
        for key in ("scale", "translate"):
            if key in meta:
                meta[key] = tuple(float(v) for v in meta[key])
    except (FileNotFoundError, PermissionError, IsADirectoryError, LabelsFileError):
        raise
    except Exception as error:  # noqa: BLE001 - tifffile raises many kinds on damaged bytes
        raise LabelsFileError(
            f"{path}: not a readable labels TIFF ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "biu" or data.ndim < 2:
        raise LabelsFileError(
            f"{path}: holds {getattr(data, 'dtype', '?')} data of shape {getattr(data, 'shape', '?')},"
            " not integer labels of 2 or more axes"
        )
    return data, meta


def _check_declared_size(tif: Any, path: Path) -> None:
    """:class:`LabelsFileError` when the header declares far more data than the file can hold (see
    :data:`DEFLATE_EXPANSION`), before anything is allocated for it."""
    series = tif.series[0]
    declared = int(np.prod(series.shape, dtype=np.float64)) * np.dtype(series.dtype).itemsize
    compression = int(getattr(tif.pages[0], "compression", 1))
    expansion = {1: 1, 8: DEFLATE_EXPANSION, 32946: DEFLATE_EXPANSION}.get(compression, OTHER_CODEC_EXPANSION)
    size = path.stat().st_size
    if declared > expansion * size + SIZE_SLACK:
        raise LabelsFileError(
            f"{path}: its header declares {series.dtype} labels of shape {tuple(series.shape)} "
            f"({declared / 1e9:.1f} GB) in a file of {size} bytes; the file is damaged"
        )


def _per_axis(values: Sequence[float] | None, ndim: int, default: float, what: str) -> list[float]:
    if values is None:
        return [default] * ndim
    values = [float(v) for v in values]
    if len(values) < ndim:
        raise ValueError(f"{what} {values} has fewer entries than the labels' {ndim} axes")
    return values[-ndim:]
