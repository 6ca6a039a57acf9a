"""Smoke tests of ``fcfi bench`` on a tiny network (no timing asserts: the machine is shared)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.paths import REPO_ROOT
from napari_fcfi.bench.feedback_modules import network_without_feedback_modules
from napari_fcfi.bench.image_driven_outputs import ImageDrivenOutputs
from napari_fcfi.bench.synthetic import synthetic_network_input, synthetic_nuclei_image
from napari_fcfi.bench.timing import summarize_ms
from napari_fcfi.cli import main
from napari_fcfi.model.fcfi_modules import CollaborativeFeedbackFusion, FocusedFeedbackCorrection
from napari_fcfi.model.networks import build_preset

TINY = "hrnet8-small-tiny"


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()  # `fcfi bench --threads` changes the process-wide setting
    yield
    torch.set_num_threads(threads)


def test_summarize_ms_median_and_p95():
    stats = summarize_ms([0.001 * v for v in range(1, 21)])  # 1..20 ms
    assert stats["n"] == 20
    assert stats["median_ms"] == pytest.approx(10.5)
    assert stats["p95_ms"] == pytest.approx(19.0)
    assert stats["min_ms"] == pytest.approx(1.0) and stats["max_ms"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="no timings"):
        summarize_ms([])


def test_synthetic_input_follows_the_call_contract():
    image, points, new_clicks, gate = synthetic_network_input(64)
    assert image.shape == (1, 4, 64, 64) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert points.shape == (1, 4, 3)  # 2 positives, 1 negative padded to 2
    assert points[0, 3].tolist() == [-1.0, -1.0, -1.0]
    assert new_clicks.dtype == torch.long and new_clicks.shape == (1, 1, 3)
    assert int(new_clicks[0, 0, 2]) == 0  # the newest click is the negative one
    assert gate == 1.0


def test_network_without_feedback_modules_is_built_from_the_config_flags_with_the_same_weights():
    torch.manual_seed(0)  # with some random draws FFCM/CFFM change nothing visible at 64 px
    net = build_preset(TINY).eval()
    without_modules = network_without_feedback_modules(net)
    assert without_modules.config == {**net.config, "use_ffcm": False, "use_cffm": False}
    kinds = (FocusedFeedbackCorrection, CollaborativeFeedbackFusion)
    assert any(isinstance(m, kinds) for m in net.modules())
    assert not any(isinstance(m, kinds) for m in without_modules.modules())
    assert not without_modules.training
    full_weights = net.state_dict()
    for key, value in without_modules.state_dict().items():  # backbone, click encoding, head: shared
        assert torch.equal(value, full_weights[key]), key
    image, points, new_clicks, gate = synthetic_network_input(64)
    with torch.inference_mode():
        full = net(image, points, new_clicks, gate)["instances"]
        without = without_modules(image, points, new_clicks, gate)["instances"]
    assert full.shape == without.shape == (1, 1, 64, 64)
    assert not torch.equal(full, without)  # FFCM/CFFM really were switched off
    with pytest.raises(ValueError, match="no FFCM/CFFM"):
        network_without_feedback_modules(torch.nn.Conv2d(1, 1, 1))


def test_network_without_feedback_modules_follows_dtype_and_memory_format():
    net = build_preset(TINY).eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
    without_modules = network_without_feedback_modules(net)
    assert {p.dtype for p in without_modules.parameters()} == {torch.bfloat16}
    kernels = [p for p in without_modules.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)


def test_image_driven_outputs_run_the_network_and_predict_the_bright_object():
    net = build_preset(TINY).eval()
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    wrapped = ImageDrivenOutputs(net)
    assert not wrapped.training and wrapped.config == net.config
    image, points, new_clicks, gate = synthetic_network_input(64)
    image[:, :3] = 0.1
    image[:, :3, 10:20, 30:40] = 0.9
    with torch.inference_mode():
        out = wrapped(image, points, new_clicks, gate)
    assert calls == [1]  # the real network ran (its cost is what is timed)
    object_mask = out["instances"][0, 0] > 0
    assert object_mask[10:20, 30:40].all() and int(object_mask.sum()) == 100
    assert out["updated_feedback2"].shape == (1, 1, 16, 16)


def test_synthetic_nuclei_image_is_uint16_with_bright_objects():
    image, nuclei = synthetic_nuclei_image(256, seed=1)
    assert image.dtype == np.uint16 and image.shape == (256, 256)
    row, col, _ = nuclei[0]
    assert image[row, col] > 1000 > int(np.median(image))


def test_fcfi_bench_end_to_end_on_a_tiny_network(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench", "--models", TINY, "--sizes", "64", "96", "--repeats", "2", "--warmup", "1",
            "--threads", "1", "--devices", "auto", "--module-sizes", "64", "--engine-model", TINY,
            "--engine-sizes", "192", "--engine-objects", "1", "--engine-clicks", "2", "--out", str(out),
            "--markdown", str(tmp_path / "bench.md"),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert (
        "per-click network latency" in printed
        and "FFCM+CFFM cost" in printed
        and "engine overhead" in printed
    )
    results = json.loads(out.read_text())
    assert results["machine"]["logical_cpus"] >= 1 and results["machine"]["torch"] == torch.__version__
    latency = [r for r in results["latency"] if r["device"] == "cpu"]
    assert [r["size"] for r in latency] == [64, 96]
    for record in latency:
        assert record["n"] == 2 and record["threads"] == 1 and record["precision"] == "fp32"
        assert 0 < record["median_ms"] <= record["p95_ms"] and record["rss_peak_mb"] > 0
    if not torch.cuda.is_available():
        assert results["not_measured"][0]["device"] == "cuda"
    (modules,) = results["feedback_modules"]
    assert modules["size"] == 64 and modules["ffcm_hook_ms"] > 0 and modules["cffm_hook_ms"] > 0
    (engine,) = results["engine"]
    assert engine["clicks"] == 2 and engine["image"] == "192x192 uint16"
    assert engine["network"]["median_ms"] > 0 and engine["overhead_pct"] is not None
    assert results["targets"]["engine_overhead_below_10pct"]["met"] in (True, False)
    assert engine["cpu_network"]["median_ms"] > 0 and latency[0]["cpu_median_ms"] > 0
    markdown = (tmp_path / "bench.md").read_text()
    assert "| hrnet8-small-tiny | random | cpu | fp32 | 64 |" in markdown and "192x192 uint16" in markdown


def test_bench_default_uses_the_bundled_weights_when_present(tmp_path, monkeypatch):
    from napari_fcfi.model import registry, save_model

    weights = tmp_path / "fcfi_default.safetensors"
    save_model(build_preset(TINY), weights, metadata={"name": "test-default", "input_size": [64, 64]})
    monkeypatch.setattr(registry, "BUNDLED_WEIGHTS", weights)
    out = tmp_path / "bundled.json"
    code = main(
        [
            "bench", "--models", "default", "--sizes", "64", "--repeats", "2", "--warmup", "1", "--threads", "1",
            "--sections", "latency", "--devices", "cpu", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert results["bundled_weights"] == "bundled" and results["bundled_working_size"] == 64
    assert results["latency"][0]["model"] == "default" and results["latency"][0]["weights"] == "bundled"
    assert results["targets"]["bundled_cpu_at_most_150ms"]["size"] == 64


def test_fcfi_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "--models", TINY, "--repeats", "0", "--sections", "latency"]) == 2
    assert "--repeats" in capsys.readouterr().err
    assert main(["bench", "--models", "no-such-model", "--sections", "latency", "--sizes", "64"]) == 2
    assert "no-such-model" in capsys.readouterr().err


@pytest.mark.slow
def test_napari_end_to_end_script_on_a_tiny_network(tmp_path):
    """benchmarks/napari_e2e.py in a fresh process (under xvfb-run when there is no display)."""
    import os
    import shutil
    import subprocess
    import sys

    import napari  # noqa: F401 - a test dependency

    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run") is None:
        pytest.skip("needs a display or xvfb-run")
    script = REPO_ROOT / "benchmarks" / "napari_e2e.py"
    out = tmp_path / "e2e.json"
    command = [
        sys.executable, str(script), "--model", TINY, "--image-sizes", "256", "--objects", "1", "--clicks", "2",
        "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    if not os.environ.get("DISPLAY"):
        command = ["xvfb-run", "-a", *command]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["napari_e2e"]
    assert row["clicks"] == 2 and row["outputs"] == "image"
    # the click-to-preview time holds the engine time and the parts around it
    assert row["e2e"]["median_ms"] >= row["engine"]["median_ms"] > 0
    assert row["dispatch"]["median_ms"] >= 0 and row["deliver"]["median_ms"] >= 0
    assert row["main_thread_cpu"]["median_ms"] > 0
