"""Measuring annotate-then-adapt on a modality (docs/evaluation.md, "Adapting to the user's data").

:func:`run_protocol`: the objects of the first half of the images (or slices) are the user's
committed labels, the objects of the second half are the next ones the user will segment, and the
robot's NoC@85/90 on them is compared for the base and the adapted model (the rule of
:mod:`.adaptation` decides keep or revert). ``scripts/run_adaptation.py`` runs it; the loaders are
:func:`membrane_entries`, :func:`dsb_entries` and :func:`grabcut_entries`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_fcfi.engine.io import read_image
from napari_fcfi.evaluation.datasets import GrabCutDataset
from napari_fcfi.evaluation.splits import split_instance_folder
from napari_fcfi.training.adaptation import (
    HOLDOUT_FRACTION,
    check_adaptation,
    click_scores,
    hold_back_objects,
    object_samples,
    robot_ious,
)
from napari_fcfi.training.data import MODALITIES, image_modality, load_instance_folder
from napari_fcfi.training.finetune import MIN_OBJECT_AREA, finetune
from napari_fcfi.training.synthetic import compartments_image


# --------------------------------------------------------------------------------- memory probe
class PeakMemory:
    """Peak resident memory of this process above its level at entry (MiB), as a context manager.

    Linux: the kernel's high-water mark is reset at entry (``/proc/self/clear_refs``) and read at exit;
    elsewhere (or when the reset is refused) RSS is sampled every 10 ms by a thread.
    """

    def __init__(self) -> None:
        self.extra_mib = math.nan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            text = Path("/proc/self/status").read_text()
        except OSError:
            return None
        found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(found.group(1)) if found else None

    @staticmethod
    def _rss_kib() -> int:
        value = PeakMemory._status("VmRSS")
        if value is not None:
            return value
        import psutil  # pragma: no cover - non-Linux

        return psutil.Process().memory_info().rss // 1024  # pragma: no cover

    def __enter__(self) -> PeakMemory:
        self._start = self._rss_kib()
        self._peak = self._start
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm = self._status("VmHWM") is not None
        except OSError:
            self._hwm = False
        if not self._hwm:

            def sample() -> None:
                while not self._stop.wait(0.01):
                    self._peak = max(self._peak, self._rss_kib())

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hwm:
            self._peak = max(self._peak, self._status("VmHWM") or 0)
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._peak = max(self._peak, self._rss_kib())
        self.extra_mib = (self._peak - self._start) / 1024


# ------------------------------------------------------------------------------------- protocol
@dataclass
class Entry:
    """One image (or slice) of a modality with its instance labels; ``ignore`` pixels never count."""

    image: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray | None = None
    name: str = ""


def membrane_entries(count: int = 10, seed: int = 2024, shape: tuple[int, int] = (256, 256)) -> list[Entry]:
    """Fresh procedural membrane/EM-like images (compartments with walls), seeded apart from training's."""
    entries = []
    for index in range(count):
        image, labels = compartments_image(np.random.default_rng([seed, 4243, index]), shape)
        entries.append(Entry(image, labels, None, f"membrane-{index}"))
    return entries


