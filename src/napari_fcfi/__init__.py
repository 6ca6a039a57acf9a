"""napari-fcfi: click-based interactive segmentation with FCFI for napari.

The package is split into rooms that follow the data flow:

* :mod:`napari_fcfi.model`      network definitions and checkpoints (torch only)
* :mod:`napari_fcfi.engine`     one interactive session on one 2D image (no napari, no Qt)
* :mod:`napari_fcfi.annotation` stacks, painting rules, click logs, propagation, crash recovery,
                                ``fcfi segment`` (no napari, no Qt)
* :mod:`napari_fcfi.evaluation` robot user, metrics, datasets, ``fcfi eval``
* :mod:`napari_fcfi.training`   iterative click training, ``fcfi train``; adapting a model to the
                                user's objects (``finetune``, ``fcfi finetune``)
* :mod:`napari_fcfi.plugin`     napari layers, dock widget, worker threads

Heavy modules (torch) are imported lazily so that napari's plugin discovery stays fast.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

# The version is defined once, by the git tag the package was built from (see docs/releasing.md).
try:
    __version__ = metadata.version("napari-fcfi")
except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0.0.0+unknown"

_LAZY_EXPORTS = {
    "load_model": "napari_fcfi.model",
    "save_model": "napari_fcfi.model",
    "list_models": "napari_fcfi.model",
    "InteractiveSegmenter": "napari_fcfi.engine",
    "propagate": "napari_fcfi.annotation.propagation",
    "fill_between": "napari_fcfi.annotation.filling",
    "segment_all": "napari_fcfi.annotation.proposals",
    "finetune": "napari_fcfi.training.finetune",
    "save_adapted": "napari_fcfi.training.finetune",
    "adapt_with_check": "napari_fcfi.training.adaptation",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'napari_fcfi' has no attribute {name!r}")
    value = getattr(import_module(module_name), name)
    globals()[name] = value
    return value
