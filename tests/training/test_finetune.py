"""Adapting a model to the user's objects: ``finetune``, ``save_adapted``, the keep-or-revert rule, ``fcfi finetune``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_fcfi.training.adaptation import adapt_with_check, check_adaptation, hold_back_objects
from napari_fcfi.training.finetune import finetune, save_adapted

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def base(tiny_fcfi_net):
    """The tiny random FCFI with a 64 px working size (so crops are 64 px), as load_model would give it."""
    net = copy.deepcopy(tiny_fcfi_net).eval().requires_grad_(False)
    net.fcfi_metadata = {
        "name": "tiny",
        "input_size": 64,
        "path": "/nowhere/tiny.safetensors",
        "format": "napari-fcfi",
        "format_version": 1,
        "config": net.config,
    }
    return net


def _toy(count: int = 2, size: int = 48, seed: int = 0):
    """Gray and RGB toy images with 2-3 bright rectangles each."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for index in range(count):
        label = np.zeros((size, size), np.uint16)
        label[4:20, 6:22] = 7
        label[26:44, 24:40] = 300
        if index % 2:
            label[30:40, 4:14] = 9
        image = rng.normal(10, 2, (size, size)).astype(np.float32) + 40 * (label > 0)
        images.append(np.repeat(image[..., None], 3, -1).astype(np.uint8) if index % 2 else image)
        labels.append(label)
    return images, labels


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_finetune_returns_a_new_adapted_model_and_leaves_the_input_alone(base):
    before = copy.deepcopy(base)
    metadata_before = copy.deepcopy(base.fcfi_metadata)
    images, labels = _toy()
    calls = []
    adapted = finetune(base, images, labels, steps=3, progress=lambda f, m: calls.append((f, m)))
    assert adapted is not base and _same_weights(base, before) and base.fcfi_metadata == metadata_before
    assert not base.training and not any(p.requires_grad for p in base.parameters())
    assert not adapted.training and not any(p.requires_grad for p in adapted.parameters())
    assert not _same_weights(adapted, base)
    state, original = adapted.state_dict(), base.state_dict()
    running = [k for k in state if k.endswith(("running_mean", "running_var"))]
    assert running and all(torch.equal(state[k], original[k]) for k in running)  # BatchNorm frozen
    info = adapted.fcfi_metadata["adaptation"]
    assert info["base_model"] == "tiny" and info["base_path"] == "/nowhere/tiny.safetensors"
    assert (info["objects"], info["images"], info["steps"], info["seed"]) == (5, 2, 3, 0)
    assert info["crop_size"] == info["input_size"] == 64 and info["cancelled"] is False
    assert adapted.fcfi_metadata["name"] == "tiny-adapted" and adapted.fcfi_metadata["input_size"] == 64
    assert not {"format", "format_version", "config", "path"} & set(adapted.fcfi_metadata)
    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions) and len(calls) == 5


def test_finetune_is_deterministic_with_steps_and_seed(base):
    images, labels = _toy()
    first = finetune(base, images, labels, steps=2, seed=3)
    second = finetune(base, images, labels, steps=2, seed=3)
    other = finetune(base, images, labels, steps=2, seed=4)
    assert _same_weights(first, second)
    assert not _same_weights(first, other)


def test_a_time_budget_decides_the_steps(base):
    images, labels = _toy()
    adapted = finetune(base, images, labels, time_budget_s=2.0)
    info = adapted.fcfi_metadata["adaptation"]
    assert info["steps"] >= 1 and info["time_budget_s"] == 2.0 and info["steps_requested"] is None
    assert info["seconds"] < 2.0 + 5.0  # at most one step over (a step takes well under a second here)


