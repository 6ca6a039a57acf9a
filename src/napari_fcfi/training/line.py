"""A training line: one model trained on and on, across sessions and machines, never restarted.

The line's state lives in a folder of the repository (``training/line``) and is small enough to
commit every hour:

* ``model.safetensors``: the current weights (float32, an ordinary napari-fcfi model file:
  ``load_model("training/line/model.safetensors")`` works, and shipping it is a copy);
* ``state.json``: the step, the accumulated training time (including the time of the model the
  line started from), the data recipe, the sessions that trained it;
* ``history.jsonl``: one line per validation and per session end (the learning curve).

The optimizer state (twice the weights) is not committed. Every session keeps a full resume
checkpoint in its run folder (``runs/line`` by default, ``last.pt``: weights, optimizer, step); the
next session resumes from the newer of that checkpoint and the committed state, so a session on the
same machine continues exactly, and one on a new machine continues from the committed weights with a
fresh optimizer (the warm-up of the session's schedule covers it).

Every session is one warm-up + cosine cycle fitted to its time budget (``--minutes``): the weights
at the end of a session are annealed, ready to be evaluated and shipped.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

LINE_FORMAT = "napari-fcfi-training-line/1"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"


class LineError(ValueError):
    """A training line folder that cannot be used (missing, damaged, or a wrong request)."""


@dataclass
class LineRecipe:
    """What a line trains on and how; fixed for the line (a change is recorded in its history)."""

    data: list[str] = field(default_factory=list)  # split: training part used, validation part kept out
    train_data: list[str] = field(default_factory=list)  # used whole for training
    val_data: list[str] = field(default_factory=list)  # only for validation, never trained on
    synthetic_fraction: float = 0.25
    synthetic_images: int = 300
    balance_modalities: bool = True
    small_object_weight: float = 2.0
    small_object_area: int = 150
    train_data_weight: float = 1.0  # multiplies the draw weight of the train_data sources' images
    neighbour_feedback: float = 0.1
    batch_size: int = 8
    crop_size: int = 160
    input_size: int = 256
    lr: float = 3e-4
    warmup_steps: int = 100
    max_extra_clicks: int = 3
    val_fraction: float = 0.15
    val_objects: int = 30
    val_every: int = 2000

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LineRecipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LineError(f"unknown recipe entries {unknown}; known: {sorted(known)}")
        return cls(**values)

    def with_overrides(self, overrides: list[str]) -> tuple[LineRecipe, dict[str, Any]]:
        """Apply ``KEY=VALUE`` strings (values parsed as JSON when they parse, else strings)."""
        values, changed = asdict(self), {}
        for text in overrides:
            key, sep, raw = text.partition("=")
            if not sep or key not in values:
                raise LineError(f"--recipe {text!r}: expected KEY=VALUE with KEY one of {sorted(values)}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            values[key] = value
            changed[key] = value
        return LineRecipe.from_dict(values), changed


def read_state(line_dir: str | Path) -> dict[str, Any]:
    """The line's ``state.json`` (a clear :class:`LineError` when absent or damaged)."""
    path = Path(line_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise LineError(
            f"{line_dir} holds no training line ({STATE_FILE} missing); start one with --line-init MODEL"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise LineError(f"{path} cannot be read: {error}") from error
    if not isinstance(state, dict) or state.get("format") != LINE_FORMAT:
        raise LineError(f"{path} is not a napari-fcfi training line state ({LINE_FORMAT})")
    if not (Path(line_dir) / WEIGHTS_FILE).is_file():
        raise LineError(f"{line_dir}: {WEIGHTS_FILE} is missing")
    return state


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def append_history(line_dir: str | Path, record: dict[str, Any]) -> None:
    with open(Path(line_dir) / HISTORY_FILE, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def read_history(line_dir: str | Path) -> list[dict[str, Any]]:
    """The history records (lines that do not parse are skipped: the file is append-only)."""
    path = Path(line_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    records = []
    for text in path.read_text().splitlines():
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def line_model_metadata(state: dict[str, Any], name: str = "fcfi-microscopy") -> dict[str, Any]:
    recipe = state["recipe"]
    return {
        "name": name,
        "description": "FCFI (HRNet + OCR) trained by napari-fcfi's training line",
        "input_size": int(recipe["input_size"]),
        "training": {
            "line": state["line_id"],
            "step": state["step"],
            "train_seconds_total": state["train_seconds"],
            "recipe": recipe,
            "initial_weights": state.get("origin"),
            "sessions": len(state.get("sessions", [])),
        },
    }


def create_line(
    line_dir: str | Path, model_source: str, recipe: LineRecipe, *, seed: int = 0
) -> dict[str, Any]:
    """Start a line from a trained model (``default``, a registered name or a ``.safetensors`` file)."""
    from napari_fcfi.model import load_model, save_model

    line_dir = Path(line_dir)
    if (line_dir / STATE_FILE).exists():
        raise LineError(f"{line_dir} already holds a training line; resume it instead of --line-init")
    model = load_model(model_source, device="cpu")
    metadata = getattr(model, "fcfi_metadata", {}) or {}
    training = metadata.get("training") or {}
    earlier = training.get("train_seconds_total", training.get("train_seconds"))
    state: dict[str, Any] = {
        "format": LINE_FORMAT,
        "line_id": uuid.uuid4().hex[:12],
        "step": int(training.get("step") or 0),
        "train_seconds": float(earlier or 0.0),
        "seed": int(seed),
        "recipe": asdict(recipe),
        "origin": {
            "source": str(metadata.get("path") or model_source),
            "name": metadata.get("name"),
            "step": training.get("step"),
            "train_seconds": earlier,
            "initial_weights": training.get("initial_weights"),
        },
        "sessions": [],
        "seconds_per_step": None,
    }
    line_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, line_dir / WEIGHTS_FILE, metadata=line_model_metadata(state))
    write_json_atomic(line_dir / STATE_FILE, state)
    append_history(
        line_dir,
        {
            "event": "created",
            "step": state["step"],
            "hours": state["train_seconds"] / 3600,
            "origin": state["origin"]["source"],
            "time": utc_now(),
        },
    )
    return state


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _checkpoint_step(path: Path, line_id: str, network: dict[str, Any] | None) -> int | None:
    """Step of a run folder's ``last.pt`` when it belongs to this line and has the line's network
    (a line widened since the checkpoint was written has another one), else None."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged or foreign file (any unpickling error) is not a resume point
        return None
    run_info = state.get("run_info") or {}
    if run_info.get("line_id") != line_id:
        return None
    if network is not None and run_info.get("network", network) != network:
        return None
    return int(state.get("step", -1))


def line_network(line_dir: str | Path) -> dict[str, Any] | None:
    """The network config of the line's weights (None when the file does not say)."""
    from napari_fcfi.model.safetensors_format import read_metadata

    try:
        config = read_metadata(Path(line_dir) / WEIGHTS_FILE).get("config")
    except Exception:  # noqa: BLE001 - an unreadable file fails later, with its own message, when loaded
        return None
    return dict(config) if isinstance(config, dict) else None


def resume_point(line_dir: str | Path, run_dir: str | Path) -> tuple[str, Path, int]:
    """Where to continue: ``("run", last.pt, step)`` when the run folder's checkpoint of this line is
    at least as new as the committed state, else ``("line", model.safetensors, step)``."""
    state = read_state(line_dir)
    checkpoint = Path(run_dir) / "last.pt"
    if checkpoint.is_file():
        step = _checkpoint_step(checkpoint, state["line_id"], line_network(line_dir))
        if step is not None and step >= int(state["step"]):
            return "run", checkpoint, step
    return "line", Path(line_dir) / WEIGHTS_FILE, int(state["step"])


def commit_line(line_dir: str | Path, message: str) -> str:
    """``git commit`` the line folder alone; returns what happened (never raises: training goes on)."""
    line_dir = Path(line_dir).resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--git-dir"],
            cwd=line_dir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        git_dir = Path(top[1]) if Path(top[1]).is_absolute() else line_dir / top[1]
        if (git_dir / "MERGE_HEAD").exists() or (git_dir / "index.lock").exists():
            return "commit skipped: a merge or another git command is in progress"
        subprocess.run(["git", "add", "--", str(line_dir)], cwd=top[0], capture_output=True, check=True)
        done = subprocess.run(
            ["git", "commit", "-q", "--no-verify", "-m", message, "--", str(line_dir)],
            cwd=top[0],
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError, IndexError) as error:
        return f"commit failed: {error}"
    if done.returncode != 0:
        return f"commit failed: {(done.stderr or done.stdout).strip()[:200]}"
    return "committed"


class LineSession:
    """One session of a line: builds the trainer, exports and commits the state as it trains."""

    def __init__(
        self,
        line_dir: Path,
        run_dir: Path,
        state: dict[str, Any],
        recipe: LineRecipe,
        commit_minutes: float,
        say: Any,
    ) -> None:
        self.line_dir, self.run_dir, self.state, self.recipe = line_dir, run_dir, state, recipe
        self.commit_minutes = commit_minutes
        self.say = say
        self.last_commit = time.time()
        self.recorded_validation_step: int | None = None
        self.record: dict[str, Any] = {}

    def export(self, trainer: Any) -> None:
        """Write the trainer's weights and the state into the line folder (atomic files)."""
        from napari_fcfi.model import save_model

        state = self.state
        started = self.record["first_step"]
        state["step"] = int(trainer.step)
        state["train_seconds"] = float(trainer.train_seconds)
        done = trainer.step - started
        spent = trainer.train_seconds - self.record["train_seconds_before"]
        if done > 0 and spent > 0:
            state["seconds_per_step"] = spent / done
        self.record.update(last_step=int(trainer.step), train_seconds=spent, ended=utc_now())
        save_model(trainer.net, self.line_dir / WEIGHTS_FILE, metadata=line_model_metadata(state))
        write_json_atomic(self.line_dir / STATE_FILE, state)
        validation = trainer.last_validation
        if validation is not None and validation["step"] != self.recorded_validation_step:
            self.recorded_validation_step = validation["step"]
            append_history(
                self.line_dir,
                {
                    "event": "validation",
                    "step": validation["step"],
                    "hours": validation["train_seconds"] / 3600,
                    "time": utc_now(),
                    **{k: v for k, v in validation.items() if k not in ("step", "train_seconds")},
                },
            )

    def on_checkpoint(self, trainer: Any) -> None:
        self.export(trainer)
        if self.commit_minutes > 0 and time.time() - self.last_commit >= self.commit_minutes * 60:
            self.commit(trainer)

    def commit(self, trainer: Any) -> None:
        hours = trainer.train_seconds / 3600
        outcome = commit_line(
            self.line_dir, f"training line: step {trainer.step}, {hours:.2f} h of training in all"
        )
        self.last_commit = time.time()
        self.say(f"line state at step {trainer.step}: {outcome}")


def line_sampler(recipe: LineRecipe, real: Any, seed: int) -> Any:
    """The line's training sampler: ``real`` images (``load_sources(...).real``) plus the recipe's
    procedural pool, cropped and weighted as the recipe says, drawing from ``seed``."""
    from napari_fcfi.training.data import TrainingSampler, make_synthetic_pool, source_group

    synthetic = (
        make_synthetic_pool(recipe.synthetic_images, seed=seed) if recipe.synthetic_fraction > 0 else []
    )
    return TrainingSampler(
        real,
        synthetic,
        synthetic_fraction=recipe.synthetic_fraction,
        crop_size=recipe.crop_size,
        input_size=recipe.input_size,
        seed=seed,
        balance_modalities=recipe.balance_modalities,
        small_object_weight=recipe.small_object_weight,
        small_object_area=recipe.small_object_area,
        source_weights={source_group(folder): recipe.train_data_weight for folder in recipe.train_data},
    )


def run_line(args: Any) -> int:
    """``fcfi train --line DIR --minutes M``: continue (or with ``--line-init`` start) a training line."""
    import torch

    from napari_fcfi.model import load_model
    from napari_fcfi.model.architectures import build_network
    from napari_fcfi.training.sources import load_sources
    from napari_fcfi.training.trainer import TrainConfig, Trainer

    line_dir = Path(args.line)
    try:
        if args.line_init:
            recipe, _ = LineRecipe(
                data=[str(p) for p in args.data],
                train_data=[str(p) for p in args.train_data],
                val_data=[str(p) for p in args.val_data],
            ).with_overrides(args.recipe)
            create_line(line_dir, args.line_init, recipe, seed=args.seed)
        state = read_state(line_dir)
        recipe, overrides = LineRecipe.from_dict(state["recipe"]).with_overrides(
            [] if args.line_init else args.recipe
        )
    except (LineError, OSError) as error:
        print(f"fcfi train --line: {error}", file=sys.stderr)
        return 2
    if args.minutes <= 0:
        print("fcfi train --line: --minutes must be > 0", file=sys.stderr)
        return 2
    run_dir = Path(args.out or Path("runs") / line_dir.name)
    if getattr(args, "widen", None):
        from napari_fcfi.training.line_widen import parse_branch_channels, widen_line

        try:
            print(widen_line(line_dir, run_dir, parse_branch_channels(args.widen), seed=int(state["seed"])))
        except (LineError, OSError) as error:
            print(f"fcfi train --line --widen: {error}", file=sys.stderr)
            return 2
        state = read_state(line_dir)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = (
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    run_dir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}"
        with open(run_dir / "train.log", "a") as log_file:
            log_file.write(line + "\n")
        if args.no_progress:
            print(line, flush=True)

    kind, source, step = resume_point(line_dir, run_dir)
    say(
        f"line {line_dir} ({state['line_id']}): step {state['step']}, {state['train_seconds'] / 3600:.2f} h; "
        f"resuming from {kind} {source} at step {step}"
        + (f"; recipe overrides {overrides}" if overrides else "")
    )
    sources = load_sources(
        recipe.data,
        recipe.train_data,
        recipe.val_data,
        val_fraction=recipe.val_fraction,
        val_objects=recipe.val_objects,
        say=say,
    )
    seed = int(state["seed"])
    sampler = line_sampler(recipe, sources.real, seed)
    model = load_model(str(line_dir / WEIGHTS_FILE), device="cpu")
    net = build_network(dict(model.config))
    net.load_state_dict(model.state_dict())
    del model
    config = TrainConfig(
        steps=step + 1,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        warmup_steps=recipe.warmup_steps,
        max_extra_clicks=recipe.max_extra_clicks,
        seed=seed,
        val_every=recipe.val_every,
        checkpoint_minutes=args.checkpoint_minutes,
        neighbour_feedback=recipe.neighbour_feedback,
        amp=not args.no_amp,
        cpu_bf16=args.bf16,
        prefetch=not args.no_prefetch,
    )
    run_info = {
        "line_id": state["line_id"],
        "line": str(line_dir),
        "recipe": asdict(recipe),
        "data": sources.info,
        "device": device,
        "threads": torch.get_num_threads(),
        "input_size": recipe.input_size,
        "network": dict(net.config),
        "initial_weights": state.get("origin"),
    }
    trainer = Trainer(
        net,
        sampler,
        run_dir,
        config,
        val_samples=sources.val_samples,
        device=device,
        run_info=run_info,
        progress=not args.no_progress,
        engine_settings={"input_size": recipe.input_size},
    )
    if kind == "run":
        trainer.load(source)
        trainer.run_info = run_info
    else:
        trainer.step = step
        trainer.train_seconds = float(state["train_seconds"])
    # This session's budget: a warm-up + cosine cycle over ``--minutes`` of training time, its horizon
    # re-fitted as the speed is measured.
    config.time_budget_minutes = trainer.train_seconds / 60 + args.minutes
    config.time_limit_minutes = config.time_budget_minutes
    per_step = float(state.get("seconds_per_step") or 1.0)
    trainer.restart_schedule(int(args.minutes * 60 / per_step))
    session = LineSession(line_dir, run_dir, state, recipe, args.commit_minutes, say)
    session.record = {
        "started": utc_now(),
        "first_step": trainer.step,
        "train_seconds_before": trainer.train_seconds,
        "resumed_from": kind,
        "device": device,
        "threads": torch.get_num_threads(),
        "bf16": trainer.use_bf16,  # off, with a warning, on a CPU without native bfloat16
        "host": platform.node(),
        "batch_size": recipe.batch_size,
        "recipe_overrides": overrides,
    }
    state.setdefault("sessions", []).append(session.record)

    def request_stop(signum: int, _frame: Any) -> None:
        trainer.stop_requested = True
        say(f"signal {signum}: stopping after this step")

    previous = {
        signum: signal.signal(signum, request_stop)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    say(
        f"session: {args.minutes} min, schedule steps {trainer.step} -> {config.steps}, device {device}, "
        f"{torch.get_num_threads()} threads, bf16 {session.record['bf16']}"
    )
    until = trainer.step + args.session_steps if args.session_steps > 0 else None
    try:
        summary = trainer.fit(on_log=say, until=until, on_checkpoint=session.on_checkpoint)
    except Exception:
        # The weights are those of the last finished step: keep them in the line before the error ends it.
        session.export(trainer)
        if args.commit_minutes > 0:
            session.commit(trainer)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    append_history(
        line_dir,
        {
            "event": "session",
            "step": trainer.step,
            "hours": trainer.train_seconds / 3600,
            "time": utc_now(),
            "session_steps": trainer.step - session.record["first_step"],
            "session_minutes": session.record["train_seconds"] / 60,
            "device": device,
        },
    )
    if args.commit_minutes > 0:
        session.commit(trainer)
    say(f"session done: {json.dumps(summary)}")
    return 0
