"""Adapt a model to the user's own objects: :func:`finetune` and :func:`save_adapted`.

The user has segmented some objects (committed labels); a few minutes of the same iterative click
training that built the model (:class:`~napari_fcfi.training.trainer.Trainer`,
:class:`~napari_fcfi.training.data.TrainingSampler`: object-centred crops at the model's working
size, intensity and geometric augmentation, robot clicks on the network's own predictions, the FCFI
loss with its FFCM/CFFM terms) on those objects gives a model that needs fewer clicks on the next
ones. The input model is never modified: a deep copy is trained.

Whether to keep the adapted model is decided on objects held back from training
(:mod:`napari_fcfi.training.adaptation`: ``hold_back_objects``, ``check_adaptation``,
``adapt_with_check``), the rule the napari widget uses.

Choices (measured in docs/evaluation.md, "Adapting to the user's data"):

* batch of :data:`BATCH_SIZE` crops of at most :data:`CROP_SIZE` px cut from windows of the model's
  working size (``input_size``, as in ``fcfi train --crop-size 160 --input-size 256``): objects keep
  the pixel size the engine shows them at;
* BatchNorm statistics frozen (a batch of four crops from a handful of images is a poor estimate of
  them); all weights train, Adam at :data:`LEARNING_RATE` with a short warm-up and a cosine decay
  over the step horizon;
* the number of robot clicks simulated before a step and the loss weights are the base model's
  training settings when its metadata records them;
* no files are written; the batches are drawn in this process (no worker processes).
"""

from __future__ import annotations

import copy
import datetime
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_fcfi.engine.settings import resolve_settings
from napari_fcfi.model import save_model
from napari_fcfi.training.ablation import feedback_modules_in
from napari_fcfi.training.data import LabeledImage, TrainingSampler, make_labeled_image
from napari_fcfi.training.losses import LossWeights
from napari_fcfi.training.trainer import TrainConfig, Trainer

#: Crops per optimizer step.
BATCH_SIZE = 4
#: Largest training crop side (px); smaller when the model's working size is smaller.
CROP_SIZE = 160
#: Peak learning rate (the bundled model was trained at 5e-4 decaying to 1e-5).
LEARNING_RATE = 1e-4
#: Objects smaller than this (px) are not trained on (as in ``fcfi train``).
MIN_OBJECT_AREA = 12
#: Seconds between two time-budget re-estimations of the step horizon.
_RETUNE_SECONDS = 2.0

#: ``progress(done_fraction, message)``; returning True cancels (the partial result is returned).
ProgressCallback = Callable[[float, str], Any]

_SAVED_METADATA = ("name", "description", "input_size", "training", "adaptation")


# ------------------------------------------------------------------------------------------ input
def as_instance_labels(labels: Any, index: int = 0) -> np.ndarray:
    """``labels`` as non-negative int64 ids, or ValueError."""
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(
            f"labels[{index}] has shape {array.shape}; expected a 2D (H, W) instance label image "
            "(pass sequences of images, e.g. [image] and [labels] for one image)"
        )
    if array.dtype == bool:
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.integer):
        values = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise ValueError(
                f"labels[{index}] ({array.dtype}) holds non-integer values; instance labels must be "
                "whole numbers (0 background, each other id one object)"
            )
        values = array.astype(np.int64)
    else:
        raise ValueError(f"labels[{index}] has dtype {array.dtype}; instance labels must be integers")
    if values.size and values.min() < 0:
        raise ValueError(f"labels[{index}] holds negative ids; 0 is background, objects are ids > 0")
    return values


