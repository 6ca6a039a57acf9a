"""Clicks: one user click on a 2D image.

Coordinate rounding: napari (and other viewers) report continuous coordinates where pixel ``i``
covers ``[i - 0.5, i + 0.5)``. The engine therefore maps a coordinate ``x`` to pixel
``floor(x + 0.5)`` (halves go up: 2.5 -> 3). A click is inside the image when the rounded pixel is,
i.e. ``-0.5 <= row < height - 0.5``. :class:`Click` stores the rounded integer pixel; the raw float
is not kept, so ``state()``/replay and the click log are exact.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple


class Click(NamedTuple):
    """One click on pixel ``(row, col)``; ``positive`` is True for "object", False for "background".

    The package's only click type (engine, plugin, evaluation robot, training). A named tuple, so it
    unpacks as ``row, col, positive`` and compares equal to the plain tuple.
    """

    row: int
    col: int
    positive: bool

    def to_dict(self) -> dict:
        return {"row": self.row, "col": self.col, "positive": self.positive}

    @classmethod
    def from_dict(cls, data: dict) -> Click:
        return cls(int(data["row"]), int(data["col"]), parse_bool(data["positive"]))


def round_coordinate(value: float) -> int:
    """Pixel index of a continuous coordinate: ``floor(value + 0.5)``."""
    return math.floor(float(value) + 0.5)


def parse_bool(value: object) -> bool:
    """Accept True/False, 1/0 and the strings true/false/yes/no/1/0/t/f (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Real) and not isinstance(value, bool):
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"positive must be true/false or 1/0, got {value!r}")
    text = str(value).strip().lower()
    if text in ("true", "t", "yes", "y", "1", "1.0", "positive", "+"):
        return True
    if text in ("false", "f", "no", "n", "0", "0.0", "negative", "-"):
        return False
    raise ValueError(f"positive must be true/false or 1/0, got {value!r}")


def make_click(row: float, col: float, positive: object, height: int, width: int) -> Click:
    """Validate a click against an image of ``height`` x ``width`` and round it to a pixel.

    Raises ``ValueError`` naming the coordinate and the image size when the coordinate is not a finite
    number or falls outside the image.
    """
    values = []
    for name, value in (("row", row), ("col", col)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"click {name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(
                f"click {name} must be finite, got {number!r} (click at row={row!r}, col={col!r})"
            )
        values.append(number)
    r, c = round_coordinate(values[0]), round_coordinate(values[1])
    if not (0 <= r < height and 0 <= c < width):
        raise ValueError(
            f"click at row={values[0]:g}, col={values[1]:g} is outside the image of "
            f"{height} rows x {width} columns (valid: -0.5 <= row < {height - 0.5:g}, "
            f"-0.5 <= col < {width - 0.5:g})"
        )
    return Click(r, c, parse_bool(positive))
