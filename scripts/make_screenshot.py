"""Regenerate the README screenshot of the FCFI widget at work (docs/images/widget.png).

Runs ``fcfi demo --screenshot``: the 2D nuclei sample, the docked widget and the bundled model,
two committed nuclei and a third in progress (a positive and a negative click), then a screenshot
of the whole window. Needs a display; on a headless machine:

    xvfb-run -a python scripts/make_screenshot.py [--out docs/images/widget.png] [--model NAME_OR_FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "widget.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--model", default="default", help="model name or weights file (default: bundled)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from napari_fcfi.cli import main as fcfi_main

    return fcfi_main(["demo", "--screenshot", str(args.out), "--model", args.model, "--device", args.device])


if __name__ == "__main__":
    sys.exit(main())
