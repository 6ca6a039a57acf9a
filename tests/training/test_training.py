"""The trainer: loss, determinism and resume, schedules, validation, ablations, bf16, export, lines of data.

Data, augmentation, clicks and losses: test_training_data.py."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.standins import ContractStandIn, toy_training_items
from napari_fcfi.model.click_encoding import newest_click_tensor, points_tensor
from napari_fcfi.training.data import (
    TrainingSampler,
    make_labeled_image,
)
from napari_fcfi.training.losses import LossWeights
from napari_fcfi.training.trainer import TrainConfig, Trainer, learning_rate_factor
from napari_fcfi.training.validation import engine_validate, pick_validation_samples


# ------------------------------------------------------------------ trainer
def _trainer(tmp_path, steps=12, seed=0, name="run", prefetch=False, net=None):
    torch.manual_seed(seed)
    items = toy_training_items()
    sampler = TrainingSampler(items, crop_size=48, seed=seed, input_size=64)
    config = TrainConfig(
        steps=steps,
        batch_size=4,
        lr=5e-3,
        warmup_steps=2,
        seed=seed,
        val_every=0,
        log_every=2,
        checkpoint_minutes=1e9,
        prefetch=prefetch,
    )
    return Trainer(net or ContractStandIn(), sampler, tmp_path / name, config, progress=False)


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    trainer = _trainer(tmp_path, steps=50)
    trainer.config.max_extra_clicks = 0
    trainer.config.warmup_steps = 1
    # Train repeatedly on one batch: the loss must fall clearly.
    trainer.sampler.batch = (lambda original: lambda step, bs: original(0, bs))(trainer.sampler.batch)
    losses = [trainer.train_step(step)["loss"] for step in range(50)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_training_is_deterministic_and_resume_is_exact(tmp_path):
    straight = _trainer(tmp_path, steps=8, name="a", prefetch=True)  # batches from a worker process
    straight.fit()
    first = _trainer(tmp_path, steps=8, name="b")
    first.fit(until=4)  # interrupted half-way
    resumed = _trainer(tmp_path, steps=8, name="c")
    resumed.load(tmp_path / "b" / "last.pt")
    assert resumed.step == 4
    resumed.fit()
    again = _trainer(tmp_path, steps=8, name="d")
    again.fit()
    for key, value in straight.net.state_dict().items():
        assert torch.equal(value, again.net.state_dict()[key]), key  # same seed -> same weights
        assert torch.allclose(value.float(), resumed.net.state_dict()[key].float(), atol=1e-6), key
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6, 8] and all(np.isfinite(r["loss"]) for r in log)


def test_a_new_schedule_peaks_at_the_configured_rate_after_resuming(tmp_path):
    first = _trainer(tmp_path, steps=8, name="peak")
    first.fit(until=4)
    resumed = _trainer(tmp_path, steps=8, name="lower")
    resumed.config.lr = 1e-3  # the checkpoint's scheduler was made for 5e-3
    resumed.load(tmp_path / "peak" / "last.pt")
    resumed.restart_schedule(20)
    resumed.fit(until=7)
    peak = max(json.loads(line)["lr"] for line in (tmp_path / "lower" / "log.jsonl").read_text().splitlines())
    assert peak == pytest.approx(1e-3, rel=0.05)
    assert resumed.scheduler.base_lrs == [pytest.approx(1e-3)]


class BackboneStandIn(ContractStandIn):
    """The stand-in with its encoder as a backbone trained at a tenth of the rate (as RITM does)."""

    backbone_lr_mult = 0.1

    def backbone_parameters(self):
        return self.encoder.parameters()


def test_a_new_peak_keeps_the_backbone_at_its_share_of_the_rate(tmp_path):
    first = _trainer(tmp_path, steps=8, name="peak", net=BackboneStandIn())
    first.fit(until=2)
    resumed = _trainer(tmp_path, steps=8, name="lower", net=BackboneStandIn())
    resumed.config.lr = 1e-3
    resumed.load(tmp_path / "peak" / "last.pt")
    resumed.restart_schedule(20)
    assert resumed.scheduler.base_lrs == [pytest.approx(1e-3), pytest.approx(1e-4)]


def test_learning_rate_schedule_warms_up_and_decays():
    config = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [learning_rate_factor(s, config) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[50] < factors[20] and factors[99] >= 0.1


def test_validation_runs_the_engine_and_the_evaluation_robot(tmp_path):
    """Training validation equals `evaluate` through the engine with the model's shipping settings."""
    from napari_fcfi.evaluation.runner import evaluate

    torch.manual_seed(0)
    image = np.zeros((80, 90), np.float32)
    labels = np.zeros((80, 90), np.int32)
    labels[20:40, 30:60] = 1
    labels[50:70, 10:25] = 2
    image[labels > 0] = 1.0
    samples = pick_validation_samples([make_labeled_image(image, labels, name="toy")], count=2, source="toy:")
    assert [s.sample_id for s in samples] == ["toy:toy#1", "toy:toy#2"] or len(samples) == 2
    net = ContractStandIn().train()
    metrics = engine_validate(net, samples, {"input_size": 64}, max_clicks=4)
    assert net.training  # restored
    assert set(metrics) == {"noc85", "noc90", "nof90", "iou1", "iou3"}
    assert 1 <= metrics["noc85"] <= metrics["noc90"] <= 4 and 0 <= metrics["iou1"] <= 1
    reference = evaluate(net.eval(), samples, 4, stop_iou=0.9, engine_settings={"input_size": 64})
    assert metrics["noc85"] == reference.noc(0.85) and metrics["noc90"] == reference.noc(0.90)