def test_cancelling_returns_the_partial_result(base):
    images, labels = _toy()
    adapted = finetune(base, images, labels, steps=50, progress=lambda f, m: m.startswith("step 2"))
    info = adapted.fcfi_metadata["adaptation"]
    assert info["steps"] == 2 and info["cancelled"] is True and not adapted.training
    untouched = finetune(base, images, labels, steps=50, progress=lambda f, m: True)
    assert untouched.fcfi_metadata["adaptation"]["steps"] == 0 and _same_weights(untouched, base)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        ([], [], "no images"),
        ([np.zeros((16, 16))], [], "1 images but 0 label images"),
        ([np.zeros((16, 16))], [np.zeros((16, 17), int)], "shape"),
        ([np.zeros((16, 16))], [np.zeros((16, 16), int)], "no objects"),
        ([np.zeros((16, 16))], [np.full((16, 16), 0.5)], "non-integer"),
        ([np.zeros((16, 16))], [np.full((16, 16), -1)], "negative"),
        ([np.zeros((16, 16))], [np.array(["a"] * 256).reshape(16, 16)], "dtype"),
        ([np.zeros((16, 16, 5))], [np.ones((16, 16), int)], "gray"),
        (np.zeros((16, 16)), np.ones((16, 16), int), "sequences"),
        ([np.zeros((16, 16))], [np.ones((2, 16, 16), int)], "2D"),
    ],
)
def test_bad_input_is_a_clear_value_error(base, images, labels, message):
    with pytest.raises(ValueError, match=message):
        finetune(base, images, labels, steps=1)


def test_bad_budgets_are_value_errors(base):
    images, labels = _toy(1)
    for kwargs in ({"steps": 0}, {"steps": 1.5}, {"time_budget_s": 0}, {"time_budget_s": float("nan")}):
        with pytest.raises(ValueError, match="steps|time_budget_s"):
            finetune(base, images, labels, **kwargs)


def test_whole_float_labels_are_accepted(base):
    images, labels = _toy(1)
    adapted = finetune(base, images, [labels[0].astype(np.float32)], steps=1)
    assert adapted.fcfi_metadata["adaptation"]["objects"] == 2


def test_save_and_load_round_trip_with_metadata_and_card(base, tmp_path):
    from napari_fcfi import InteractiveSegmenter, load_model, save_model

    images, labels = _toy()
    adapted = finetune(base, images, labels, steps=1)
    path = save_adapted(adapted, tmp_path / "adapted")
    assert path.name == "adapted.safetensors"
    loaded = load_model(path, device="cpu")
    assert _same_weights(loaded.to(memory_format=torch.contiguous_format), adapted)
    assert loaded.fcfi_metadata["adaptation"] == adapted.fcfi_metadata["adaptation"]
    assert loaded.fcfi_metadata["name"] == "tiny-adapted" and loaded.fcfi_metadata["input_size"] == 64
    card = path.with_suffix(".md").read_text()
    assert "`tiny`" in card and "5 objects in 2 images" in card and "Not measured" in card
    save_model(adapted, tmp_path / "plain.safetensors", metadata=adapted.fcfi_metadata)  # no reserved keys
    segmenter = InteractiveSegmenter(loaded)
    segmenter.set_image(images[0])
    assert segmenter.add_click(10, 12, True).shape == images[0].shape[:2]
    with pytest.raises(ValueError, match="adaptation"):
        save_adapted(base, tmp_path / "base.safetensors")


def test_hold_back_objects_splits_objects_disjointly():
    _, labels = _toy(4)  # 10 objects
    train, held = hold_back_objects(labels, 0.25, seed=0)
    assert sum(len(np.unique(h[h > 0])) for h in held) == 2  # round(0.25 * 10)
    for original, t, h in zip(labels, train, held):
        assert not ((t > 0) & (h > 0)).any()
        np.testing.assert_array_equal(np.where(h > 0, h, t), original)
    again = hold_back_objects(labels, 0.25, seed=0)[1]
    assert all(np.array_equal(a, b) for a, b in zip(held, again))
    single = np.zeros((16, 16), int)
    single[2:10, 2:10] = 1
    with pytest.raises(ValueError, match="at least 2"):
        hold_back_objects([single])


