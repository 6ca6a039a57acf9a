"""Run a segmenter against the robot user on a dataset: :func:`evaluate` → :class:`EvalResult`.

A *segmenter* follows the protocol

* ``start(image, gt_ignore=None)``: begin a new object on ``image`` ((H, W) or (H, W, C));
* ``add_click(row, col, positive)``: return the object's probability (float, (H, W)) or mask
  (bool) after the click; probabilities are thresholded with the segmenter's ``threshold``
  attribute (:data:`~napari_fcfi.engine.settings.DEFAULT_THRESHOLD` when it has none).

:func:`evaluate` accepts such an object, a callable returning one, a model (anything
:func:`napari_fcfi.model.load_model` returns, driven through the engine), an engine session, a
baseline name (``"random-walker"``, ``"geodesic"``) or a model source (``"default"``, a path).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.engine import InteractiveSegmenter
from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.evaluation import metrics
from napari_fcfi.evaluation.baselines import BASELINES
from napari_fcfi.evaluation.datasets import open_dataset
from napari_fcfi.evaluation.result_json import JsonResult
from napari_fcfi.evaluation.robot import RobotUser
from napari_fcfi.evaluation.samples import EvalDataset, Sample, SampleList
from napari_fcfi.model import load_model


class EngineSegmenter:
    """Drive a network through :class:`napari_fcfi.engine.InteractiveSegmenter` (one session, reused).

    ``preset`` (e.g. ``"paper"``; ``None`` = the engine's default microscopy protocol) and
    ``settings`` go to the engine unchanged. Consecutive objects on the same image array reuse the
    image (``reset()`` instead of ``set_image``), so per-image preprocessing is paid once.
    """

    def __init__(self, model: Any, *, preset: str | None = None, name: str | None = None, **settings: Any):
        if preset is not None:
            settings["preset"] = preset
        self._session = InteractiveSegmenter(model, **settings)
        self._image: np.ndarray | None = None
        self.name = name or "model"

    @classmethod
    def from_session(cls, session: Any, name: str | None = None) -> EngineSegmenter:
        """Wrap an existing engine session (its settings are kept)."""
        self = cls.__new__(cls)
        self._session = session
        self._image = None
        self.name = name or "model"
        return self

    @property
    def threshold(self) -> float:
        return float(getattr(self._session, "threshold", DEFAULT_THRESHOLD))

    def start(
        self, image: np.ndarray, gt_ignore: np.ndarray | None = None, initial_mask: np.ndarray | None = None
    ) -> None:
        """Begin an object on ``image``; ``initial_mask`` (bool (H, W)) is the engine's starting mask."""
        if initial_mask is None and image is self._image and hasattr(self._session, "reset"):
            self._session.reset()
            return
        # (H, W, 3|4) is RGB(A) for the engine (one intensity range, colours kept); other channel
        # counts are a channel axis (composite).
        channel_axis = -1 if image.ndim == 3 and image.shape[-1] not in (3, 4) else None
        if initial_mask is None:
            self._session.set_image(image, channel_axis=channel_axis)
            self._image = image
        else:
            self._session.set_image(image, channel_axis=channel_axis, initial_mask=initial_mask)
            self._image = None  # reset() would keep this initial mask: the next start sets the image again

    def add_click(self, row: int, col: int, positive: bool) -> np.ndarray:
        return self._session.add_click(row, col, positive)


def _looks_like_model(obj: Any) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "forward")


def resolve_segmenter(
    spec: Any,
    *,
    preset: str | None = None,
    device: str | None = None,
    name: str | None = None,
    engine_settings: dict | None = None,
) -> tuple[str, Callable[[], Any]]:
    """Turn ``spec`` into ``(name, factory)``; ``factory()`` gives an object with ``start``/``add_click``.

    ``spec``: a baseline name, a model source for ``load_model`` (str/Path), a loaded model, an
    engine session (``set_image``/``add_click``), a segmenter object, or a zero-argument callable.
    ``preset`` and ``engine_settings`` (e.g. ``{"input_size": 128}``) configure the engine for models.
    """
    settings = dict(engine_settings or {})
    if isinstance(spec, (str, Path)):
        key = str(spec)
        if key in BASELINES:
            cls = BASELINES[key]
            return name or key, cls
        model = load_model(key, device=device) if device is not None else load_model(key)
        label = name or (Path(key).stem if Path(key).suffix else key)
        return label, lambda: EngineSegmenter(model, preset=preset, name=label, **settings)
    if isinstance(spec, type):  # a segmenter class is a factory (its methods are not bound yet)
        return name or getattr(spec, "name", spec.__name__), spec
    if _looks_like_model(spec):
        label = name or type(spec).__name__
        return label, lambda: EngineSegmenter(spec, preset=preset, name=label, **settings)
    if hasattr(spec, "start") and hasattr(spec, "add_click"):
        return name or getattr(spec, "name", type(spec).__name__), lambda: spec
    if hasattr(spec, "set_image") and hasattr(spec, "add_click"):
        label = name or "model"
        wrapped = EngineSegmenter.from_session(spec, label)
        return label, lambda: wrapped
    if callable(spec):
        return name or getattr(spec, "__name__", "segmenter"), spec
    raise ValueError(
        f"cannot evaluate {type(spec).__name__}: expected a baseline name, a model source, a model, "
        "an engine session, a segmenter with start/add_click, or a factory"
    )


