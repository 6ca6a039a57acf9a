"""Predictions off the GUI thread: one engine session per slice, newest request wins.

:class:`Predictor` turns "slice ``key`` of image ``image`` now has these clicks" into a job for the
runner (:mod:`.worker`). The job keeps one engine session per slice on the worker thread and only
adds or undoes the clicks that changed, so a click costs one network run. Each request carries a
generation number; a result is delivered only if it answers the newest request for its slice, so a
stale result never overwrites a newer one. The job returns the engine's sparse probability, the
full-plane mask at the requested threshold and its box, so the GUI thread only copies a box into the
preview; a threshold change re-thresholds the stored probability without running the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_fcfi.annotation.geometry import ImageGeometry, SliceKey, read_plane
from napari_fcfi.engine.clicks import Click
from napari_fcfi.engine.windows import Box, Patch

from .models import ModelCache, describe_load_error
from .worker import JobResult

SegmenterFactory = Callable[[Any], Any]


def engine_segmenter_factory(**settings: Any) -> SegmenterFactory:
    """Factory of :class:`napari_fcfi.engine.InteractiveSegmenter` sessions with ``settings``."""

    def build(model: Any) -> Any:
        from napari_fcfi.engine import InteractiveSegmenter

        return InteractiveSegmenter(model, **settings)

    return build


def default_cpu_threads() -> int:
    """Torch threads for interactive CPU inference: all cores but one (napari's main thread)."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class Request:
    """Everything a prediction for one slice depends on."""

    image_id: str
    key: SliceKey
    clicks: tuple[Click, ...]
    serial: int  # the slice object's serial: a new one restarts the session (new start mask)
    initial_mask: np.ndarray | None
    model_source: str
    device: str
    channel: Any
    threshold: float
    cpu_threads: int | None


@dataclass
class Prediction:
    """What comes back to the GUI thread."""

    request: Request
    probability: Patch | None
    mask: np.ndarray
    box: Box | None
    guess: str | None = None  # why the mask is only a guess (a blank slice, a click on no data)


@dataclass
class _Session:
    """Worker-thread side of one slice: the engine session and the clicks applied to it."""

    segmenter: Any
    config: tuple
    applied: tuple[Click, ...] = ()


def mask_from(
    probability: Patch | None, shape: tuple[int, int], threshold: float
) -> tuple[np.ndarray, Box | None]:
    """Full-plane bool mask of a sparse probability at ``threshold`` and its bounding box."""
    mask = np.zeros(shape, dtype=bool)
    if probability is None:
        return mask, None
    box = probability.bbox_above(threshold)
    if box is None:
        return mask, None
    mask[probability.box.slices] = probability.values > threshold
    return mask, box


def rethreshold(states: Iterable[Any], threshold: float, current: Any | None) -> str | None:
    """Cut the probabilities already computed at ``threshold`` (no network run) on every clicked slice of
    ``states`` (the images' states). Propagated and filled slices keep no probability (a 20000² stack
    would not fit), so they keep their masks: returns what to tell when ``current``'s image has some."""
    for state in states:
        for obj in state.objects.slices.values():
            probability = getattr(obj, "probability", None)
            if obj.clicks and probability is not None:
                obj.mask, obj.mask_box = mask_from(probability, state.geometry.plane_shape, threshold)
    made = (  # a propagated slice the user corrected has clicks: it was re-cut above
        0
        if current is None
        else sum(o.from_propagation and not o.clicks for o in current.objects.slices.values())
    )
    if not made:
        return None
    return (
        f"FCFI: threshold {threshold:g} applies to clicked slices; {made} propagated or filled slice(s) "
        "keep the masks they were made with (propagate or fill again to remake them)"
    )


class Predictor:
    """Builds prediction jobs and routes their results (see the module docstring)."""

    def __init__(
        self,
        runner: Any,
        model_cache: ModelCache,
        factory: SegmenterFactory,
        on_prediction: Callable[[Prediction], None],
        on_error: Callable[[Hashable, str], None],
    ) -> None:
        self.runner = runner
        self.model_cache = model_cache
        self.factory = factory
        self.on_prediction = on_prediction
        self.on_error = on_error
        self._sessions: dict[tuple[str, SliceKey], _Session] = {}  # touched by the worker thread only
        self._newest: dict[Hashable, int] = {}
        self._generation = 0
        self.runner.on_result = self._deliver

    def request(self, request: Request, image: Any, geometry: ImageGeometry) -> None:
        slot = (request.image_id, request.key)
        self._generation += 1
        self._newest[slot] = self._generation
        self.runner.submit(slot, self._generation, self._job(request, image, geometry))

    def cancel(self, image_id: str, key: SliceKey) -> None:
        """Results still in flight for this slice are dropped."""
        self._newest[(image_id, key)] = -1

    def pending(self, image_id: str, key: SliceKey) -> bool:
        return self._newest.get((image_id, key), -1) > 0

    def _job(self, request: Request, image: Any, geometry: ImageGeometry) -> Callable[[], Prediction]:
        sessions, cache, factory = self._sessions, self.model_cache, self.factory

        def job() -> Prediction:
            if request.cpu_threads and request.device.startswith("cpu"):
                import torch

                if torch.get_num_threads() != request.cpu_threads:
                    torch.set_num_threads(request.cpu_threads)
            slot = (request.image_id, request.key)
            config = (request.model_source, request.device, request.channel, request.serial)
            session = sessions.get(slot)
            if session is None or session.config != config:
                try:
                    model = cache.get(request.model_source, request.device)
                except Exception as error:
                    raise RuntimeError(describe_load_error(request.model_source, error)) from error
                segmenter = factory(model)
                segmenter.set_image(
                    read_plane(image, geometry, request.key),
                    channel_axis=geometry.slice_channel_axis(),
                    channel=request.channel,
                    initial_mask=request.initial_mask,
                )
                session = sessions[slot] = _Session(segmenter, config)
            segmenter = session.segmenter
            keep = 0
            while (
                keep < min(len(session.applied), len(request.clicks))
                and session.applied[keep] == request.clicks[keep]
            ):
                keep += 1
            try:
                for _ in range(len(session.applied) - keep):
                    segmenter.undo()
                    session.applied = session.applied[:-1]
                for click in request.clicks[keep:]:
                    segmenter.add_click(click.row, click.col, click.positive)
                    session.applied += (click,)
                probability = getattr(segmenter, "probability_patch", None)
                if probability is None and request.clicks and not hasattr(segmenter, "probability_patch"):
                    # Engine stand-ins without the sparse form: wrap the full map.
                    from napari_fcfi.engine.windows import full_box

                    full = np.asarray(segmenter.probability, dtype=np.float32)
                    probability = Patch.from_array(full_box(*full.shape), full)
            except Exception:
                sessions.pop(slot, None)  # rebuilt and replayed on the next request
                raise
            mask, box = mask_from(probability, geometry.plane_shape, request.threshold)
            return Prediction(request, probability, mask, box, guess=_guess(segmenter, request.clicks))

        return job

    def _deliver(self, result: JobResult) -> None:
        if self._newest.get(result.slot) != result.generation:
            return  # stale: a newer request for this slice exists (or it was cancelled)
        self._newest.pop(result.slot, None)
        if result.error is not None:
            message = (
                str(result.error) if isinstance(result.error, RuntimeError) else f"FCFI: {result.error!r}"
            )
            self.on_error(result.slot, message)
            return
        self.on_prediction(result.value)

    def forget_image(self, image_id: str) -> None:
        """Drop the engine sessions of an image (removed, or its channel choice changed)."""

        # Submitted as a job so the dictionary is only touched on the worker thread.
        def job() -> None:
            for slot in [s for s in self._sessions if s[0] == image_id]:
                self._sessions.pop(slot, None)

        self.runner.submit(("forget", image_id), 0, job)


def _guess(segmenter: Any, clicks: tuple[Click, ...]) -> str | None:
    """Why the network's mask is only a guess on this slice (None when it is not)."""
    if not getattr(segmenter, "image_has_contrast", True):
        return (
            "this slice has no contrast (one value everywhere, or no finite value): the network sees a "
            "blank image, so the mask is only a guess"
        )
    has_data = getattr(segmenter, "has_data_at", None)
    if clicks and has_data is not None and not has_data(clicks[-1].row, clicks[-1].col):
        return (
            "the last click is on a pixel without data (NaN or infinite): the network sees no image "
            "there, so the mask is only a guess"
        )
    return None
