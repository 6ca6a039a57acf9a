"""Reading image files: the package's one image reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | Path, lazy: bool = True) -> Any:
    """Read an image file without changing its dtype: TIFF (tifffile), ``.npy`` or anything
    scikit-image reads (PNG, JPEG, BMP...). The package's only image reader.

    With ``lazy`` (the default), ``.npy`` files and uncompressed contiguous TIFFs stay memory-mapped,
    so only the regions the engine looks at are loaded.
    """
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, mmap_mode="r" if lazy else None)
    if suffix in TIFF_SUFFIXES:
        import tifffile

        if lazy:
            try:
                return tifffile.memmap(path, mode="r")
            except (ValueError, OSError):
                pass  # compressed or non-contiguous: read whole
        return np.asarray(tifffile.imread(path))
    import skimage.io

    return np.asarray(skimage.io.imread(path))
