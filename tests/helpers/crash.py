"""Run a napari session as a real child process and end it with ``kill -9`` (SIGKILL, no cleanup)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.paths import REPO_ROOT

PRELUDE = f"""
import sys, time
from types import SimpleNamespace
import numpy as np
import napari
sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
from helpers.standins import DiskSegmenter
from napari_fcfi.plugin.models import ModelCache
from napari_fcfi.plugin.widget import FCFIWidget
from napari_fcfi.plugin.worker import ImmediateRunner


def fcfi_widget(viewer, root):
    return FCFIWidget(viewer, model_cache=ModelCache(loader=lambda s, d: SimpleNamespace(name=s)),
                      segmenter_factory=DiskSegmenter, runner=ImmediateRunner(), journal_root=root)
"""


def needs_display() -> None:
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run") is None:
        pytest.skip("needs a display or xvfb-run for the napari child process")


def run_session(script: str, folder: Path, name: str, kill: bool = True, timeout: float = 240) -> list[str]:
    """Run ``PRELUDE + script``; with ``kill`` it is killed with SIGKILL once it prints READY.

    Returns the lines it printed (up to READY, or all of them when it ends by itself).
    """
    path = folder / f"{name}.py"
    path.write_text(PRELUDE + script)
    command = [sys.executable, str(path)]
    if not os.environ.get("DISPLAY"):
        command = ["xvfb-run", "-a", *command]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[str] = []
    try:
        deadline = time.time() + timeout
        while True:
            line = child.stdout.readline()
            if not line and child.poll() is not None:
                if kill:
                    pytest.fail(
                        f"the napari process {name} died before READY: " + child.stderr.read()[-3000:]
                    )
                break
            lines.append(line.rstrip("\n"))
            if kill and line.startswith("READY"):
                break
            if time.time() > deadline:
                pytest.fail(f"the napari process {name} did not finish in time")
    finally:
        if kill or child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)  # kill -9, no cleanup of any kind
        child.wait(timeout=30)
    if not kill and child.returncode != 0:
        pytest.fail(f"the napari process {name} failed: " + child.stderr.read()[-3000:])
    return lines


def value_of(lines: list[str], key: str) -> str:
    """The text after ``KEY`` on the line that starts with it."""
    for line in lines:
        if line.startswith(key + " "):
            return line[len(key) + 1 :]
    raise AssertionError(f"{key} not printed; got {lines[-20:]}")