@pytest.mark.parametrize("use_ffcm,use_cffm", [(False, False), (True, False), (False, True)])
def test_ablation_variants_keep_the_contract_and_round_trip_through_export(tmp_path, use_ffcm, use_cffm):
    from napari_fcfi.model import load_model
    from napari_fcfi.model.architectures import build_network
    from napari_fcfi.training.ablation import ablation_config, feedback_modules_in
    from napari_fcfi.training.cli import export_checkpoint

    torch.manual_seed(0)
    config = ablation_config(
        {"arch": "hrnet", "width": 4, "ocr_width": 4, "mid_ch": 4, "small": True}, use_ffcm, use_cffm
    )
    net = build_network(config)
    assert feedback_modules_in(net) == {"ffcm": use_ffcm, "cffm": use_cffm}
    keys = list(net.state_dict())
    assert any("correction_module" in k for k in keys) == use_ffcm
    assert any("fusion_module" in k for k in keys) == use_cffm

    sets = [[(10, 12, True)], [(20, 3, True)]]
    image = torch.rand(2, 4, 64, 64)
    out = net(image, points_tensor(sets), newest_click_tensor(sets), 1.0, is_training=True)
    assert out["instances"].shape == (2, 1, 64, 64)
    expected = F.interpolate(
        image[:, 3:], size=out["updated_feedback2"].shape[-2:], mode="bilinear", align_corners=True
    )
    if not use_cffm and not use_ffcm:
        assert torch.allclose(out["updated_feedback2"], expected)  # both off: feedback passes through
    if not use_ffcm:
        assert torch.allclose(out["updated_feedback1"], expected) and out["valid_masks"] is None

    # One real training step with the switched-off losses dropped, then export and reload.
    sampler = TrainingSampler(toy_training_items(2), crop_size=48, seed=0)
    weights = LossWeights(
        feedback1=LossWeights.feedback1 if use_ffcm else 0.0,
        feedback2=LossWeights.feedback2 if use_cffm else 0.0,
    )
    train_config = TrainConfig(
        steps=1,
        batch_size=2,
        warmup_steps=1,
        val_every=0,
        prefetch=False,
        checkpoint_minutes=1e9,
        loss_weights=asdict(weights),
    )
    trainer = Trainer(
        net, sampler, tmp_path / "run", train_config, progress=False, run_info={"input_size": 64}
    )
    assert trainer.fit()["step"] == 1
    path = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "ablation.safetensors", name="ablation")
    loaded = load_model(path, device="cpu")
    assert feedback_modules_in(loaded) == {"ffcm": use_ffcm, "cffm": use_cffm}
    net.eval()
    with torch.no_grad():
        single = [sets[0]]
        want = net(image[:1], points_tensor(single), newest_click_tensor(single), 1.0)["instances"]
        got = loaded(image[:1], points_tensor(single), newest_click_tensor(single), 1.0)["instances"]
    assert torch.allclose(want, got, atol=1e-5)


def test_bf16_autocast_step_is_finite(tmp_path):
    trainer = _trainer(tmp_path, steps=2)
    trainer.config.cpu_bf16 = True
    trainer.use_bf16 = True
    parts = trainer.train_step(0)
    assert np.isfinite(parts["loss"])


@pytest.mark.parametrize("native", [True, False, None])
def test_bf16_is_used_only_where_the_cpu_computes_it_natively(tmp_path, monkeypatch, native):
    from napari_fcfi.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    sampler = TrainingSampler(toy_training_items(), crop_size=48, seed=0, input_size=64)
    config = TrainConfig(steps=1, batch_size=2, cpu_bf16=True, val_every=0, checkpoint_minutes=1e9)
    if native is False:
        with pytest.warns(RuntimeWarning, match="no native bfloat16"):
            trainer = Trainer(ContractStandIn(), sampler, tmp_path / "run", config, progress=False)
        assert not trainer.use_bf16  # emulated bf16 was 12x slower than float32 on an AVX2 CPU
    else:
        trainer = Trainer(ContractStandIn(), sampler, tmp_path / "run", config, progress=False)
        assert trainer.use_bf16  # native, or not known (not Linux): as asked


