"""``fcfi segment-all IMAGE_OR_FOLDER --out OUT``: segment-all on images, folders and stacks, with dask.

Every 2D plane (a 2D or RGB image, or each slice of a stack with ``--slices all``) is one dask task
that runs :func:`~napari_fcfi.annotation.proposals.segment_all`; the labels of each input are written
with the project's labels writer (:func:`~napari_fcfi.annotation.labels_tiff.write_labels_tiff`) as
``OUT/<name>_labels.tif`` as soon as all its planes are done (a stopped run keeps what it finished; a
plane that fails is named and its input left out, the others are written, exit status 1). By default
the tasks run on local threads
(``--workers``); ``--scheduler ADDRESS`` sends them to an existing dask.distributed cluster (needs the
``dask[distributed]`` extra), where each worker process loads the model once (:func:`worker_model`)
and reads the images itself (so the files must be visible to the workers).
"""

from __future__ import annotations

import argparse
import functools
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_fcfi.annotation.proposal_links import link_to_previous

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IMAGE_OR_FOLDER", help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="output folder for <name>_labels.tif")
    parser.add_argument("--model", default="default", help="model: 'default', a registered name or a path")
    parser.add_argument(
        "--object-size",
        type=float,
        default=None,
        metavar="PX",
        help="expected object diameter in pixels (default: estimated per plane)",
    )
    parser.add_argument(
        "--slices",
        default=None,
        choices=("all",),
        help="stacks (3D, not RGB): segment every slice along the first axis",
    )
    parser.add_argument(
        "--link",
        action="store_true",
        help="with --slices all: a slice's object continuing one of the slice before (IoU >= 0.25) keeps "
        "its id, so one 3D object has one id (default: every slice's objects get their own ids)",
    )
    parser.add_argument(
        "--channel-axis", type=int, default=None, help="axis of channels (default: none; RGB auto)"
    )
    parser.add_argument("--channel", type=int, default=None, help="with --channel-axis: use this channel")
    parser.add_argument("--workers", type=int, default=1, help="local threads running planes in parallel (1)")
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a dask.distributed scheduler (e.g. tcp://host:8786) to run on",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace existing <name>_labels.tif files in --out (never an input)",
    )


@dataclass(frozen=True)
class Plane:
    """One unit of work: the ``index``-th slice (None: the whole 2D image) of ``path``."""

    path: str
    index: int | None


def list_inputs(source: Path) -> list[Path]:
    """The image files of ``source`` (itself when it is a file), sorted, as absolute paths (workers of a
    cluster may run in another directory); labels files are skipped."""
    source = source.absolute()
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"no such image or folder: {source}")
    return sorted(  # (hidden files: macOS "._name.png" sidecars are no images)
        p
        for p in source.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not p.stem.endswith("_labels")
        and not p.name.startswith(".")
    )


def output_names(files: list[Path], out: Path) -> dict[Path, Path]:
    """``OUT/<name>_labels.tif`` for each input; inputs of one name (cell.png and cell.tif) get their
    suffix in it (``cell_png_labels.tif``, ``cell_tif_labels.tif``), and a name still taken (compared
    without case: one file on macOS and Windows) a number, so no result replaces another."""
    stems = [path.stem.casefold() for path in files]
    names: dict[Path, Path] = {}
    taken: set[str] = set()
    for path in files:
        base = path.stem
        if stems.count(path.stem.casefold()) > 1:
            base += "_" + path.suffix.lstrip(".")
        name, number = f"{base}_labels.tif", 1
        while name.casefold() in taken:
            number += 1
            name = f"{base}_{number}_labels.tif"
        taken.add(name.casefold())
        names[path] = out / name
    return names


def _is_stack(shape: tuple[int, ...], channel_axis: int | None) -> bool:
    spatial = len(shape) - (channel_axis is not None)
    rgb = channel_axis is None and len(shape) == 3 and shape[-1] in (3, 4)
    return spatial == 3 and not rgb


