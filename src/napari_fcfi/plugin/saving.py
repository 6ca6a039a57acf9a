"""Saving the click log of the labels layer commits go to, with a model ``fcfi segment`` can load."""

from __future__ import annotations

from pathlib import Path

from .committing import click_log_metadata
from .controller import SegmentationController
from .io import default_labels_path
from .models import available_model_names


def save_click_log(controller: SegmentationController, path: str | Path | None) -> tuple[Path | None, str]:
    """Write the click log to ``path``; returns the file written (None: not saved) and the status line."""
    log = controller.click_log
    if not len(log):
        return None, "FCFI: no committed objects yet; nothing to save"
    if path is None or str(path) in ("", ".") or Path(path).is_dir():
        path = default_click_log_path(
            controller, None if path is None or str(path) in ("", ".") else Path(path)
        )
    settings, state = controller.settings, controller.state
    try:
        model = loadable_model(controller, Path(path))
    except (OSError, ValueError) as error:
        return None, f"FCFI: click log not saved: the model in use could not be saved beside it ({error})"
    log.metadata = click_log_metadata(
        controller.labels_layer, state, model, settings.device, settings.threshold, controller.engine_settings
    )
    for record in log.records:  # objects of the model in use name it as saved (loadable)
        if record.made_with.get("model") == settings.model_source:
            record.made_with["model"] = model
    written = log.save(path)
    beside = "" if model == settings.model_source else f" (with the model in use as {model})"
    return written, f"FCFI: click log saved to {written}{beside}"


def default_click_log_path(controller: SegmentationController, folder: Path | None = None) -> Path:
    """``<labels file name> clicks.csv`` beside the labels file Save labels writes (or in ``folder``),
    numbered so that it never replaces a file (as Save labels does)."""
    labels_file = default_labels_path(controller.labels_layer, controller.image_layer)
    folder = folder or labels_file.parent
    candidate, number = folder / f"{labels_file.stem} clicks.csv", 2
    while candidate.exists():
        candidate, number = folder / f"{labels_file.stem} clicks {number}.csv", number + 1
    return candidate


def loadable_model(controller: SegmentationController, log_path: Path) -> str:
    """The model source the log names: one ``fcfi segment`` can load.

    A model made in this session (an adapted one, only in the model cache) is saved beside the log
    as ``<log name>.model.safetensors`` (with its model card) and named relative to the log.
    """
    settings = controller.settings
    source = settings.model_source
    if source in available_model_names() or Path(source).is_file():
        return source
    model = controller.model_cache.get(source, settings.device)
    if "adaptation" not in (getattr(model, "fcfi_metadata", None) or {}):
        return source  # a name the model loader knows
    from napari_fcfi.training.finetune import save_adapted

    target = log_path.with_suffix("").with_name(log_path.with_suffix("").name + ".model.safetensors")
    return save_adapted(model, target).name