def test_check_keeps_only_a_model_needing_fewer_clicks(base):
    images, labels = _toy(2)
    _, held = hold_back_objects(labels, 0.5, seed=0)
    adapted = finetune(base, images, labels, steps=1)
    same = check_adaptation(base, base, images, held, max_clicks=3)
    assert same.keep is False and same.base_clicks == same.adapted_clicks and same.objects >= 1
    check = check_adaptation(base, adapted, images, held, max_clicks=3)
    assert check.keep == (check.adapted_clicks < check.base_clicks)
    assert check.base_clicks == check.base["noc85"] + check.base["noc90"]
    assert adapted.fcfi_metadata["adaptation"]["held_back_check"] == check.to_dict()
    cancelled = check_adaptation(base, adapted, images, held, max_clicks=3, progress=lambda f, m: True)
    assert cancelled.cancelled and cancelled.keep is False


def test_adapt_with_check_reports_progress_in_order(base, tmp_path):
    images, labels = _toy(2)
    fractions = []
    adapted, _ = adapt_with_check(base, images, labels, steps=1, progress=lambda f, m: fractions.append(f))
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert adapted.fcfi_metadata["adaptation"]["objects"] == 4  # one of the five held back
    card = save_adapted(adapted, tmp_path / "m.safetensors").with_suffix(".md").read_text()
    assert "held back" in card and ("keep the adapted model" in card or "revert" in card)


def test_trainer_without_out_dir_writes_nothing(base, tmp_path, monkeypatch):
    from napari_fcfi.training.data import TrainingSampler
    from napari_fcfi.training.finetune import prepare_objects
    from napari_fcfi.training.trainer import TrainConfig, Trainer

    monkeypatch.chdir(tmp_path)
    sampler = TrainingSampler(prepare_objects(*_toy(1)), crop_size=48, seed=0)
    net = copy.deepcopy(base).requires_grad_(True)
    trainer = Trainer(
        net, sampler, None, TrainConfig(steps=2, batch_size=2, prefetch=False, val_every=0), progress=False
    )
    assert trainer.fit()["step"] == 2 and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="out_dir=None"):
        trainer.save("last.pt")


# ------------------------------------------------------------------------------ fcfi finetune
@pytest.fixture
def base_file(base, tmp_path):
    from napari_fcfi.model import save_model

    return save_model(base, tmp_path / "tiny.safetensors", metadata={"name": "tiny", "input_size": 64})


def test_cli_adapts_on_an_instance_folder(base_file, tmp_path, capsys):
    import tifffile
    from skimage.io import imsave

    from napari_fcfi.cli import main
    from napari_fcfi.model import load_model

    folder = tmp_path / "folder"
    folder.mkdir()
    images, labels = _toy(3)
    for index, (image, label) in enumerate(zip(images, labels)):
        imsave(folder / f"im{index}_image.png", np.clip(image, 0, 255).astype(np.uint8), check_contrast=False)
        tifffile.imwrite(folder / f"im{index}_labels.tif", label)
    out = tmp_path / "adapted.safetensors"
    code = main(
        [
            "finetune",
            "--images",
            str(folder),
            "--base",
            str(base_file),
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
            "--always-write",
        ]
    )
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "held-back check" in text and out.exists() and out.with_suffix(".md").exists()
    info = load_model(out, device="cpu").fcfi_metadata["adaptation"]
    assert info["steps"] == 2 and info["images"] == 3 and info["base_model"] == "tiny"
    assert "held_back_check" in info


def test_cli_adapts_on_a_tiff_stack_and_refuses_bad_input(base_file, tmp_path, capsys):
    import tifffile

    from napari_fcfi.cli import main

    images, labels = _toy(2)
    tifffile.imwrite(tmp_path / "stack_image.tif", np.stack([images[0], images[0]]))
    tifffile.imwrite(tmp_path / "stack_labels.tif", np.stack(labels))
    out = tmp_path / "stack.safetensors"
    args = [
        "finetune",
        "--images",
        str(tmp_path / "stack_image.tif"),
        "--base",
        str(base_file),
        "--out",
        str(out),
        "--steps",
        "1",
        "--hold-back",
        "0",
        "--device",
        "cpu",
    ]
    assert main([*args, "--labels", str(tmp_path / "stack_labels.tif")]) == 0 and out.exists()
    assert main(args) == 2 and "--labels" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "short_labels.tif", labels[0][None])
    assert main([*args, "--labels", str(tmp_path / "short_labels.tif")]) == 2
    assert "does not match" in capsys.readouterr().err