def plan(
    files: list[Path], slices: str | None, channel_axis: int | None, channel: int | None = None
) -> list[Plane]:
    """The planes to segment. Raises ValueError, naming the file, for what segment-all cannot read
    as 2D images, RGB(A) images or stacks: a stack without ``--slices all``, a channel axis that does
    not exist or is the stack axis, a channel without a channel axis, more than 3 image axes."""
    from napari_fcfi.engine.io import read_image

    planes = []
    for path in files:
        try:
            shape = tuple(read_image(path).shape)
        except Exception as exc:  # the reader's own advice (e.g. "pip install imageio[pyav]") misleads
            raise ValueError(f"cannot read {path} as an image ({exc}); move it out of the folder") from exc
        rgb = channel_axis is None and len(shape) == 3 and shape[-1] in (3, 4)
        if channel_axis is not None and not -len(shape) <= channel_axis < len(shape):
            raise ValueError(f"--channel-axis {channel_axis} does not exist: {path} has shape {shape}")
        if channel is not None and channel_axis is None and not rgb:
            raise ValueError(f"--channel {channel} needs --channel-axis: {path} has shape {shape}")
        spatial = len(shape) - (channel_axis is not None) - rgb
        if spatial not in (2, 3):
            raise ValueError(
                f"{path} has shape {shape}: segment-all reads 2D images, RGB(A) images and stacks "
                "(Z, Y, X); give --channel-axis for a channel axis"
            )
        if _is_stack(shape, channel_axis):
            if slices != "all":
                raise ValueError(
                    f"{path} is a stack of shape {shape}: pass --slices all to segment every slice"
                )
            if channel_axis is not None and channel_axis % len(shape) == 0:
                raise ValueError(f"{path}: the channel axis cannot be the stack axis (the first)")
            planes += [Plane(str(path), i) for i in range(shape[0])]
        else:
            planes.append(Plane(str(path), None))
    return planes


@functools.lru_cache(maxsize=2)
def worker_model(source: str) -> Any:
    """The model, loaded once per process (each dask worker process keeps its own copy)."""
    from napari_fcfi.model import load_model

    return load_model(source, device="cpu")


def segment_plane(
    plane: Plane, model_source: str, object_size: float | None, channel_axis: int | None, channel: int | None
) -> tuple[np.ndarray, str | None]:
    """Labels of one plane, and why they are empty when they are (reads the image itself, so it runs
    anywhere the file is visible)."""
    from napari_fcfi.annotation.proposals import iter_segment_all
    from napari_fcfi.engine.io import read_image

    image = read_image(plane.path)
    axis = channel_axis
    if plane.index is not None:
        if axis is not None and axis % image.ndim == 0:
            raise ValueError(f"{plane.path}: the channel axis cannot be the stack axis")
        image = image[plane.index]
        axis = None if axis is None else (axis % (image.ndim + 1)) - 1
    steps = iter_segment_all(
        worker_model(model_source),
        np.asarray(image),
        object_size=object_size,
        channel_axis=axis,
        channel=channel,
    )
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value.labels, stop.value.message


def safe_segment_plane(
    plane: Plane, model_source: str, object_size: float | None, channel_axis: int | None, channel: int | None
) -> tuple[np.ndarray | None, str | None, str | None]:
    """:func:`segment_plane`, with what went wrong instead of an exception: one failing plane must not
    take the other files' results with it."""
    try:
        return (*segment_plane(plane, model_source, object_size, channel_axis, channel), None)
    except Exception as exc:  # noqa: BLE001 - reported by name; the other planes go on
        return None, None, f"{type(exc).__name__}: {exc}"


