"""The command line as tests call it."""

from __future__ import annotations

from pathlib import Path

from napari_fcfi.cli import main


def segment_from_log(image: str | Path, log: str | Path, out: str | Path, *extra: str) -> int:
    """``fcfi segment IMAGE --clicks LOG --out OUT [extra...]``; returns the exit code."""
    return main(["segment", str(image), "--clicks", str(log), "--out", str(out), *extra])
