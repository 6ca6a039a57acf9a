#!/usr/bin/env bash
# The README's user install, checked through the built packages (CI runs this from .ci/run):
# 1. build the sdist and the wheel (python -m build) and check them (twine check --strict);
# 2. the wheel holds the bundled model, its model card and the napari manifest, and nothing from
#    tests/ or docs/;
# 3. a fresh virtual environment (python -m venv, not the development one) gets the pinned CPU build
#    of torch first (as the README says: torch first, in the build for the machine), then the wheel
#    with [qt];
# 4. there, napari finds the plugin and `xvfb-run -a fcfi demo --screenshot` loads the bundled model,
#    clicks, and saves a non-trivial screenshot.
# Needs: build and twine (scripts/setup_dev.sh installs them), xvfb-run, PyPI. Takes a few minutes.
# KEEP=1 keeps the work folder (packages, venv, screenshot) and prints where it is; FCFI_TORCH: below.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/fcfi-user-install.XXXXXX")
if [[ "${KEEP:-0}" == 1 ]]; then
    trap 'echo "check_user_install: work folder kept: $work"' EXIT
else
    trap 'rm -rf "$work"' EXIT
fi
step() { echo "check_user_install [$((SECONDS - started)) s]: $*"; }

step "building the sdist and the wheel"
python3 -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
python3 -m twine check --strict "$work/dist"/*
wheel=$(ls "$work/dist"/napari_fcfi-*.whl)

step "checking what the wheel holds"
python3 - "$wheel" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
problems = []
if not any(n.startswith("napari_fcfi/weights/") and n.endswith(".safetensors") for n in names):
    problems.append("no bundled model napari_fcfi/weights/*.safetensors")
for required in ("napari_fcfi/weights/MODEL_CARD.md", "napari_fcfi/napari.yaml", "napari_fcfi/cli.py"):
    if required not in names:
        problems.append(f"missing {required}")
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in names:
        info = wheel.getinfo(name)
        if name.endswith(".safetensors") and info.file_size < 100_000:
            problems.append(f"{name} is only {info.file_size} bytes (a Git LFS pointer?)")
    manifest = wheel.read("napari_fcfi/napari.yaml").decode() if "napari_fcfi/napari.yaml" in names else ""
    entry_points = next((wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
if not manifest.startswith("name: napari-fcfi"):
    problems.append("napari_fcfi/napari.yaml is not the manifest (a dangling symlink?)")
if "napari_fcfi:napari.yaml" not in entry_points:
    problems.append("no napari.manifest entry point")
stray = [n for n in names if {"tests", "docs"} & set(n.split("/")[:-1])]
problems += [f"does not belong in the wheel: {n}" for n in stray]
if problems:
    sys.exit("wheel check failed:\n  " + "\n  ".join(problems))
print(f"wheel holds {len(names)} files: bundled model, model card and napari manifest; no tests/ or docs/")
EOF

step "fresh virtual environment: torch first, then the wheel with [qt] (the README's user install)"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
cd "$work"  # nothing from the repository is importable from here
# pip's output goes to a log that is shown only if it fails (this machine's pip config warns a lot).
quiet_pip() { pip install -q "$@" >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; return 1; }; }
# The pinned CPU build of torch (no CUDA wheels). FCFI_TORCH replaces these pip arguments elsewhere,
# e.g. "torch --index-url <the CPU wheel index>" in the release workflow.
read -ra torch_args <<<"${FCFI_TORCH:-torch==2.13.0}"
quiet_pip "${torch_args[@]}"
quiet_pip "$wheel[qt]"
python -m pip check
python - <<'EOF'
import sys
from pathlib import Path

import npe2

import napari_fcfi

location = Path(napari_fcfi.__file__).resolve()
if not location.is_relative_to(Path(sys.prefix).resolve()):
    sys.exit(f"napari_fcfi was imported from {location}, not from the fresh environment {sys.prefix}")
manifest = npe2.PluginManifest.from_distribution("napari-fcfi")
print(f"napari-fcfi {napari_fcfi.__version__} from {location.parent}; napari manifest {manifest.name!r} found")
EOF
npe2 validate napari-fcfi

step "xvfb-run -a fcfi demo --screenshot (bundled model, simulated clicks)"
xvfb-run -a fcfi demo --screenshot "$work/demo.png"
python - "$work/demo.png" <<'EOF'
import sys

import numpy as np
from imageio.v3 import imread

shot = np.asarray(imread(sys.argv[1]))[..., :3]
colours = len(np.unique(shot.reshape(-1, 3), axis=0))
print(f"screenshot {shot.shape[1]} x {shot.shape[0]} pixels, {colours} colours")
if shot.shape[0] < 400 or shot.shape[1] < 600 or colours < 50:
    sys.exit("the demo screenshot is too small or nearly blank")
EOF
deactivate
step "passed: the wheel installs and runs in a fresh environment"
