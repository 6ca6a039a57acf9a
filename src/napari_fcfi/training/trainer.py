"""The iterative click trainer (RITM/FCFI style) with checkpoints, resume and a JSONL log.

One optimizer step:

1. draw a batch (crops, masks, random initial clicks) for this step from the sampler;
2. with probability mass spread over 0..``max_extra_clicks``, simulate that many robot
   clicks on the network's own predictions, without gradients and in eval mode: the
   feedback for the next pass is the previous prediction's probability, and each new
   click goes to the larger error region of each sample;
3. the trained pass: image + feedback, all clicks, the newest click as ``new_clicks`` for
   FFCM, ``gate`` 0.0 when no click was simulated (first-click situation, empty feedback)
   and 1.0 otherwise, ``is_training=True`` (soft FFCM window, ``valid_masks``);
4. the FCFI loss (:func:`napari_fcfi.training.losses.fcfi_loss`) and an Adam step with a
   warm-up + cosine learning-rate schedule.

Everything random is derived from ``(seed, step)``, and checkpoints hold the model,
optimizer, scheduler, scaler and step, so a resumed run continues exactly as the
uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_fcfi.engine.settings import DEFAULT_THRESHOLD
from napari_fcfi.evaluation.robot import robot_click
from napari_fcfi.evaluation.samples import Sample
from napari_fcfi.model.click_encoding import newest_click_tensor, points_tensor
from napari_fcfi.model.device import cpu_has_native_bf16
from napari_fcfi.training.data import TrainingSampler
from napari_fcfi.training.feedback import neighbour_feedback_batch
from napari_fcfi.training.losses import LossWeights, fcfi_loss
from napari_fcfi.training.validation import engine_validate


@dataclass
class TrainConfig:
    """Optimisation settings of one run (stored in every checkpoint)."""

    steps: int = 4000
    batch_size: int = 8
    lr: float = 5e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    max_extra_clicks: int = 3
    seed: int = 0
    val_every: int = 250
    val_max_clicks: int = 10
    log_every: int = 10
    checkpoint_minutes: float = 5.0
    time_limit_minutes: float = 0.0  # 0: no limit
    # > 0: re-fit ``steps`` every ``retune_every`` steps so the run ends at this many minutes
    # (the schedule horizon then depends on machine speed; it is logged, so a rerun with the
    # final ``--steps`` is exact). 0: ``steps`` is fixed and the run is bit-reproducible.
    time_budget_minutes: float = 0.0
    # "wall": time budgets and limits count wall-clock time; "cpu": they count the CPU time of the
    # training steps only (this process, validation excluded), so runs that share a machine with
    # other work still get the same compute.
    budget_clock: str = "wall"
    retune_every: int = 100
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights; validate and export it
    prefetch: bool = True  # build batches in a worker process while the network trains
    amp: bool = True  # CUDA: float16 autocast with a gradient scaler
    cpu_bf16: bool = False  # CPU: bfloat16 autocast (about 1.5x faster on CPUs with AVX512-BF16/AMX)
    cpu_channels_last: bool = True  # CPU float32: channels-last weights and inputs (faster convolutions)
    # True: BatchNorm layers stay in eval mode while training, so their running statistics are not
    # updated (fine-tuning on a few user images with small batches: keep the base model's statistics).
    freeze_batchnorm: bool = False
    # Share of steps whose feedback is the target mask displaced as on a neighbouring slice, with
    # propagation's automatic click (training/feedback.py); 0 = ordinary iterative training only.
    neighbour_feedback: float = 0.0
    # Step at which the warm-up + cosine schedule starts: a training line restarts it at every
    # session (a warm restart fitted to that session's budget); 0 for an ordinary run.
    schedule_start: int = 0
    loss_weights: dict[str, float] = field(default_factory=lambda: asdict(LossWeights()))


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` at ``config.steps``."""
    step = step - config.schedule_start
    if step < config.warmup_steps:
        return (max(step, 0) + 1) / config.warmup_steps
    span = max(config.steps - config.schedule_start - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(net: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
    """Optimizer groups: a pretrained backbone (``net.backbone_parameters()``) trains at
    ``lr * net.backbone_lr_mult`` (RITM's 0.1 keeps ImageNet features from being wiped out early)."""
    multiplier = float(getattr(net, "backbone_lr_mult", 1.0))
    backbone = (
        list(net.backbone_parameters()) if hasattr(net, "backbone_parameters") and multiplier != 1.0 else []
    )
    if not backbone:
        return [{"params": list(net.parameters()), "lr": lr}]
    ids = {id(p) for p in backbone}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": rest, "lr": lr}, {"params": backbone, "lr": lr * multiplier}]


class WeightAverage:
    """Exponential moving average of a network's weights (buffers such as BN statistics are copied)."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay = float(decay)
        self.network = copy.deepcopy(net).eval()
        self.network.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        average = self.network.state_dict()
        for key, value in net.state_dict().items():
            if value.is_floating_point() and key in average:
                average[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                average[key].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "model": self.network.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])


def validation_score(metrics: dict[str, float]) -> float:
    """Lower is better: NoC@85 + NoC@90, ties broken by IoU after one click."""
    return metrics["noc85"] + metrics["noc90"] - 0.01 * metrics["iou1"]


class Trainer:
    """Trains ``net`` on batches from ``sampler``; writes checkpoints and logs to ``out_dir``.

    ``out_dir=None`` writes no files at all (no log, no checkpoints; :meth:`save` refuses): for
    callers that only drive :meth:`train_step`, such as :func:`napari_fcfi.training.finetune.finetune`.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        sampler: TrainingSampler,
        out_dir: str | Path | None,
        config: TrainConfig,
        val_samples: list[Sample] | None = None,
        device: str | torch.device = "cpu",
        engine_settings: dict[str, Any] | None = None,
        run_info: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.net = net.to(device)
        self.sampler = sampler
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.config = config
        self.val_samples = val_samples or []
        self.engine_settings = dict(engine_settings or {})
        self.device = torch.device(device)
        self.run_info = run_info or {}
        self.progress = progress
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.use_bf16 = bool(config.cpu_bf16 and self.device.type == "cpu")
        if self.use_bf16 and cpu_has_native_bf16() is False:
            # Measured: 12 s instead of 1 s per step on an AVX2-only CPU (emulated bfloat16).
            warnings.warn(
                "this CPU has no native bfloat16 (no AVX512-BF16 or AMX): training in float32 instead "
                "of the requested bf16 autocast, which would be several times slower here",
                RuntimeWarning,
                stacklevel=2,
            )
            self.use_bf16 = False
        # Channels-last convolutions on the CPU (oneDNN): measured 1.07-1.09x faster float32 training
        # steps on an AVX2 CPU (docs/benchmarks.md); the saved weights are the same either way.
        self.channels_last = bool(
            config.cpu_channels_last and self.device.type == "cpu" and not self.use_bf16
        )
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(
            parameter_groups(self.net, config.lr), lr=config.lr, betas=(0.9, 0.999), eps=1e-8
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, self.config)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_weights = LossWeights(**config.loss_weights)
        self.ema = WeightAverage(self.net, config.ema_decay) if config.ema_decay > 0 else None
        self.train_seconds = 0.0  # on the budget clock, training steps only
        self.step = 0
        self.best_score = math.inf
        self.best_metrics: dict[str, float] | None = None
        self.last_validation: dict[str, Any] | None = None  # the newest validation, with its step
        self.stop_requested = False  # set (e.g. by a signal handler) to end fit() after the current step
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- one step
    def _train_mode(self) -> None:
        """Training mode; BatchNorm layers stay in eval mode with ``config.freeze_batchnorm``."""
        self.net.train()
        if self.config.freeze_batchnorm:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _forward(self, net_input, points, new_clicks, gate: float, is_training: bool) -> dict[str, Any]:
        if self.channels_last:
            net_input = net_input.contiguous(memory_format=torch.channels_last)
        if self.use_bf16:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                return self.net(net_input, points, new_clicks, gate, is_training=is_training)
        with torch.autocast(device_type=self.device.type, enabled=self.use_amp):
            return self.net(net_input, points, new_clicks, gate, is_training=is_training)

    def simulate_clicks(self, images: torch.Tensor, masks: torch.Tensor, click_sets, extra_clicks: int):
        """Run ``extra_clicks`` robot iterations without gradient; returns the feedback probability."""
        prev = torch.zeros_like(images[:, :1])
        if extra_clicks == 0:
            return prev
        self.net.eval()
        masks_np = masks[:, 0].cpu().numpy() > 0.5
        with torch.no_grad():
            for iteration in range(extra_clicks):
                out = self._forward(
                    torch.cat([images, prev], dim=1),
                    points_tensor(click_sets).to(self.device),
                    newest_click_tensor(click_sets).to(self.device),
                    gate=0.0 if iteration == 0 else 1.0,
                    is_training=False,
                )
                prev = torch.sigmoid(out["instances"].float())
                if prev.shape[-2:] != images.shape[-2:]:
                    prev = torch.nn.functional.interpolate(
                        prev, size=images.shape[-2:], mode="bilinear", align_corners=True
                    )
                prev_np = prev[:, 0].cpu().numpy()
                for b, clicks in enumerate(click_sets):
                    not_clicked = np.ones(masks_np[b].shape, bool)
                    for done in clicks:
                        not_clicked[done.row, done.col] = False
                    click = robot_click(masks_np[b], prev_np[b] > DEFAULT_THRESHOLD, None, not_clicked)
                    if click is not None:
                        clicks.append(click)
        self._train_mode()
        return prev

    def train_step(self, step: int, batch=None) -> dict[str, float]:
        """One optimizer step on the batch of ``step`` (drawn here unless given); returns the loss parts."""
        config = self.config
        images, masks, click_sets = (
            batch if batch is not None else self.sampler.batch(step, config.batch_size)
        )
        images, masks = images.to(self.device), masks.to(self.device)
        extra_clicks = int(
            np.random.default_rng([config.seed, step, 1_000_003]).integers(0, config.max_extra_clicks + 1)
        )
        self._train_mode()
        neighbour = None
        if config.neighbour_feedback > 0:
            draw = np.random.default_rng([config.seed, step, 2_000_003])
            if draw.random() < config.neighbour_feedback:
                neighbour = neighbour_feedback_batch(masks.cpu().numpy(), draw)
        if neighbour is not None:
            feedback, click_sets = neighbour
            prev, gate, extra_clicks = torch.from_numpy(feedback).to(self.device), 1.0, 0
        else:
            prev = self.simulate_clicks(images, masks, click_sets, extra_clicks)
            gate = 1.0 if extra_clicks > 0 else 0.0
        out = self._forward(
            torch.cat([images, prev], dim=1),
            points_tensor(click_sets).to(self.device),
            newest_click_tensor(click_sets).to(self.device),
            gate=gate,
            is_training=True,
        )
        loss, parts = fcfi_loss(out, masks, self.loss_weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {parts}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.net)
        parts["loss"] = float(loss.detach())
        with torch.no_grad():  # IoU of the trained pass: an easy-to-read progress signal
            pred = out["instances"].float() > 0
            gt = masks > 0.5
            union = (pred | gt).sum(dim=(1, 2, 3)).clamp_min(1)
            parts["train_iou"] = float(((pred & gt).sum(dim=(1, 2, 3)) / union).mean())
        parts["extra_clicks"] = extra_clicks
        parts["neighbour_feedback"] = float(neighbour is not None)
        return parts

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "napari-fcfi-training-checkpoint/1",
            "step": self.step,
            "model": self.net.state_dict(),
            "model_config": getattr(self.net, "config", None),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_config": asdict(self.config),
            "best_score": self.best_score,
            "best_metrics": self.best_metrics,
            "run_info": self.run_info,
            "torch_rng": torch.get_rng_state(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "train_seconds": self.train_seconds,
        }

    def save(self, name: str) -> Path:
        """Write ``out_dir/name`` atomically (a crash never leaves a half-written checkpoint)."""
        if self.out_dir is None:
            raise ValueError("this Trainer was made with out_dir=None and writes no checkpoints")
        path = self.out_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` (model, optimizer, schedule, step)."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("format") != "napari-fcfi-training-checkpoint/1":
            raise ValueError(f"{path} is not a napari-fcfi training checkpoint")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if self.config.time_budget_minutes > 0:
            # Fit the horizon to the (possibly larger) budget at the checkpoint's own speed; it is
            # re-fitted as the run goes (a larger budget restarts the cosine from its new position).
            self.config.steps = int(state["train_config"]["steps"])
            if self.step > 0 and self.train_seconds > 0:
                per_step = self.train_seconds / self.step
                remaining = self.config.time_budget_minutes * 60 - self.train_seconds
                self.config.steps = max(self.step + 1, self.step + int(remaining / per_step))
        self.best_score = float(state["best_score"])
        self.best_metrics = state.get("best_metrics")
        torch.set_rng_state(state["torch_rng"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # resuming a run without an average: start it from the current weights
                self.ema = WeightAverage(self.net, self.config.ema_decay)

    def restart_schedule(self, horizon_steps: int) -> None:
        """Start a new warm-up + cosine cycle at the current step, ``horizon_steps`` long, peaking at
        ``config.lr``: a restored scheduler keeps the peak it was saved with, which would silently
        override a changed learning rate (per-group ratios, e.g. a backbone multiplier, are kept)."""
        self.config.schedule_start = self.step
        self.config.steps = self.step + max(int(horizon_steps), 1)
        if self.scheduler.base_lrs and self.scheduler.base_lrs[0] > 0:
            ratio = self.config.lr / self.scheduler.base_lrs[0]
            self.scheduler.base_lrs = [base_lr * ratio for base_lr in self.scheduler.base_lrs]
            for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["initial_lr"] = base_lr
        factor = learning_rate_factor(self.step, self.config)
        for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base_lr * factor
        self.scheduler.last_epoch = self.step

    # ---------------------------------------------------------------- loop
    def _batches(self, first_step: int):
        """Yield ``(step, batch)`` from ``first_step`` on, built by one worker process."""
        from torch.utils.data import DataLoader, Dataset

        sampler, batch_size, total = self.sampler, self.config.batch_size, 10**9

        class _Steps(Dataset):
            def __len__(self) -> int:
                return total - first_step

            def __getitem__(self, offset: int):
                step = first_step + offset
                return step, sampler.batch(step, batch_size)

        def _worker_init(_: int) -> None:
            torch.set_num_threads(1)
            # A stop signal sent to the whole process group is the main process's to handle (it ends
            # the run after the current step and saves); a worker killed by it would crash the step.
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)

        loader = DataLoader(
            _Steps(),
            batch_size=None,
            shuffle=False,
            num_workers=1,
            prefetch_factor=2,
            collate_fn=lambda item: item,
            worker_init_fn=_worker_init,
            persistent_workers=False,
        )
        yield from loader

    def _clock(self) -> float:
        return time.process_time() if self.config.budget_clock == "cpu" else time.time()

    def _retune_horizon(self, say: Callable[[str], None]) -> None:
        """Fit ``config.steps`` so that training ends when ``train_seconds`` reaches the time budget."""
        config = self.config
        done = self.step - self._first_step
        spent = self.train_seconds - self._first_seconds
        if done <= 0 or spent <= 0:
            return
        per_step = spent / done
        remaining = config.time_budget_minutes * 60 - self.train_seconds
        config.steps = max(self.step + max(int(remaining / per_step), 0), self.step + 1)
        self._log({"step": self.step, "horizon": config.steps, "seconds_per_step": per_step})
        say(
            f"step {self.step}: schedule horizon set to {config.steps} steps ({per_step:.2f} s/step, "
            f"{config.budget_clock} clock)"
        )

    def _log(self, record: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        with open(self.out_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def validate(self) -> dict[str, Any] | None:
        """Validation metrics of the live weights, plus ``"ema"``: those of the moving average when kept."""
        if not self.val_samples:
            return None
        start = time.perf_counter()
        settings, clicks = self.engine_settings, self.config.val_max_clicks
        metrics: dict[str, Any] = engine_validate(self.net, self.val_samples, settings, max_clicks=clicks)
        if self.ema is not None:
            metrics["ema"] = engine_validate(self.ema.network, self.val_samples, settings, max_clicks=clicks)
        metrics["seconds"] = time.perf_counter() - start
        return metrics

    def fit(
        self,
        on_log: Callable[[str], None] | None = None,
        until: int | None = None,
        on_checkpoint: Callable[[Trainer], None] | None = None,
    ) -> dict[str, Any]:
        """Train until ``config.steps`` (or step ``until``, the time limit or :attr:`stop_requested`).

        ``on_checkpoint`` is called after every periodic ``last.pt`` and after the final one.

        Time budgets and limits count ``train_seconds``: the time of the training steps on the budget
        clock (``config.budget_clock``), summed over every invocation of the run (it is checkpointed).
        """
        config = self.config
        end = config.steps if until is None else min(until, config.steps)
        say = on_log or (lambda text: None)
        start_time = time.time()
        self._first_step, self._first_seconds = self.step, self.train_seconds
        last_checkpoint = time.time()
        window: list[dict[str, float]] = []
        step_times: list[float] = []
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=config.steps, initial=self.step, desc="train", dynamic_ncols=True, mininterval=5)
        stopped_early = False
        batches = self._batches(self.step) if config.prefetch else None
        while self.step < end:
            if self.stop_requested:
                stopped_early = True
                say(f"stop requested at step {self.step}")
                break
            if config.time_limit_minutes and self.train_seconds >= config.time_limit_minutes * 60:
                stopped_early = True
                say(f"time limit reached at step {self.step}")
                break
            t0, clock0 = time.perf_counter(), self._clock()
            batch = None
            if batches is not None:
                batch_step, batch = next(batches)
                assert batch_step == self.step
            parts = self.train_step(self.step, batch)
            self.train_seconds += self._clock() - clock0
            step_times.append(time.perf_counter() - t0)
            self.step += 1
            window.append(parts)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", refresh=False)
            if self.step % config.log_every == 0 or self.step == config.steps:
                record: dict[str, Any] = {
                    "step": self.step,
                    "time": round(time.time() - start_time, 1),
                    "train_seconds": round(self.train_seconds, 1),
                }
                record["lr"] = self.optimizer.param_groups[0]["lr"]
                for key in window[0]:
                    record[key] = float(np.mean([w[key] for w in window if key in w]))
                record["step_seconds"] = float(np.mean(step_times))
                self._log(record)
                say(json.dumps(record))
                window, step_times = [], []
            if config.val_every and (self.step % config.val_every == 0 or self.step == config.steps):
                metrics = self.validate()
                if metrics is not None:
                    self.last_validation = {"step": self.step, "train_seconds": self.train_seconds, **metrics}
                    record = {
                        "step": self.step,
                        "time": round(time.time() - start_time, 1),
                        "train_seconds": round(self.train_seconds, 1),
                        "val": metrics,
                    }
                    self._log(record)
                    say(json.dumps(record))
                    candidates = [("live", metrics)] + ([("ema", metrics["ema"])] if "ema" in metrics else [])
                    kind, chosen = min(candidates, key=lambda c: validation_score(c[1]))
                    score = validation_score(chosen)
                    if score < self.best_score:
                        best = {k: v for k, v in chosen.items() if k != "ema"}
                        self.best_score, self.best_metrics = (
                            score,
                            {"step": self.step, "weights": kind, **best},
                        )
                        if self.out_dir is not None:
                            self.save("best.pt")
            if self.out_dir is not None and time.time() - last_checkpoint >= config.checkpoint_minutes * 60:
                self.save("last.pt")
                last_checkpoint = time.time()
                if on_checkpoint is not None:
                    on_checkpoint(self)
            if config.time_budget_minutes > 0 and self.step % config.retune_every == 0 and until is None:
                self._retune_horizon(say)
                end = config.steps
                if bar is not None:
                    bar.total = config.steps
        if self.out_dir is not None:
            self.save("last.pt")
            if on_checkpoint is not None:
                on_checkpoint(self)
        if bar is not None:
            bar.close()
        del batches
        return {"step": self.step, "best": self.best_metrics, "stopped_early": stopped_early}
