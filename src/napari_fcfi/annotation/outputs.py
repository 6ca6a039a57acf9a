"""Output files of the command-line tools: never one of their inputs, and an existing file only when
the user says so (``--force``): a labels file in a folder may be someone's hand-made annotation."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same file on disk when both exist (hard links, and names
    that differ only in case on macOS or Windows, included), else the same resolved path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def output_problem(targets: Iterable[Path], inputs: Iterable[Path], force: bool) -> str | None:
    """Why the tool must not write ``targets`` (None when it may): a target that is one of the
    ``inputs`` (never, even with ``force``), an existing directory, or an existing file without
    ``force``."""
    targets, inputs = [Path(t) for t in targets], [Path(i) for i in inputs]
    for target in targets:
        if any(same_file(target, source) for source in inputs):
            return f"{target} is one of the inputs: it is never replaced; choose another output"
        if target.is_dir():
            return f"{target} is a folder, not a labels file"
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        names = ", ".join(str(t) for t in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        return f"{names} exist{'s' if len(existing) == 1 else ''} already: nothing written; --force replaces, or choose another output"
    return None
