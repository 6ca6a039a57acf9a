"""The ``fcfi`` command line.

Each subcommand lives beside the room it drives; a room module exposes
``add_arguments(parser)`` and ``run(args) -> int``. The table below is the only place
that knows all subcommands, so ``fcfi --help`` stays cheap (rooms are imported on use).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from napari_fcfi import __version__

# name -> (module implementing add_arguments/run, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "napari_fcfi.plugin.demo",
        "open napari with a sample image, the FCFI widget and the bundled model",
    ),
    "segment": ("napari_fcfi.annotation.cli", "segment an image headlessly from a CSV click log"),
    "segment-all": (
        "napari_fcfi.annotation.segment_all_cli",
        "segment every object of images or stacks automatically",
    ),
    "eval": (
        "napari_fcfi.evaluation.cli",
        "evaluate models and baselines with a robot user (NoC/NoF/IoU curves)",
    ),
    "train": ("napari_fcfi.training.cli", "train an FCFI model on instance-label folders"),
    "finetune": (
        "napari_fcfi.training.finetune_cli",
        "adapt a model to your own labelled objects in a few minutes",
    ),
    "convert": ("napari_fcfi.model.cli_convert", "convert an official FCFI .pth checkpoint to safetensors"),
    "models": ("napari_fcfi.model.cli_models", "list the bundled and registered models"),
    "bench": ("napari_fcfi.bench.cli", "measure per-click latency and memory"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Parser with every subcommand listed; only ``selected`` gets its full arguments."""
    parser = argparse.ArgumentParser(
        prog="fcfi",
        description="napari-fcfi: click-based interactive segmentation (FCFI) for microscopy.",
    )
    parser.add_argument("--version", action="version", version=f"napari-fcfi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        # Only import the room when its subcommand is asked for (or for its --help).
        if name == selected:
            import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(selected=argv[0] if argv else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