def dsb_entries(folder: str | Path, modality: str) -> list[Entry]:
    """The DSB validation split's images of one modality (:func:`~napari_fcfi.training.data.image_modality`)."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    items = load_instance_folder(folder, split_instance_folder(folder)[1])
    return [
        Entry(item.image, item.labels, None, item.name) for item in items if image_modality(item) == modality
    ]


def grabcut_entries(folder: str | Path) -> list[Entry]:
    """GrabCut (``<name>_image.*`` + ``<name>_gt.png``: 255 object, 128 ignore band), one object per image.

    The label image is the object with the ignore band split by distance: band pixels nearer the
    object than the background count as object (what a user's committed label would hold); the band
    is kept as ``ignore`` for the evaluation (as in :class:`~napari_fcfi.evaluation.datasets.GrabCutDataset`).
    """
    dataset = GrabCutDataset(folder)
    entries = []
    for name, image_path, mask_path in dataset._pairs:
        raw = np.asarray(read_image(mask_path, lazy=False))
        raw = raw[..., 0] if raw.ndim == 3 else raw
        image = np.asarray(read_image(image_path, lazy=False))
        image = image[..., :3] if image.ndim == 3 else image
        band = raw == 128
        labels = (raw > 128).astype(np.int32)
        if band.any():
            to_object = ndi.distance_transform_edt(~(raw > 128))
            to_background = ndi.distance_transform_edt(~(raw < 128))
            labels[band & (to_object < to_background)] = 1
        entries.append(Entry(image, labels, band if band.any() else None, name))
    return entries


def _summary(ious: list[list[float]], max_clicks: int) -> dict[str, float]:
    return {**click_scores(ious, max_clicks), "objects": len(ious)}


def run_protocol(
    base: Any,
    entries: Sequence[Entry],
    *,
    name: str,
    time_budget_s: float = 180,
    steps: int | None = None,
    seed: int = 0,
    fraction: float = HOLDOUT_FRACTION,
    max_clicks: int = 20,
    eval_objects: int = 60,
    eval_min_area: int = 30,
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Any]:
    """Annotate then adapt on ``entries``: the first half is committed, the second half evaluated.

    The objects of ``entries[:ceil(n/2)]`` are the user's labels: :func:`adapt_with_check` holds
    ``fraction`` of them back, adapts on the rest and decides whether to keep the adapted model. The
    robot user (at most ``max_clicks``, sessions stopped at IoU 0.9) then segments at most
    ``eval_objects`` objects (area >= ``eval_min_area``) of ``entries[ceil(n/2):]`` with the base and
    the adapted model. Returns ``(report, adapted model)``: the report is a JSON-ready dict (counts,
    NoC@85/90 both ways, change in %, the decision, adaptation seconds and steps, peak extra memory of
    the adaptation, per-object IoUs).
    """
    if len(entries) < 2:
        raise ValueError(f"{name}: need at least 2 images (first half adapted on, second half evaluated)")
    half = (len(entries) + 1) // 2
    first, second = entries[:half], entries[half:]
    images = [e.image for e in first]
    train_labels, held_labels = hold_back_objects([e.labels for e in first], fraction, seed)
    n_train = sum(
        len([a for a in np.unique(t[t > 0], return_counts=True)[1] if a >= MIN_OBJECT_AREA])
        for t in train_labels
    )
    n_held = sum(len(np.unique(h[h > 0])) for h in held_labels)
    say(
        f"{name}: {len(first)} images to adapt on ({n_train} objects, {n_held} held back), "
        f"{len(second)} to evaluate"
    )
    last = [0.0]

    def progress(fraction_done: float, message: str) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            say(f"  {fraction_done:.0%} {message}")

    with PeakMemory() as memory:
        adapted = finetune(
            base, images, train_labels, time_budget_s=time_budget_s, steps=steps, seed=seed, progress=progress
        )
    info = adapted.fcfi_metadata["adaptation"]
    say(
        f"  adapted: {info['steps']} steps in {info['seconds']:.0f} s, peak extra memory {memory.extra_mib:.0f} MiB"
    )
    check = check_adaptation(base, adapted, images, held_labels, seed=seed, progress=progress)
    say(
        f"  held-back check on {check.objects} objects: clicks {check.base_clicks:.2f} -> "
        f"{check.adapted_clicks:.2f}, confidence {100 * check.confidence:.0f} %: "
        f"{'keep' if check.keep else 'revert'} ({check.seconds:.0f} s)"
    )
    samples = object_samples(
        [e.image for e in second],
        [e.labels for e in second],
        ignores=[e.ignore for e in second],
        max_objects=eval_objects,
        min_area=eval_min_area,
        seed=seed,
        names=[e.name for e in second],
    )
    evaluated: dict[str, Any] = {}
    for label, model in (("base", base), ("adapted", adapted)):
        t0 = time.perf_counter()
        ious = robot_ious(model, samples, max_clicks)
        evaluated[label] = {
            **_summary(ious, max_clicks),
            "seconds": round(time.perf_counter() - t0, 1),
            "ious": {s.sample_id: i for s, i in zip(samples, ious)},
        }
        say(
            f"  {label}: NoC@85 {evaluated[label]['noc85']:.2f}, NoC@90 {evaluated[label]['noc90']:.2f} "
            f"on {len(samples)} objects"
        )
    change = {
        key: 100.0 * (evaluated["adapted"][key] - evaluated["base"][key]) / evaluated["base"][key]
        for key in ("noc85", "noc90")
    }
    report = {
        "modality": name,
        "images": {"adapted_on": len(first), "evaluated": len(second)},
        "objects": {
            "trained": n_train,
            "held_back": n_held,
            "checked": check.objects,
            "evaluated": len(samples),
        },
        "base": evaluated["base"],
        "adapted": evaluated["adapted"],
        "change_percent": change,
        "check": check.to_dict(),
        "kept": check.keep,
        "adaptation": {k: v for k, v in info.items() if k != "held_back_check"},
        "peak_extra_memory_mib": round(memory.extra_mib, 1),
        "settings": {
            "time_budget_s": time_budget_s,
            "steps": steps,
            "seed": seed,
            "fraction": fraction,
            "max_clicks": max_clicks,
            "eval_objects": eval_objects,
            "eval_min_area": eval_min_area,
        },
    }
    return report, adapted


__all__ = ["Entry", "PeakMemory", "dsb_entries", "grabcut_entries", "membrane_entries", "run_protocol"]
