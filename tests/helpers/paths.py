"""Paths the tests use: the repository and the read-only shared material beside it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_DOCS = SHARED / "docs"
SAMPLE_DIR = REPO_ROOT / "src" / "napari_fcfi" / "sample_data"
