"""The training line: start, continue from the run folder or the committed state, commit, GPU script,
and the paired shipping comparison."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage.io import imsave

from helpers.paths import REPO_ROOT
from napari_fcfi.bench.synthetic import synthetic_network_input
from napari_fcfi.cli import main
from napari_fcfi.evaluation.compare import compare, paired_difference
from napari_fcfi.evaluation.results import EvalResult, ObjectResult
from napari_fcfi.model import load_model, save_model
from napari_fcfi.model.networks import FCFIHRNet
from napari_fcfi.training.data import make_synthetic_pool
from napari_fcfi.training.line import (
    LineError,
    LineRecipe,
    commit_line,
    read_history,
    read_state,
    resume_point,
)
from napari_fcfi.training.line_widen import parse_branch_channels, widen_line

TINY_RECIPE = [
    "batch_size=2",
    "crop_size=48",
    "input_size=64",
    "warmup_steps=1",
    "val_every=3",
    "val_objects=2",
    "synthetic_fraction=0.5",
    "synthetic_images=2",
]


@pytest.fixture
def start_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = FCFIHRNet(width=4, ocr_width=4, mid_ch=4, small=True).eval()
    return save_model(
        net,
        tmp_path / "start.safetensors",
        metadata={"name": "start", "input_size": 64, "training": {"step": 10, "train_seconds": 600.0}},
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "folder"
    folder.mkdir()
    for index, item in enumerate(make_synthetic_pool(3, seed=0, shape=(96, 96))):
        imsave(
            folder / f"im{index}_image.png",
            np.clip(item.image * 255, 0, 255).astype(np.uint8),
            check_contrast=False,
        )
        tifffile.imwrite(folder / f"im{index}_labels.tif", item.labels.astype(np.int32))
    return folder


def _train(line: Path, run: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--line",
            str(line),
            "--out",
            str(run),
            "--minutes",
            "5",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--no-prefetch",
            "--no-progress",
            *extra,
        ]
    )


def _start_line(line: Path, run: Path, start_model: Path, folder: Path, steps: int) -> int:
    """``--line-init`` a line from ``start_model`` on ``folder`` with the tiny recipe, ``steps`` steps."""
    recipe = [arg for entry in TINY_RECIPE for arg in ("--recipe", entry)]
    data = ["--train-data", str(folder), "--val-data", str(folder)]
    return _train(line, run, "--line-init", str(start_model), *data, "--session-steps", str(steps), *recipe)


def test_line_starts_continues_and_resumes_from_the_newer_state(tmp_path, start_model, folder, capsys):
    line, run = tmp_path / "line", tmp_path / "run"
    code = _start_line(line, run, start_model, folder, steps=3)
    assert code == 0, capsys.readouterr().err
    state = read_state(line)
    assert state["step"] == 13 and state["train_seconds"] > 600.0  # 10 earlier steps + 3; time carried on
    assert state["recipe"]["batch_size"] == 2 and state["sessions"][0]["resumed_from"] == "line"
    history = read_history(line)
    assert [r["event"] for r in history] == ["created", "validation", "session"]
    model = load_model(line / "model.safetensors", device="cpu")
    assert model.fcfi_metadata["training"]["step"] == 13
    assert model.fcfi_metadata["training"]["line"] == state["line_id"]

    # the run folder's checkpoint (with the optimizer) is as new as the committed state: it is used
    assert resume_point(line, run)[:1] == ("run",)
    assert _train(line, run, "--session-steps", "2") == 0
    state = read_state(line)
    assert state["step"] == 15 and state["sessions"][-1]["resumed_from"] == "run"

    # a new machine has no run folder: the line continues from the committed weights
    assert _train(line, tmp_path / "other-run", "--session-steps", "2", "--recipe", "batch_size=3") == 0
    state = read_state(line)
    assert state["step"] == 17 and state["sessions"][-1]["resumed_from"] == "line"
    assert state["sessions"][-1]["recipe_overrides"] == {"batch_size": 3}
    assert state["recipe"]["batch_size"] == 2  # an override is this session's, not the line's
    weights = load_model(line / "model.safetensors", device="cpu").state_dict()
    assert any(not torch.equal(a, b) for a, b in zip(weights.values(), model.state_dict().values()))

    # an older run folder (another line, or behind the committed state) is not a resume point
    assert resume_point(line, run) == ("line", line / "model.safetensors", 17)


def test_line_errors_are_clear(tmp_path, start_model, capsys):
    with pytest.raises(LineError, match="--line-init"):
        read_state(tmp_path / "nothing")
    assert _train(tmp_path / "nothing", tmp_path / "run") == 2
    assert "--line-init" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "state.json").write_text("{not json")
    with pytest.raises(LineError, match="cannot be read"):
        read_state(tmp_path / "bad")
    with pytest.raises(LineError, match="KEY=VALUE"):
        LineRecipe().with_overrides(["no_such_entry=1"])


def test_train_data_weight_weighs_the_train_data_sources():
    from napari_fcfi.training.data import make_labeled_image
    from napari_fcfi.training.line import line_sampler

    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 10:20] = 1
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    split, whole = make_labeled_image(image, labels, name="a"), make_labeled_image(image, labels, name="b")
    split.group, whole.group = "dsb2018_train", "mnfinder_nuclei/train"
    recipe, changed = LineRecipe(
        data=["../data/dsb2018_train"], train_data=["../data/mnfinder_nuclei/train"], synthetic_fraction=0.0
    ).with_overrides(["train_data_weight=2"])
    assert changed == {"train_data_weight": 2}
    sampler = line_sampler(recipe, [split] * 9 + [whole] * 9, seed=0)
    assert sampler.modality_weights.tolist() == pytest.approx([1 / 3, 2 / 3])
    plain = line_sampler(
        LineRecipe(train_data=recipe.train_data, synthetic_fraction=0.0), [split, whole], seed=0
    )
    assert plain.modality_weights.tolist() == pytest.approx([0.5, 0.5])


def test_commit_line_commits_only_the_line_folder(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "training" / "line").mkdir(parents=True)
    for key, value in {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }.items():
        monkeypatch.setenv(key, value)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (repo / "other.txt").write_text("work in progress")
    git("add", "other.txt")
    (repo / "training" / "line" / "state.json").write_text("{}")
    assert commit_line(repo / "training" / "line", "training line: step 1") == "committed"
    assert git("show", "--name-only", "--format=%s", "HEAD").split() == [
        "training",
        "line:",
        "step",
        "1",
        "training/line/state.json",
    ]
    assert "A  other.txt" in git("status", "--short")  # the user's staged work is left as it was


def test_gpu_script_continues_the_line_on_the_cpu_with_a_tiny_budget(tmp_path, start_model, folder):
    line = tmp_path / "line"
    recipe = [arg for entry in TINY_RECIPE for arg in ("--recipe", entry)]
    assert (
        _train(
            line,
            tmp_path / "run",
            "--line-init",
            str(start_model),
            "--train-data",
            str(folder),
            "--session-steps",
            "1",
            *recipe,
        )
        == 0
    )
    env = {
        **os.environ,
        "FCFI_DEVICE": "cpu",
        "FCFI_BATCH": "2",
        "FCFI_THREADS": "1",
        "FCFI_EXTRA": "--session-steps 2 --no-prefetch",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "train_line_gpu.sh"), "1", str(tmp_path / "gpu-run"), str(line)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    state = read_state(line)
    assert state["step"] == 13 and state["sessions"][-1]["device"] == "cpu"
    assert state["sessions"][-1]["recipe_overrides"] == {"batch_size": 2}
    assert (tmp_path / "gpu-run" / "last.pt").is_file()


def _result(name: str, clicks: list[int], dataset: str = "set") -> EvalResult:
    objects = [
        ObjectResult(f"o{i}", [0.5] * (n - 1) + [0.95] if n <= 20 else [0.5] * 20, [0.1] * min(n, 20))
        for i, n in enumerate(clicks)
    ]
    return EvalResult(name, dataset, 20, objects)


def test_paired_comparison_ships_only_a_measured_gain():
    rng = np.random.default_rng(0)
    base = rng.integers(1, 10, size=60).tolist()
    better = [max(1, n - 2) for n in base]
    noisy = [max(1, n + int(d)) for n, d in zip(base, rng.integers(-1, 2, size=60))]
    assert compare([_result("b", base)], [_result("c", better)])["ship"]
    assert not compare([_result("b", base)], [_result("c", noisy)])["ship"]
    # a gain on one set does not hide a measurable loss on the other
    worse = [n + 3 for n in base]
    report = compare(
        [_result("b", base, "A"), _result("b", base, "B")],
        [_result("c", [max(1, n - 6) for n in base], "A"), _result("c", worse, "B")],
    )
    assert not report["ship"]
    row = paired_difference("x", {"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 1.0})
    assert row.difference == -0.5 and row.low <= row.difference <= row.high
    with pytest.raises(ValueError, match="same objects"):
        paired_difference("x", {"a": 1.0}, {"b": 1.0})
    assert json.dumps(report)  # the report is JSON (written next to the evaluation results)


def test_widening_the_line_keeps_its_function_and_goes_on_wider(tmp_path, start_model, folder, capsys):
    line, run = tmp_path / "line", tmp_path / "run"
    assert _start_line(line, run, start_model, folder, steps=2) == 0
    narrow = load_model(line / "model.safetensors", device="cpu")
    assert resume_point(line, run)[0] == "run"  # the run folder's optimizer state is as new

    # widen without training (the function the CLI flag calls before its session)
    message = widen_line(line, run, parse_branch_channels("4,8,24,48"))
    assert "4, 8, 24, 48" in message
    wide = load_model(line / "model.safetensors", device="cpu")
    assert wide.config["branch_channels"] == [4, 8, 24, 48]
    image, points, new_clicks, gate = synthetic_network_input(64, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(
            wide(image, points, new_clicks, gate)["instances"],
            narrow(image, points, new_clicks, gate)["instances"],
            atol=2e-5,
            rtol=1e-5,
        )
    state = read_state(line)
    assert state["step"] == 12 and state["widenings"][0]["branch_channels_before"] == [4, 8, 16, 32]
    assert read_history(line)[-1]["event"] == "widened"
    # the run folder's checkpoint holds the narrow network: no longer a resume point
    assert resume_point(line, run)[0] == "line"
    assert widen_line(line, run, [4, 8, 24, 48]).startswith("the line's network already has")

    # the CLI flag: same widths again is a no-op; the session trains the wide network on
    assert _train(line, run, "--widen", "4,8,24,48", "--session-steps", "2") == 0
    state = read_state(line)
    assert state["step"] == 14 and state["sessions"][-1]["resumed_from"] == "line"
    assert load_model(line / "model.safetensors", device="cpu").config["branch_channels"] == [4, 8, 24, 48]
    assert resume_point(line, run)[0] == "run"

    # narrower widths, bad text: clear errors, nothing changed
    for bad, expected in (("4,8,16,32", "no smaller than"), ("4,8", "four positive")):
        assert _train(line, run, "--widen", bad, "--session-steps", "1") == 2
        assert expected in capsys.readouterr().err
    assert read_state(line)["step"] == 14