def _image(image: Any, index: int) -> np.ndarray:
    """``image`` as the engine reads it without a channel axis: (H, W) or RGB (H, W, 3), or ValueError."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return array[..., :3]
    if array.ndim != 2:
        raise ValueError(
            f"images[{index}] has shape {array.shape}; expected a 2D gray (H, W) or RGB(A) (H, W, 3|4) image"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"images[{index}] has dtype {array.dtype}; expected numbers")
    return array


def prepare_objects(images: Sequence[Any], labels: Sequence[Any]) -> list[LabeledImage]:
    """Check the user's images and labels and index their objects (images without objects are dropped).

    Raises ValueError for empty or unequal sequences, images that are not 2D gray or RGB(A), labels
    that are not 2D whole non-negative numbers of the image's shape, or no object of at least
    :data:`MIN_OBJECT_AREA` pixels.
    """
    if (
        isinstance(images, np.ndarray)
        and images.ndim == 2
        or isinstance(labels, np.ndarray)
        and labels.ndim == 2
    ):
        raise ValueError("pass sequences of images and label images (e.g. [image], [labels] for one image)")
    images, labels = list(images), list(labels)
    if not images:
        raise ValueError("no images: pass at least one image with its labels")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label images; they must pair up one to one")
    items = []
    for index, (image, label_image) in enumerate(zip(images, labels)):
        array = _image(image, index)
        ids = as_instance_labels(label_image, index)
        if ids.shape != array.shape[:2]:
            raise ValueError(
                f"labels[{index}] has shape {ids.shape} but images[{index}] is {array.shape[:2]} (H, W)"
            )
        # Compact ids 1..n (ids may be large or sparse: napari label values are arbitrary).
        values, inverse = np.unique(ids, return_inverse=True)
        compact = inverse.reshape(ids.shape).astype(np.int32) + (0 if values[0] == 0 else 1)
        item = make_labeled_image(array, compact, name=f"image-{index}", min_area=MIN_OBJECT_AREA)
        if len(item.object_ids):
            items.append(item)
    if not items:
        raise ValueError(
            f"no objects to learn from: the labels hold no object of at least {MIN_OBJECT_AREA} pixels "
            "(0 is background, each other id is one object)"
        )
    return items


# ------------------------------------------------------------------------------------------ model
def _base_description(model: torch.nn.Module) -> dict[str, Any]:
    metadata = getattr(model, "fcfi_metadata", None)
    return dict(metadata) if isinstance(metadata, Mapping) else {}


def base_model_name(model: torch.nn.Module) -> str:
    """The name a model goes by in adaptation records: registry name, stored name or class name."""
    metadata = _base_description(model)
    return str(metadata.get("registry_name") or metadata.get("name") or type(model).__name__)


def working_size(model: torch.nn.Module) -> int:
    """The network input size the engine uses for ``model`` (its ``input_size`` metadata, else 256)."""
    return int(resolve_settings(model).input_size)


def _train_settings(model: torch.nn.Module) -> tuple[int, dict[str, float]]:
    """Robot clicks per step and loss weights: the base model's training settings when recorded."""
    recorded = (_base_description(model).get("training") or {}).get("train_config") or {}
    max_extra_clicks = int(recorded.get("max_extra_clicks", 3))
    weights = asdict(LossWeights())
    weights.update({k: float(v) for k, v in (recorded.get("loss_weights") or {}).items() if k in weights})
    present = feedback_modules_in(model)
    if not present["ffcm"]:
        weights["feedback1"] = 0.0
    if not present["cffm"]:
        weights["feedback2"] = 0.0
    return max_extra_clicks, weights


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _dtype_of(model: torch.nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _warmup(horizon: int) -> int:
    """Warm-up steps: 10, fewer for short runs (a quarter of the horizon) so the peak rate is reached."""
    return max(1, min(10, horizon // 4))


def _say(progress: ProgressCallback | None, fraction: float, message: str) -> bool:
    """Report progress; True when the callback asks to cancel."""
    return bool(progress(float(min(max(fraction, 0.0), 1.0)), message)) if progress is not None else False


# --------------------------------------------------------------------------------------- finetune
def finetune(
    model: torch.nn.Module,
    images: Sequence[Any],
    labels: Sequence[Any],
    *,
    time_budget_s: float = 180,
    steps: int | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> torch.nn.Module:
    """A copy of ``model`` adapted to the objects of ``labels`` on ``images``; ``model`` is unchanged.

    ``images``: a sequence of 2D images, gray (H, W) or RGB(A) (H, W, 3|4), any numeric dtype (raw
    intensities: the engine's normalisation is applied as in training). ``labels``: a sequence of
    instance label images of the same (H, W): 0 background, each other id one object (integers, or
    floats holding whole numbers). Objects under 12 pixels are ignored.

    Training is ``fcfi train``'s iterative click training (robot clicks on the network's own
    predictions, augmentation, FCFI loss with FFCM/CFFM terms) on crops around the given objects at
    the model's working size (``model.fcfi_metadata["input_size"]``, else the engine's 256), batch 4,
    BatchNorm statistics frozen, on the model's device (CUDA when the model is there, with mixed
    precision). Extra memory on CPU: about 0.4 GB for the bundled model (docs/evaluation.md).

    ``steps``: train exactly this many optimizer steps (``time_budget_s`` is then ignored); with a
    fixed ``steps`` and ``seed`` the result on CPU is the same on every run (on CUDA, up to
    non-deterministic kernels). Without ``steps``, training runs for ``time_budget_s`` wall-clock
    seconds counted from the call (the learning-rate schedule is fitted to the budget as it runs),
    so the number of steps, and the result, depend on the machine's speed and load.

    ``progress(done_fraction, message)`` is called before the first step and about every step; if it
    returns True, training stops and the model as trained so far is returned (marked cancelled).

    Returns a new network in eval mode without gradients, on the model's device and dtype, usable by
    :class:`~napari_fcfi.engine.InteractiveSegmenter` and :func:`~napari_fcfi.model.save_model`. Its
    ``fcfi_metadata`` holds ``name``, ``description``, ``input_size``, the base model's ``training``
    and ``adaptation`` (base model name and path, objects, images, steps, seconds, seed, settings),
    and nothing that ``save_model`` refuses: ``save_model(adapted, path, metadata=adapted.fcfi_metadata)``
    or :func:`save_adapted` writes it. Raises ValueError on bad input (see :func:`prepare_objects`).
    """
    started = time.perf_counter()
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
    if steps is None and not (
        isinstance(time_budget_s, (int, float)) and math.isfinite(time_budget_s) and time_budget_s > 0
    ):
        raise ValueError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch network (as load_model returns), got {type(model).__name__}")
    items = prepare_objects(images, labels)
    n_objects = int(sum(len(item.object_ids) for item in items))
    cancelled = _say(progress, 0.0, f"preparing: {n_objects} objects in {len(items)} images")

    input_size = working_size(model)
    crop_size = min(CROP_SIZE, input_size)
    max_extra_clicks, loss_weights = _train_settings(model)
    device, dtype = _device_of(model), _dtype_of(model)
    base = _base_description(model)

    net = copy.deepcopy(model)
    if dtype != torch.float32:  # train in float32, hand back in the model's dtype
        net = net.float()
    net.requires_grad_(True)
    sampler = TrainingSampler(items, crop_size=crop_size, input_size=input_size, seed=seed, augment=True)
    horizon = int(steps) if steps is not None else 100  # re-estimated from the step time
    config = TrainConfig(
        steps=horizon,
        batch_size=BATCH_SIZE,
        lr=LEARNING_RATE,
        warmup_steps=_warmup(horizon),
        min_lr_ratio=0.05,
        max_extra_clicks=max_extra_clicks,
        seed=seed,
        val_every=0,
        prefetch=False,
        freeze_batchnorm=True,
        loss_weights=loss_weights,
    )
    losses: list[float] = []
    done = 0
    fork_devices = (
        []
        if device.type != "cuda"
        else [device.index if device.index is not None else torch.cuda.current_device()]
    )
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        trainer = Trainer(net, sampler, None, config, device=device, progress=False)
        train_start = time.perf_counter()
        last_retune = train_start
        while not cancelled:
            now = time.perf_counter()
            if steps is not None:
                if done >= steps:
                    break
            else:
                elapsed = now - started
                per_step = (now - train_start) / done if done else 0.0
                if done and elapsed + per_step > time_budget_s:
                    break
                if done and (done == 3 or now - last_retune >= _RETUNE_SECONDS):
                    config.steps = max(done + int((time_budget_s - elapsed) / per_step), done + 1)
                    config.warmup_steps = _warmup(config.steps)
                    last_retune = now
            parts = trainer.train_step(done)
            losses.append(parts["loss"])
            done += 1
            fraction = done / steps if steps is not None else (time.perf_counter() - started) / time_budget_s
            recent = float(np.mean(losses[-10:]))
            if _say(progress, min(fraction, 0.999), f"step {done}: loss {recent:.3f}"):
                cancelled = True
    net.eval()
    net.requires_grad_(False)
    if dtype != torch.float32:
        net = net.to(dtype=dtype)
    seconds = time.perf_counter() - started

    adaptation = {
        "base_model": base_model_name(model),
        "base_path": base.get("path"),
        "objects": n_objects,
        "images": len(items),
        "steps": done,
        "seconds": round(seconds, 2),
        "seed": int(seed),
        "steps_requested": None if steps is None else int(steps),
        "time_budget_s": None if steps is not None else float(time_budget_s),
        "cancelled": bool(cancelled),
        "final_loss": float(np.mean(losses[-10:])) if losses else None,
        "batch_size": BATCH_SIZE,
        "crop_size": crop_size,
        "input_size": input_size,
        "lr": LEARNING_RATE,
        "max_extra_clicks": max_extra_clicks,
        "freeze_batchnorm": True,
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    name = base_model_name(model)
    metadata: dict[str, Any] = {
        "name": name if name.endswith("-adapted") else f"{name}-adapted",
        "description": f"{base.get('description') or name}, adapted to {n_objects} user objects in "
        f"{len(items)} images ({done} steps)",
        "input_size": base.get("input_size", input_size),
        "adaptation": adaptation,
    }
    if base.get("training") is not None:
        metadata["training"] = base["training"]
    net.fcfi_metadata = metadata
    _say(progress, 1.0, f"{'cancelled' if cancelled else 'done'} after {done} steps ({seconds:.0f} s)")
    return net


# ------------------------------------------------------------------------------------------- save
def _format_check(check: Mapping[str, Any]) -> list[str]:
    base, adapted = check.get("base", {}), check.get("adapted", {})
    lines = [
        (
            f"Checked on {check.get('objects', '?')} objects held back from training (robot user, at most "
            f"{check.get('max_clicks', '?')} clicks, the evaluation toolkit's protocol through the engine):"
        ),
        "",
        "| model | NoC@85 | NoC@90 |",
        "|---|---:|---:|",
        f"| base | {base.get('noc85', float('nan')):.2f} | {base.get('noc90', float('nan')):.2f} |",
        f"| adapted | {adapted.get('noc85', float('nan')):.2f} | {adapted.get('noc90', float('nan')):.2f} |",
        "",
        (
            f"Clicks (NoC@85 + NoC@90): {check.get('base_clicks', float('nan')):.2f} -> "
            f"{check.get('adapted_clicks', float('nan')):.2f} ({check.get('change_percent', float('nan')):+.1f} %); "
            f"decision: **{'keep the adapted model' if check.get('keep') else 'revert to the base model'}**."
        ),
    ]
    return lines


def model_card(metadata: Mapping[str, Any]) -> str:
    """A short Markdown card of an adapted model (from its ``fcfi_metadata``)."""
    info = metadata.get("adaptation") or {}
    lines = [
        f"# {metadata.get('name', 'adapted model')}",
        "",
        str(metadata.get("description", "")),
        "",
        f"* base model: `{info.get('base_model', '?')}`"
        + (f" ({info['base_path']})" if info.get("base_path") else ""),
        f"* adapted on: {info.get('objects', '?')} objects in {info.get('images', '?')} images",
        f"* training: {info.get('steps', '?')} steps of {info.get('batch_size', '?')} crops "
        f"({info.get('crop_size', '?')} px, working size {info.get('input_size', '?')}), "
        f"{info.get('seconds', float('nan')):.0f} s on {info.get('device', '?')}, seed {info.get('seed', '?')}"
        + (", cancelled by the user" if info.get("cancelled") else ""),
        f"* date: {info.get('date', '?')}",
        "",
        "## Measured gain",
        "",
    ]
    check = info.get("held_back_check")
    lines += _format_check(check) if check else ["Not measured (no held-back check was run)."]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from napari_fcfi import InteractiveSegmenter, load_model",
        "segmenter = InteractiveSegmenter(load_model('<this file>.safetensors'))",
        "```",
        "",
        (
            "Adapted with `napari_fcfi.finetune` (iterative click training of `fcfi train` on the user's "
            "objects). The gain holds for images like the ones it was adapted on; on other images the base "
            "model may be better."
        ),
        "",
    ]
    return "\n".join(lines)


def save_adapted(model: torch.nn.Module, path: str | Path) -> Path:
    """Write an adapted model as ``path`` (safetensors + metadata) and a Markdown card beside it.

    The card (``path`` with suffix ``.md``) names the base model, the objects and images, the training
    time and steps, and the gain measured on held-back objects when
    :func:`napari_fcfi.training.adaptation.check_adaptation` recorded one in the model's metadata.
    Returns the safetensors path; ``load_model(path)`` reads it back with the same ``fcfi_metadata``.
    """
    metadata = _base_description(model)
    if "adaptation" not in metadata:
        raise ValueError("this model carries no adaptation record; save it with napari_fcfi.save_model")
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    written = save_model(model, path, metadata={k: metadata[k] for k in _SAVED_METADATA if k in metadata})
    written.with_suffix(".md").write_text(model_card(metadata))
    return written
