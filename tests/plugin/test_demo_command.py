"""`fcfi demo --screenshot` as CI's user-install check runs it: it must fail when the model does not load."""

import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_screenshot_exits_nonzero_when_the_model_does_not_load(tmp_path):
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run") is None:
        pytest.skip("needs a display or xvfb-run")
    missing = tmp_path / "no_such_model.safetensors"
    out = tmp_path / "demo.png"
    command = [sys.executable, "-m", "napari_fcfi.cli", "demo", "--screenshot", str(out)]
    command += ["--model", str(missing)]
    if not os.environ.get("DISPLAY"):
        command = ["xvfb-run", "-a", *command]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "did not load" in result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the window is still shown, with the message