@dataclass
class ObjectResult:
    """Robot session on one object: IoU and click time after each click, and the clicks."""

    sample_id: str
    ious: list[float]
    times: list[float]
    clicks: list[tuple[int, int, bool]] = field(default_factory=list)


@dataclass
class EvalResult(JsonResult):
    """All object sessions of one segmenter on one dataset, with the headline metrics."""

    segmenter: str
    dataset: str
    max_clicks: int
    objects: list[ObjectResult]
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    settings: dict = field(default_factory=dict)

    @property
    def all_ious(self) -> list[list[float]]:
        return [o.ious for o in self.objects]

    @property
    def click_times(self) -> list[float]:
        return [t for o in self.objects for t in o.times]

    def noc(self, threshold: float) -> float:
        return metrics.noc(self.all_ious, threshold, self.max_clicks)

    def nof(self, threshold: float) -> int:
        return metrics.nof(self.all_ious, threshold, self.max_clicks)

    def iou_curve(self) -> np.ndarray:
        return metrics.mean_iou_curve(self.all_ious, self.max_clicks)

    @property
    def summary(self) -> dict:
        """Headline numbers (see :func:`napari_fcfi.evaluation.metrics.summarize`)."""
        return metrics.summarize(self.all_ious, self.click_times, self.max_clicks)

    def to_dict(self) -> dict:
        return {
            "segmenter": self.segmenter,
            "dataset": self.dataset,
            "max_clicks": self.max_clicks,
            "elapsed_s": self.elapsed_s,
            "settings": self.settings,
            "summary": self.summary,
            "skipped": self.skipped,
            "objects": [asdict(o) for o in self.objects],
        }

    @classmethod
    def load_json(cls, path: str | Path) -> EvalResult:
        data = json.loads(Path(path).read_text())
        objects = [
            ObjectResult(o["sample_id"], o["ious"], o["times"], [tuple(c) for c in o.get("clicks", [])])
            for o in data["objects"]
        ]
        return cls(
            data["segmenter"],
            data["dataset"],
            data["max_clicks"],
            objects,
            data.get("skipped", []),
            data.get("elapsed_s", 0.0),
            data.get("settings", {}),
        )


def _as_dataset(dataset: Any) -> EvalDataset:
    if isinstance(dataset, EvalDataset):
        return dataset
    if isinstance(dataset, (str, Path)):
        return open_dataset(dataset)
    if isinstance(dataset, Sample):
        return SampleList([dataset])
    if isinstance(dataset, Iterable):
        return SampleList(dataset)
    raise ValueError(f"cannot evaluate on {type(dataset).__name__}: expected a dataset, a path or samples")


def _to_mask(output: Any, threshold: float, shape: tuple[int, int]) -> np.ndarray:
    output = np.asarray(output)
    if output.shape != shape:
        raise ValueError(f"segmenter returned shape {output.shape}, expected {shape}")
    return output if output.dtype == bool else output > threshold


