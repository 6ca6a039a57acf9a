"""Model loading for the plugin: one cache per viewer, so a model loads once and is shared.

A :class:`ModelCache` maps ``(source, device)`` to a loaded network. ``source`` is ``"default"``
(the bundled weights), an official/registered name from :func:`napari_fcfi.model.list_models`,
or a file path. Loading runs on the inference thread; the cache's lock makes concurrent requests
for the same key load once.

Every widget of one viewer shares the cache returned by :func:`cache_for_viewer`. The table behind
it is keyed weakly by viewer, so closing a viewer frees its models; it is the only module-level
state of the plugin and holds no model of its own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

DEFAULT_MODEL = "default"

ModelLoader = Callable[[str, str], Any]


def _load_with_model_room(source: str, device: str) -> Any:
    from napari_fcfi.model import load_model

    return load_model(source, device=device)


class ModelCache:
    """Loaded models keyed by ``(source, device)``; ``loader(source, device)`` loads a missing one."""

    def __init__(self, loader: ModelLoader | None = None) -> None:
        self._loader = loader or _load_with_model_room
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, source: str, device: str = "cpu") -> Any:
        key = (str(source), str(device))
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._loader(*key)
                if hasattr(model, "eval"):
                    model.eval()
                self._models[key] = model
            return model

    def put(self, source: str, device: str, model: Any) -> None:
        """Register an already built model under a name (tests, scripts, notebooks)."""
        with self._lock:
            self._models[(str(source), str(device))] = model

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._models

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


_CACHES: weakref.WeakKeyDictionary[Any, ModelCache] = weakref.WeakKeyDictionary()


def cache_for_viewer(viewer: Any) -> ModelCache:
    """The model cache shared by all FCFI widgets of ``viewer`` (created on first use)."""
    cache = _CACHES.get(viewer)
    if cache is None:
        cache = ModelCache()
        _CACHES[viewer] = cache
    return cache


def available_model_names() -> list[str]:
    """Bundled and registered model names for the widget's model menu (never downloads)."""
    names = [DEFAULT_MODEL]
    try:
        from napari_fcfi.model import list_models

        for entry in list_models():
            name = entry if isinstance(entry, str) else getattr(entry, "name", None) or entry.get("name")
            if name and name not in names:
                names.append(str(name))
    except Exception:  # noqa: BLE001 - a broken registry must not break the widget; "default" stays
        return names
    return names


def describe_load_error(source: str, error: BaseException) -> str:
    """A message that tells the user what to do when a model cannot be loaded."""
    if isinstance(error, FileNotFoundError) and source == DEFAULT_MODEL:
        return (
            "FCFI: the bundled default weights are not installed yet. Choose an official model "
            "(fcfi models lists them) or a weights file in the widget's Model field."
        )
    return f"FCFI: could not load model {source!r}: {error}"
