"""``fcfi convert OFFICIAL.pth OUT.safetensors``: official FCFI checkpoint -> napari-fcfi safetensors."""

from __future__ import annotations

import argparse
import json
import sys

from napari_fcfi.model.errors import CheckpointError
from napari_fcfi.model.official import convert_official_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("official", help="official FCFI checkpoint (.pth), read with the safe loader only")
    parser.add_argument("output", help="napari-fcfi weights file to write (.safetensors)")
    parser.add_argument("--name", default=None, help="model name stored in the metadata (default: file stem)")
    parser.add_argument("--description", default=None, help="description stored in the metadata")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        summary = convert_official_checkpoint(
            args.official, args.output, name=args.name, description=args.description, overwrite=args.force
        )
    except (CheckpointError, FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"fcfi convert: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    config = {key: value for key, value in summary["config"].items() if key != "arch"}
    print(f"read      {args.official} ({summary['input_bytes']:,} bytes)")
    print(f"class     {summary['official_class']} -> arch {summary['arch']!r}")
    print(f"config    {json.dumps(config)}")
    print(f"weights   {summary['state_dict_keys']} state-dict entries, {summary['parameters']:,} parameters")
    print(f"wrote     {summary['output']} ({summary['output_bytes']:,} bytes); round trip: all tensors equal")
    for note in summary["warnings"]:
        print(f"warning   {note}")
    return 0
