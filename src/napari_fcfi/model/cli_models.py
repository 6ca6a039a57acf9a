"""``fcfi models``: the bundled and registered models, and whether each is on disk."""

from __future__ import annotations

import argparse
import json

from napari_fcfi.model.registry import cache_dir, list_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def _size(size_bytes: int | None) -> str:
    return "?" if size_bytes is None else f"{size_bytes / 2**20:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    models = list_models()
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "models": models}, indent=2))
        return 0
    print(f"cache folder: {cache_dir()}  (override with NAPARI_FCFI_CACHE)")
    for model in models:
        if model["kind"] == "bundled":
            status = "bundled" if model["available"] else "bundled weights MISSING from this installation"
        else:
            status = "cached" if model["available"] else "not downloaded (downloads on first use)"
        print(f"\n{model['name']}  [{model['arch']}, {model['kind']}]  {status}")
        print(f"  {model['description']}")
        print(f"  file: {model['path']}")
        if model["url"]:
            sha = model["sha256"] or "not published"
            print(f"  url:  {model['url']}  ({_size(model['size_bytes'])}, sha256 {sha})")
    return 0
