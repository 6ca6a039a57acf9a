"""Errors raised for unusable checkpoint files, shared by the official reader, our format and load_model.

Every problem with a file's content raises :class:`CheckpointError` (a ``ValueError``) or one of its
subclasses; a path that does not exist raises ``FileNotFoundError`` instead.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "UnsupportedCheckpointError",
    "StateDictMismatchError",
    "abbreviated_list",
]


def abbreviated_list(items: list[str], count: int = 5) -> str:
    """``[a, b, c, ... (N more)]``: the first ``count`` items, so messages stay readable for big models."""
    shown = ", ".join(items[:count])
    more = f", ... ({len(items) - count} more)" if len(items) > count else ""
    return f"[{shown}{more}]"


class CheckpointError(ValueError):
    """A file is not a usable checkpoint; the message names the file and the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects the restricted loader refuses (it may try to run code)."""


class UnsupportedCheckpointError(CheckpointError):
    """The checkpoint asks for a model class or option napari-fcfi does not implement.

    ``param`` names the offending constructor parameter (None for an unknown class/format).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StateDictMismatchError(CheckpointError):
    """The stored weights do not map one to one onto the network.

    ``missing``: keys the network needs but the file lacks; ``unexpected``: keys in the file the
    network does not have; ``mismatched``: ``(key, shape in file, shape in network)``.
    """

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {abbreviated_list(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) {abbreviated_list(unexpected)}")
        if mismatched:
            shown = [f"{key}: file {list(a)} vs network {list(b)}" for key, a, b in mismatched]
            parts.append(f"{len(mismatched)} shape mismatch(es) {abbreviated_list(shown)}")
        super().__init__(f"{source}: the weights do not match the network: " + "; ".join(parts))