def run_object(
    segmenter: Any,
    sample: Sample,
    max_clicks: int = 20,
    stop_iou: float | None = None,
    initial_mask: np.ndarray | None = None,
) -> ObjectResult:
    """One robot session: up to ``max_clicks`` clicks on ``sample`` with ``segmenter``.

    The session stops early when no error is left or, if given, when the IoU reaches ``stop_iou``
    (the metrics then carry the last IoU forward). ``initial_mask`` (bool (H, W)) starts the session
    from an existing mask (e.g. a propagated one): it is passed to ``segmenter.start`` (an
    :class:`EngineSegmenter` makes it the engine's initial mask) and the robot's first click corrects it.
    """
    robot = RobotUser(sample.gt_mask, sample.ignore_mask)
    shape = sample.gt_mask.shape
    if initial_mask is None:
        segmenter.start(sample.image, sample.ignore_mask)
        pred = np.zeros(shape, dtype=bool)
    else:
        pred = np.asarray(initial_mask, dtype=bool)
        if pred.shape != shape:
            raise ValueError(f"initial_mask has shape {pred.shape}, the object is {shape}")
        segmenter.start(sample.image, sample.ignore_mask, initial_mask=pred)
    threshold = float(getattr(segmenter, "threshold", DEFAULT_THRESHOLD))
    result = ObjectResult(sample.sample_id, [], [])
    for _ in range(max_clicks):
        click = robot.next_click(pred)
        if click is None:
            break
        t0 = time.perf_counter()
        output = segmenter.add_click(click.row, click.col, click.positive)
        result.times.append(time.perf_counter() - t0)
        pred = _to_mask(output, threshold, shape)
        result.ious.append(metrics.iou(pred, sample.gt_mask, sample.ignore_mask))
        result.clicks.append((click.row, click.col, click.positive))
        if stop_iou is not None and result.ious[-1] >= stop_iou:
            break
    return result


def evaluate(
    segmenter: Any,
    dataset: Any,
    max_clicks: int = 20,
    *,
    name: str | None = None,
    preset: str | None = None,
    device: str | None = None,
    limit: int | None = None,
    stop_iou: float | None = None,
    progress: bool = False,
    engine_settings: dict | None = None,
) -> EvalResult:
    """Evaluate ``segmenter`` (see :func:`resolve_segmenter`) with the robot user on ``dataset``.

    ``dataset``: an :class:`~napari_fcfi.evaluation.datasets.EvalDataset`, a path (type detected),
    or an iterable of :class:`~napari_fcfi.evaluation.datasets.Sample`. ``limit`` keeps the first N
    images (entries). ``stop_iou`` (e.g. 0.9 for fast validation during training) stops an object's
    session once reached; NoC at or below that threshold is unchanged, the IoU curve is then a lower
    bound. ``engine_settings`` go to the engine when a model is evaluated. Objects whose ground
    truth is empty outside the ignore region are skipped (listed in ``EvalResult.skipped``).
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    label, factory = resolve_segmenter(
        segmenter, preset=preset, device=device, name=name, engine_settings=engine_settings
    )
    data = _as_dataset(dataset).limit(limit)
    seg = factory()
    objects: list[ObjectResult] = []
    skipped: list[str] = []
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    with tqdm(total=len(data), desc=f"eval {label}", unit="img", disable=not progress, leave=False) as bar:
        for index in range(len(data)):
            for sample in data.samples(index):
                if not (sample.gt_mask & (True if sample.ignore_mask is None else ~sample.ignore_mask)).any():
                    skipped.append(sample.sample_id)
                    continue
                objects.append(run_object(seg, sample, max_clicks, stop_iou))
            bar.update(1)
            if objects:
                bar.set_postfix(
                    objects=len(objects),
                    noc90=f"{metrics.noc([o.ious for o in objects], 0.9, max_clicks):.2f}",
                )
    settings = {"preset": preset, "stop_iou": stop_iou, "limit": limit, "engine_settings": engine_settings}
    return EvalResult(label, data.name, max_clicks, objects, skipped, time.perf_counter() - t_start, settings)


def format_table(results: Sequence[EvalResult]) -> str:
    """Plain-text results table: one row per segmenter."""
    columns = [
        ("segmenter", "{}", lambda r, s: r.segmenter),
        ("NoC@85", "{:.2f}", lambda r, s: s["noc@85"]),
        ("NoC@90", "{:.2f}", lambda r, s: s["noc@90"]),
        ("NoC@95", "{:.2f}", lambda r, s: s["noc@95"]),
        ("NoF@85", "{}", lambda r, s: s["nof@85"]),
        ("NoF@90", "{}", lambda r, s: s["nof@90"]),
        ("IoU@1", "{:.3f}", lambda r, s: s.get("iou@1", float("nan"))),
        ("IoU@3", "{:.3f}", lambda r, s: s.get("iou@3", float("nan"))),
        ("IoU@5", "{:.3f}", lambda r, s: s.get("iou@5", float("nan"))),
        ("SPC mean", "{:.3f}", lambda r, s: s["spc_mean"]),
        ("SPC median", "{:.3f}", lambda r, s: s["spc_median"]),
        ("objects", "{}", lambda r, s: s["objects"]),
    ]
    rows = []
    for r in results:
        s = r.summary
        rows.append([fmt.format(get(r, s)) for _, fmt, get in columns])
    headers = [c[0] for c in columns]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells):
        return (
            "| "
            + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    out = [sep, line(headers), sep, *(line(r) for r in rows), sep]
    return "\n".join(out)
