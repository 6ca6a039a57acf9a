"""``fcfi segment``: segment an image headlessly from a click log.

::

    fcfi segment IMAGE --clicks CLICKS.csv --out LABELS.tif [--model default|NAME|PATH] [--device auto]
                 [--channel-axis N] [--channel C ...] [--preset microscopy|paper] [--input-size S]

* ``IMAGE``: TIFF, ``.npy`` (memory-mapped) or anything scikit-image reads
  (:func:`napari_fcfi.engine.io.read_image`). Its axes are ``[leading...,] Y, X`` plus an optional
  channel axis given with ``--channel-axis`` (e.g. 1 for Z, C, Y, X), or RGB(A) as the last axis (an
  array whose last axis has 3 or 4 entries, unless ``--channel-axis`` says otherwise).
* ``CLICKS``: the click log of :mod:`napari_fcfi.annotation.clicklog` (what the napari widget saves).
  Every object's steps (clicks on slices, edits from an initial mask, propagations through the
  stack) are replayed in order and painted with the widget's rules (:mod:`.painting`), so the
  labels equal the widget's.
* Settings recorded in the log (model, preset, threshold, input size, channel axis and channel, the
  labels dtype, scale and translate) are used unless the command line gives them. Each object is
  replayed at the threshold it was committed with (``--threshold`` overrides them all); a model file
  named by the log without a folder is looked up beside the log (an adapted model the widget saved).
* ``LABELS``: a zlib-compressed TIFF with the image's shape without the channel axis, the labels
  dtype the widget used (else uint16, uint32 above 65535), and the layer's scale/translate
  (:mod:`.labels_tiff`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="image file (TIFF, .npy, PNG, JPEG, ...)")
    parser.add_argument(
        "--clicks", type=Path, required=True, help="click-log CSV (object, [step,] [z,] row, col, positive)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output label TIFF")
    parser.add_argument(
        "--force", action="store_true", help="replace --out if it exists (never the image or the log)"
    )
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
        "--preset",
        choices=("microscopy", "paper"),
        default=None,
        help="engine protocol (default: the log's, else microscopy)",
    )
    parser.add_argument("--input-size", type=int, default=None, help="network working size (pixels)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="mask threshold (default: the log's, else 0.49)"
    )
    parser.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let objects paint over earlier labels (default: as recorded per object, else no)",
    )


def image_geometry_for(image: Any, channel_axis: int | None, recorded: dict[str, Any]) -> Any:
    """Label-grid geometry of an image file: a leading channel axis, or RGB(A) as the last axis."""
    from .geometry import make_geometry

    shape = tuple(int(s) for s in image.shape)
    rgb = channel_axis is None and len(shape) >= 3 and shape[-1] in (3, 4) and bool(recorded.get("rgb", True))
    ndim = len(shape) - (1 if rgb or channel_axis is not None else 0)
    scale = recorded.get("scale")
    translate = recorded.get("translate")
    if scale is not None and len(scale) != ndim:
        scale = None  # recorded for another layout: the labels keep unit scale
    if translate is not None and len(translate) != ndim:
        translate = None
    if channel_axis is not None and not rgb:  # recorded per label axis: the channel axis gets unit values
        axis = channel_axis % len(shape)
        scale = None if scale is None else [*scale[:axis], 1.0, *scale[axis:]]
        translate = None if translate is None else [*translate[:axis], 0.0, *translate[axis:]]
    return make_geometry(
        shape, channel_axis, rgb=rgb, scale=scale, translate=translate, leading_channels_only=False
    )


def _logged_model(log_path: Path, source: str | None) -> str:
    """The log's model; a relative file name is looked up beside the log (the widget saves an adapted
    model there)."""
    if not source:
        return "default"
    beside = Path(log_path).parent / source
    if not Path(source).is_absolute() and not Path(source).exists() and beside.is_file():
        return str(beside)
    return source


def run(args: argparse.Namespace) -> int:
    from napari_fcfi.engine.io import read_image
    from napari_fcfi.model import ModelDownloadError, load_model

    from .clicklog import ClickLog, read_log_metadata
    from .labels_tiff import labels_file_target, write_labels_tiff
    from .outputs import output_problem
    from .replay import replay_click_log

    args.out = labels_file_target(args.out)  # the file the writer makes (e.g. IMAGE -> IMAGE.tif)
    problem = output_problem([args.out], [args.image, args.clicks], args.force)
    if problem is not None:  # said before the replay's minutes, not after
        print(f"fcfi segment: error: {problem}", file=sys.stderr)
        return 2
    try:
        image = read_image(args.image)
        recorded = dict(read_log_metadata(args.clicks).get("settings") or {})
        channel_axis = args.channel_axis if args.channel_axis is not None else recorded.get("channel_axis")
        geometry = image_geometry_for(image, channel_axis, recorded)
        log = ClickLog.load(args.clicks, plane_shape=geometry.plane_shape)
        if not log.records:
            raise ValueError(f"{args.clicks}: the click log has no objects")
        if len(log.axes or ()) != len(geometry.slice_shape):
            raise ValueError(
                f"the image has {len(geometry.slice_shape)} leading (stack) axes but the click log has "
                f"{len(log.axes or ())} axis column(s) {list(log.axes or ())}; add one column per leading axis "
                "(e.g. 'z' for a Z, Y, X stack)"
            )
        if args.overwrite is not None:
            for record in log.records:
                record.overwrite = args.overwrite
        if args.threshold is not None:  # one threshold for every object and step
            for record in log.records:
                record.threshold = None
                record.steps = [replace(step, threshold=None) for step in record.steps]
        model = load_model(
            args.model or _logged_model(args.clicks, log.metadata.get("model")), device=args.device
        )
        settings: dict[str, Any] = {"preset": args.preset or recorded.get("preset") or "microscopy"}
        for key in ("input_size", "threshold", "focus_size", "min_window", "expansion_ratio"):
            value = getattr(args, key, None) if key in ("input_size", "threshold") else None
            value = value if value is not None else recorded.get(key)
            if value is not None:
                settings[key] = value
        channel = recorded.get("channel") if args.channel is None else args.channel
        if isinstance(channel, list):
            channel = channel[0] if len(channel) == 1 else tuple(channel)
        if args.channel is not None:  # one channel for every object, as told
            for record in log.records:
                record.made_with.pop("channel", None)

        def model_for(name: str) -> Any:
            """The model an object was made with, when it is not the log's (a session switched)."""
            try:
                return load_model(_logged_model(args.clicks, name), device=args.device)
            except (ValueError, FileNotFoundError, OSError, ModelDownloadError) as error:
                print(
                    f"fcfi segment: warning: objects made with model {name!r} replay with the log's "
                    f"model ({error})",
                    file=sys.stderr,
                )
                return None

        labels = replay_click_log(
            model,
            image,
            geometry,
            log,
            channel=channel,
            dtype=recorded.get("labels_dtype"),
            model_for=None if args.model else model_for,  # --model: every object with that model
            **settings,
        )
    except (ValueError, FileNotFoundError, ModelDownloadError) as error:
        print(f"fcfi segment: error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = write_labels_tiff(
        str(args.out),
        labels,
        {"scale": geometry.scale, "translate": geometry.translate, "name": args.out.stem},
    )
    n_objects = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
    print(
        f"wrote {written[0]}: shape {labels.shape}, {labels.dtype}, {n_objects} labelled object(s) "
        f"from the click log's {len(log.records)} commit(s) (a later edit of a label is a commit too)"
    )
    return 0
