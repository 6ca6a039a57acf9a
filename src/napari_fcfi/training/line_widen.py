"""Widen a training line's network in place (``fcfi train --line DIR --widen 8,16,48,96``).

The line goes on from the same function with more channels (:mod:`napari_fcfi.model.widening`): no
hour of its training is lost, and its history records where the network changed. The optimizer
state of a run folder belongs to the old shape, so the next session starts from the committed
weights with a fresh optimizer (as on a new machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_fcfi.training.line import (
    STATE_FILE,
    WEIGHTS_FILE,
    LineError,
    append_history,
    line_model_metadata,
    read_state,
    resume_point,
    utc_now,
    write_json_atomic,
)


def parse_branch_channels(text: str) -> list[int]:
    """``"8,16,48,96"`` -> ``[8, 16, 48, 96]`` (a clear :class:`LineError` otherwise)."""
    try:
        channels = [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        channels = []
    if len(channels) != 4 or min(channels) < 1:
        raise LineError(f"--widen needs four positive branch widths such as 8,16,48,96, got {text!r}")
    return channels


def widen_line(line_dir: str | Path, run_dir: str | Path, branch_channels: list[int], seed: int = 0) -> str:
    """Replace the line's weights by their widened copy; returns what happened, in words.

    Refused (:class:`LineError`) when the run folder holds a newer checkpoint than the committed
    state: its steps would be lost. Nothing changes when the network already has these widths.
    """
    import torch

    from napari_fcfi.model import load_model, save_model
    from napari_fcfi.model.architectures import build_network
    from napari_fcfi.model.widening import branch_channels_of, widen_hrnet

    line_dir = Path(line_dir)
    state = read_state(line_dir)
    kind, source, step = resume_point(line_dir, run_dir)
    if kind == "run" and step > int(state["step"]):
        raise LineError(
            f"{source} (step {step}) is newer than the line's committed weights (step {state['step']}): "
            "finish a session without --widen first (it exports the newest weights), then widen"
        )
    model = load_model(str(line_dir / WEIGHTS_FILE), device="cpu")
    net = build_network(dict(model.config))
    net.load_state_dict(model.state_dict())
    del model
    try:
        before = branch_channels_of(dict(net.config))
    except ValueError as error:
        raise LineError(str(error)) from error
    if before == list(branch_channels):
        return f"the line's network already has branch widths {before}"
    try:
        wide = widen_hrnet(net.eval(), branch_channels, seed=seed)
    except ValueError as error:
        raise LineError(str(error)) from error

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    record: dict[str, Any] = {
        "event": "widened",
        "step": int(state["step"]),
        "hours": float(state["train_seconds"]) / 3600,
        "time": utc_now(),
        "branch_channels_before": before,
        "branch_channels": list(branch_channels),
        "parameters_before": count(net),
        "parameters": count(wide),
    }
    save_model(wide, line_dir / WEIGHTS_FILE, metadata=line_model_metadata(state))
    state.setdefault("widenings", []).append({k: v for k, v in record.items() if k != "event"})
    write_json_atomic(line_dir / STATE_FILE, state)
    append_history(line_dir, record)
    return (
        f"widened the line's network at step {state['step']}: branch widths {before} -> "
        f"{list(branch_channels)}, {record['parameters_before']:,} -> {record['parameters']:,} parameters"
    )
