"""``fcfi segment``: segment an image headlessly from a click log.

::

    fcfi segment IMAGE --clicks CLICKS.csv --out LABELS.tif [--model default|NAME|PATH] [--device auto]
                 [--channel-axis N] [--channel C ...] [--preset microscopy|paper] [--input-size S]

* ``IMAGE``: TIFF (tifffile), ``.npy`` (memory-mapped) or anything scikit-image reads. Its axes are
  ``[leading...,] Y, X`` plus an optional channel axis (``--channel-axis``); a 3D array whose last axis
  has 3 or 4 entries is RGB(A) unless ``--channel-axis`` says otherwise.
* ``CLICKS``: the click-log CSV of :mod:`napari_fcfi.engine.io` (what the napari widget saves):
  columns ``object, [leading axes...,] row, col, positive``. Stacks need one column per leading axis
  (``z``; ``t,z`` for 4D), in image axis order.
* Each object's clicks on one slice are one session, applied in file order. Label ids are the
  object values when all of them are integers >= 1, otherwise 1..n in order of first appearance.
  Where objects overlap, a later object paints only background (the widget's default) unless the
  log's settings say ``"overwrite": true`` or ``--overwrite`` is given.
* Settings recorded in the log's metadata line by the widget (model, preset, threshold, channel axis,
  channel, overwrite) are used unless the command line gives them, so a saved log regenerates the
  widget's labels.
* ``LABELS``: a zlib-compressed TIFF with the image's shape without the channel axis, uint16
  (uint32 when an id exceeds 65535).
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .io import ClickLog, load_click_log, read_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="image file (TIFF, .npy, PNG, JPEG, ...)")
    parser.add_argument("--clicks", type=Path, required=True, help="click-log CSV (object, [z,] row, col, positive)")
    parser.add_argument("--out", type=Path, required=True, help="output label TIFF")
    parser.add_argument(
        "--model",
        default=None,
        help="'default', a registered model name or a file path (default: the log's model, else 'default')",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--channel-axis", type=int, default=None, help="index of the channel axis, if any")
    parser.add_argument(
        "--channel", type=int, nargs="+", default=None, help="channel index, or 2-3 indices for a composite"
    )
    parser.add_argument(
        "--preset", choices=("microscopy", "paper"), default=None, help="engine protocol (default: the log's, else microscopy)"
    )
    parser.add_argument("--input-size", type=int, default=None, help="network working size (pixels)")
    parser.add_argument("--threshold", type=float, default=None, help="mask threshold (default: the log's, else 0.49)")
    parser.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let later objects paint over earlier labels (default: the log's setting, else no)",
    )


def label_ids(log: ClickLog) -> dict[Any, int]:
    """Object value -> label id (the value itself when all are integers >= 1, else 1..n)."""
    objects = list(OrderedDict.fromkeys(r.object for r in log.records))
    if objects and all(isinstance(o, int) and o >= 1 for o in objects):
        return {o: o for o in objects}
    return {o: i + 1 for i, o in enumerate(objects)}


def segment_with_log(
    model: Any,
    image: Any,
    log: ClickLog,
    channel_axis: int | None = None,
    channel: Any = None,
    overwrite: bool = False,
    **settings: Any,
) -> np.ndarray:
    """Label array for ``image`` from ``log`` (see the module docstring for all rules)."""
    from .session import InteractiveSegmenter

    shape = tuple(int(s) for s in image.shape)
    ndim = len(shape)
    if channel_axis is None and ndim == 3 and shape[-1] in (3, 4):
        rgb_last = True
        non_channel = [0, 1]
    else:
        rgb_last = False
        if channel_axis is not None:
            if not -ndim <= channel_axis < ndim:
                raise ValueError(f"--channel-axis {channel_axis} is out of range for an image of shape {shape}")
            channel_axis %= ndim
        non_channel = [a for a in range(ndim) if a != channel_axis]
    if len(non_channel) < 2:
        raise ValueError(f"image of shape {shape} has fewer than 2 spatial axes")
    leading = non_channel[:-2]
    if len(log.axes) != len(leading):
        raise ValueError(
            f"the image has {len(leading)} leading (stack) axes but the click log has "
            f"{len(log.axes)} axis column(s) {list(log.axes)}; add one column per leading axis "
            f"(e.g. 'z' for a Z, Y, X stack)"
        )
    out_shape = tuple(shape[a] for a in non_channel)
    ids = label_ids(log)
    dtype = np.uint16 if max(ids.values(), default=0) <= np.iinfo(np.uint16).max else np.uint32
    labels = np.zeros(out_shape, dtype=dtype)

    groups: OrderedDict[tuple, list] = OrderedDict()
    for record in log.records:
        for axis, value in zip(leading, record.position):
            if not 0 <= value < shape[axis]:
                raise ValueError(f"click {record} has index {value} outside axis {axis} of size {shape[axis]}")
        groups.setdefault((record.object, record.position), []).append(record)

    segmenter = InteractiveSegmenter(model, **settings)
    for (obj, position), records in groups.items():
        index: list[Any] = [slice(None)] * ndim
        for axis, value in zip(leading, position):
            index[axis] = value
        plane = image[tuple(index)] if leading else image
        slice_channel_axis = None
        if channel_axis is not None:
            slice_channel_axis = channel_axis - sum(1 for a in leading if a < channel_axis)
        segmenter.set_image(plane, channel_axis=None if rgb_last else slice_channel_axis, channel=channel)
        for record in records:
            try:
                segmenter.add_click(record.row, record.col, record.positive)
            except ValueError as error:
                raise ValueError(f"object {obj!r} at {position}: {error}") from None
        plane_labels = labels[tuple(position)]
        paint = segmenter.mask if overwrite else segmenter.mask & (plane_labels == 0)
        plane_labels[paint] = ids[obj]
    return labels


def run(args: argparse.Namespace) -> int:
    import tifffile

    from napari_fcfi.model import ModelDownloadError

    try:
        log = load_click_log(args.clicks)
        if not log.records:
            raise ValueError(f"{args.clicks}: the click log has no clicks")
        image = read_image(args.image)
        from napari_fcfi.model import load_model

        recorded = log.metadata.get("settings") or {}
        model = load_model(args.model or log.metadata.get("model") or "default", device=args.device)
        settings: dict[str, Any] = {"preset": args.preset or recorded.get("preset") or "microscopy"}
        if args.input_size is not None:
            settings["input_size"] = args.input_size
        threshold = args.threshold if args.threshold is not None else recorded.get("threshold")
        if threshold is not None:
            settings["threshold"] = float(threshold)
        channel_axis = args.channel_axis if args.channel_axis is not None else recorded.get("channel_axis")
        channel = recorded.get("channel") if args.channel is None else args.channel
        if isinstance(channel, list):
            channel = channel[0] if len(channel) == 1 else tuple(channel)
        overwrite = bool(recorded.get("overwrite", False)) if args.overwrite is None else args.overwrite
        labels = segment_with_log(
            model, image, log, channel_axis=channel_axis, channel=channel, overwrite=overwrite, **settings
        )
    except (ValueError, FileNotFoundError, ModelDownloadError) as error:
        print(f"fcfi segment: error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(args.out, labels, compression="zlib")
    n_objects = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
    print(f"wrote {args.out}: shape {labels.shape}, {labels.dtype}, {n_objects} object(s) from {len(log.records)} clicks")
    return 0