def test_export_writes_a_loadable_safetensors_model(tmp_path):
    from napari_fcfi.model import load_model
    from napari_fcfi.model.networks import FCFIHRNet
    from napari_fcfi.training.cli import export_checkpoint

    torch.manual_seed(0)
    sampler = TrainingSampler(toy_training_items(2), crop_size=48, seed=0)
    config = TrainConfig(
        steps=1, batch_size=2, warmup_steps=1, val_every=0, prefetch=False, checkpoint_minutes=1e9
    )
    net = FCFIHRNet(width=4, ocr_width=4, mid_ch=4, small=True)
    trainer = Trainer(net, sampler, tmp_path / "run", config, progress=False, run_info={"input_size": 64})
    trainer.fit()
    path = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "model.safetensors", name="toy")
    loaded = load_model(path, device="cpu")
    net.eval()
    sets = [[(10, 12, True)]]
    image = torch.rand(1, 4, 48, 48)
    with torch.no_grad():
        expected = net(image, points_tensor(sets), newest_click_tensor(sets), 0.0)["instances"]
        got = loaded(image, points_tensor(sets), newest_click_tensor(sets), 0.0)["instances"]
    assert torch.allclose(expected, got, atol=1e-5)


def test_modalities_are_recognised_and_balanced_sampling_favours_rare_ones():
    from collections import Counter

    from napari_fcfi.training.data import image_modality, make_labeled_image

    labels = np.zeros((40, 40), np.int32)
    labels[10:20, 10:20] = 1
    fluorescence = np.where(labels > 0, 200, 20).astype(np.uint8)
    brightfield = 255 - fluorescence
    stained = np.stack([brightfield, brightfield // 2, np.full_like(brightfield, 220)], -1)
    gray_rgb = np.repeat(fluorescence[..., None], 3, -1)
    kinds = {"f": fluorescence, "b": brightfield, "s": stained, "g": gray_rgb}
    items = {k: make_labeled_image(v, labels, name=k) for k, v in kinds.items()}
    assert [image_modality(items[k]) for k in "fbsg"] == [
        "dark background",
        "light background",
        "colour",
        "dark background",
    ]

    real = [items["f"]] * 16 + [items["s"]] * 4  # 80 % / 20 % of the images
    counts = {}
    for balance in (False, True):
        sampler = TrainingSampler(
            real, synthetic_fraction=0.0, crop_size=32, seed=0, balance_modalities=balance
        )
        drawn = Counter(sampler.sample(step, 0).source for step in range(300))
        assert set(drawn) == {"real:f", "real:s"}
        counts[balance] = drawn["real:s"] / 300
    assert 0.12 < counts[False] < 0.28
    assert 0.26 < counts[True] < 0.42  # sqrt weights: 2 / (4 + 2) = 1/3

    # A source weight multiplies its groups' weights (both sources hold one group of 16 images).
    other = make_labeled_image(fluorescence, labels, name="o")
    other.group = "second"
    sampler = TrainingSampler(
        [items["f"]] * 16 + [other] * 16,
        synthetic_fraction=0.0,
        crop_size=32,
        seed=0,
        balance_modalities=True,
        source_weights={"second": 3.0},
    )
    drawn = Counter(sampler.sample(step, 0).source for step in range(300))
    assert 0.66 < drawn["real:o"] / 300 < 0.84  # 3 / (1 + 3) = 3/4
    with pytest.raises(ValueError, match="source weights"):
        TrainingSampler([other], balance_modalities=True, source_weights={"second": 0.0})


def test_resuming_with_a_larger_time_budget_continues_training(tmp_path):
    """A run resumed with a larger budget fits a new horizon at once (it used to stop at the old one)."""
    first = _trainer(tmp_path, steps=4, name="a")
    first.config.time_budget_minutes = 0.001
    first.fit()
    state_step = first.step
    resumed = _trainer(tmp_path, steps=4, name="b")
    resumed.config.time_budget_minutes = 10.0
    resumed.load(tmp_path / "a" / "last.pt")
    assert resumed.step == state_step and resumed.train_seconds > 0
    assert resumed.config.steps > state_step + 10
    assert resumed.fit(until=state_step + 2)["step"] == state_step + 2


def test_neighbour_feedback_displaces_the_mask_and_clicks_inside_the_object(tmp_path):
    from napari_fcfi.training.feedback import neighbour_feedback_batch, neighbour_mask, propagation_click

    rng = np.random.default_rng(0)
    target = np.zeros((64, 64), bool)
    target[20:44, 16:40] = True
    moved = [neighbour_mask(target, np.random.default_rng(seed)) for seed in range(20)]
    assert any((m != target).any() for m in moved) and all(m.any() for m in moved)
    ious = [(m & target).sum() / (m | target).sum() for m in moved]
    assert 0.3 < np.mean(ious) < 0.95  # nearby, not identical
    for m in moved:
        click = propagation_click(m, target)
        assert click is None or (click.positive and target[click.row, click.col] and m[click.row, click.col])
    feedback, clicks = neighbour_feedback_batch(target[None, None].repeat(3, 0).astype(np.float32), rng)
    assert feedback.shape == (3, 1, 64, 64) and [len(c) for c in clicks] == [1, 1, 1]
    # a training step that uses it
    trainer = _trainer(tmp_path, steps=2)
    trainer.config.neighbour_feedback = 1.0
    parts = trainer.train_step(0)
    assert parts["neighbour_feedback"] == 1.0 and np.isfinite(parts["loss"])


def test_train_continues_from_a_shipped_model_and_carries_its_training_time(tmp_path, capsys):
    """``fcfi train --init-from MODEL``: the model's architecture and weights, a new schedule, and the
    exported metadata adds this run's training time to the model's earlier time."""
    import tifffile
    from skimage.io import imsave

    from napari_fcfi.cli import main
    from napari_fcfi.model import load_model, save_model
    from napari_fcfi.model.networks import FCFIHRNet

    torch.manual_seed(0)
    start = FCFIHRNet(width=4, ocr_width=4, mid_ch=4, small=True).eval()
    shipped = save_model(
        start,
        tmp_path / "shipped.safetensors",
        metadata={
            "name": "shipped",
            "input_size": 64,
            "training": {
                "step": 10,
                "train_seconds": 600.0,
                "initial_weights": {"kind": "ImageNet backbone"},
            },
        },
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    for index, item in enumerate(toy_training_items(2)):
        imsave(
            folder / f"im{index}_image.png",
            np.clip(item.image * 255, 0, 255).astype(np.uint8),
            check_contrast=False,
        )
        tifffile.imwrite(folder / f"im{index}_labels.tif", item.labels.astype(np.int32))
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--train-data",
            str(folder),
            "--out",
            str(run),
            "--init-from",
            str(shipped),
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--crop-size",
            "48",
            "--input-size",
            "64",
            "--warmup-steps",
            "1",
            "--val-every",
            "0",
            "--synthetic-fraction",
            "0",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--no-prefetch",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((run / "run_info.json").read_text())
    assert info["network"] == start.config and info["initial_weights"]["train_seconds_before"] == 600.0
    assert info["initial_weights"]["earlier_initial_weights"] == {"kind": "ImageNet backbone"}
    exported = tmp_path / "next.safetensors"
    assert main(["train", "--export", str(run / "last.pt"), str(exported)]) == 0
    model = load_model(exported, device="cpu")
    training = model.fcfi_metadata["training"]
    assert training["train_seconds_total"] == pytest.approx(600.0 + training["train_seconds"])
    # one step moved the weights away from the shipped ones, and the shipped file is unchanged
    assert any(
        not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values())
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(load_model(shipped, device="cpu").state_dict().values(), start.state_dict().values())
    )
    assert (
        main(
            [
                "train",
                "--train-data",
                str(folder),
                "--out",
                str(tmp_path / "bad"),
                "--init-from",
                str(tmp_path / "missing.safetensors"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--init-from" in capsys.readouterr().err


def test_simulated_clicks_come_from_the_evaluation_robot(tmp_path):
    """Training's robot clicks are the evaluation robot's (same ties, never the same pixel twice)."""
    from napari_fcfi.evaluation.robot import RobotUser

    trainer = _trainer(tmp_path, steps=1)
    images, masks, click_sets = trainer.sampler.batch(0, 4)
    before = [list(c) for c in click_sets]
    prev = trainer.simulate_clicks(images, masks, click_sets, extra_clicks=2)
    for sample, (start, clicks) in enumerate(zip(before, click_sets)):
        assert clicks[: len(start)] == start and len(clicks) <= len(start) + 2
        assert len({(c.row, c.col) for c in clicks}) == len(clicks)
        if len(clicks) == len(start) + 2:  # the last click answers the final prediction like RobotUser
            robot = RobotUser(masks[sample, 0].numpy() > 0.5)
            for done in clicks[:-1]:
                robot._not_clicked[done.row, done.col] = False
            assert robot.next_click(prev[sample, 0].numpy() > 0.49) is not None