def iter_planes(
    planes: list[Plane], args: argparse.Namespace, progress: Any = None
) -> Iterator[tuple[int, tuple[np.ndarray | None, str | None, str | None]]]:
    """``(plane index, safe_segment_plane result)`` as planes finish, on local dask threads or on the
    cluster at ``args.scheduler``.

    Locally each task hands its labels over as soon as it is done and keeps nothing in dask: the
    caller writes each file once its planes are in (a long run keeps what it finished when stopped,
    memory stays bounded), and no plane waits for a slow one (batches with a barrier did).
    """
    import dask

    settings = (args.model, args.object_size, args.channel_axis, args.channel)
    if args.scheduler:
        from distributed import Client, as_completed

        tasks = [
            dask.delayed(safe_segment_plane, pure=True)(plane, *settings, dask_key_name=f"segment-plane-{i}")
            for i, plane in enumerate(planes)
        ]
        with Client(args.scheduler) as client:
            futures = client.compute(tasks)
            index = {future.key: i for i, future in enumerate(futures)}
            for future in as_completed(futures):
                if progress is not None:
                    progress.update(1)
                yield index[future.key], future.result()
        return
    finished: queue.Queue[tuple[int, Any] | None] = queue.Queue()
    closed = threading.Event()  # the caller stopped reading: planes not begun are skipped

    def segment_and_hand_over(i: int, plane: Plane) -> None:
        if not closed.is_set():
            finished.put((i, safe_segment_plane(plane, *settings)))

    tasks = [
        dask.delayed(segment_and_hand_over, pure=True)(i, plane, dask_key_name=f"segment-plane-{i}")
        for i, plane in enumerate(planes)
    ]
    failure: list[BaseException] = []

    def compute() -> None:
        try:
            dask.compute(*tasks, scheduler="threads", num_workers=max(1, args.workers))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(exc)
        finally:
            finished.put(None)

    # A daemon thread, and a queue read with a timeout: Ctrl+C reaches the caller at once (the planes in
    # flight finish before the process exits; the others are skipped).
    threading.Thread(target=compute, name="fcfi-segment-all", daemon=True).start()
    try:
        while True:
            try:
                item = finished.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                break
            if progress is not None:
                progress.update(1)
            yield item
    finally:
        closed.set()
    if failure:
        raise failure[0]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_fcfi.annotation.outputs import output_problem

    out = Path(args.out)
    if args.link and args.slices != "all":
        print("fcfi segment-all: --link links the slices of stacks: it needs --slices all", file=sys.stderr)
        return 2
    if args.object_size is not None and not (np.isfinite(args.object_size) and args.object_size > 0):
        print(
            f"fcfi segment-all: --object-size must be a positive number of pixels, got {args.object_size}",
            file=sys.stderr,
        )
        return 2
    try:
        files = list_inputs(Path(args.input))
        planes = plan(files, args.slices, args.channel_axis, args.channel)
    except (OSError, ValueError) as exc:
        print(f"fcfi segment-all: {exc}", file=sys.stderr)
        return 2
    if not planes:
        print(f"fcfi segment-all: no images in {args.input}", file=sys.stderr)
        return 2
    targets = output_names(files, out)
    problem = (
        f"--out {out} is a file; give a folder"
        if out.exists() and not out.is_dir()
        else output_problem(targets.values(), files, args.force)
    )
    if problem is not None:  # said before any plane is segmented
        print(f"fcfi segment-all: {problem}", file=sys.stderr)
        return 2
    from napari_fcfi.model import ModelDownloadError

    try:
        worker_model(args.model)  # a wrong name or file is said now, not from inside every task
    except (ValueError, OSError, ModelDownloadError) as exc:
        print(f"fcfi segment-all: cannot load model {args.model!r}: {exc}", file=sys.stderr)
        return 2
    if args.scheduler is None and args.workers > 1:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads() // args.workers))  # no oversubscription
    out.mkdir(parents=True, exist_ok=True)
    count = {path: sum(plane.path == path for plane in planes) for path in {p.path for p in planes}}
    parts: dict[str, list[tuple[int | None, np.ndarray]]] = {}
    failed: dict[str, str] = {}
    with tqdm(total=len(planes), unit="plane", disable=args.no_progress, file=sys.stderr) as bar:
        try:
            for i, (labels, message, error) in iter_planes(planes, args, bar):
                plane = planes[i]
                where = f"{plane.path}" + ("" if plane.index is None else f", slice {plane.index}")
                if labels is None or error is not None:
                    failed.setdefault(plane.path, str(error))
                    print(
                        f"fcfi segment-all: {where}: failed ({error}); nothing written for it",
                        file=sys.stderr,
                    )
                    continue
                if message:  # why nothing was found (the API's SegmentAllWarning)
                    print(f"fcfi segment-all: {where}: {message}", file=sys.stderr)
                parts.setdefault(plane.path, []).append((plane.index, labels))
                if len(parts[plane.path]) == count[plane.path] and plane.path not in failed:
                    _write(targets[Path(plane.path)], parts.pop(plane.path), args.link, plane.path)
        except ImportError as exc:
            print(
                f"fcfi segment-all: --scheduler needs dask.distributed (pip install 'dask[distributed]'): {exc}",
                file=sys.stderr,
            )
            return 2
    if failed:
        print(f"fcfi segment-all: {len(failed)} of {len(count)} input(s) failed (above)", file=sys.stderr)
        return 1
    return 0


def _write(target: Path, parts: list[tuple[int | None, np.ndarray]], link: bool, source: str) -> None:
    """One input's labels: its only plane, or its slices stacked (each slice's objects get ids after the
    previous slices', or with ``link`` the id of the object they continue on the slice before)."""
    from napari_fcfi.annotation.labels_tiff import write_labels_tiff

    if parts[0][0] is None:
        volume = parts[0][1]
    else:
        volume = np.zeros((len(parts), *parts[0][1].shape), np.int32)
        next_id, previous = 1, None
        for index, labels in sorted(parts, key=lambda part: part[0] or 0):
            volume[index], next_id = link_to_previous(previous if link else None, labels, next_id)
            previous = volume[index]
    write_labels_tiff(target, volume, {"name": f"{Path(source).stem} segment-all"})
    print(
        f"{target}: {int(volume.max())} objects"
        if volume.ndim == 2
        else f"{target}: {volume.shape[0]} slices, {int(volume.max())} objects"
    )
