"""Channels-last against contiguous memory format for CPU float32 training steps, on the line's batches.

``Trainer`` stores the network and its inputs channels-last on the CPU in float32
(``TrainConfig.cpu_channels_last``, on by default). This times whole training steps (robot clicks,
forward, loss, backward, Adam) of the training line's own model, recipe and batches both ways, in
alternating rounds from the same weights, and prints the CPU seconds per step and the first step's
loss both ways (same weights and batch: the formats differ only by float rounding)::

    OMP_NUM_THREADS=1 python benchmarks/channels_last_training.py --line training/line --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from napari_fcfi.model import load_model
from napari_fcfi.model.architectures import build_network
from napari_fcfi.training.line import LineRecipe, line_sampler, read_state
from napari_fcfi.training.sources import load_sources
from napari_fcfi.training.trainer import TrainConfig, Trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--line", default="training/line")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round and format")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = read_state(args.line)
    recipe, _ = LineRecipe.from_dict(state["recipe"]).with_overrides([])
    sources = load_sources(
        recipe.data,
        recipe.train_data,
        recipe.val_data,
        val_fraction=recipe.val_fraction,
        val_objects=recipe.val_objects,
        say=lambda _text: None,
    )
    sampler = line_sampler(recipe, sources.real, int(state["seed"]))
    batches = [sampler.batch(1000 + i, recipe.batch_size) for i in range(args.steps + 1)]
    model = load_model(f"{args.line}/model.safetensors", device="cpu")
    seconds: dict[bool, list[float]] = {True: [], False: []}
    first_loss: dict[bool, float] = {}
    for _round in range(args.rounds):
        for channels_last in (True, False):
            net = build_network(dict(model.config))
            net.load_state_dict(model.state_dict())
            config = TrainConfig(
                steps=10**6,
                batch_size=recipe.batch_size,
                lr=1e-5,
                max_extra_clicks=recipe.max_extra_clicks,
                neighbour_feedback=recipe.neighbour_feedback,
                prefetch=False,
                cpu_channels_last=channels_last,
            )
            trainer = Trainer(net, sampler, None, config, progress=False)
            torch.manual_seed(0)  # the same dropout draws both ways
            # (a step appends its robot's clicks to the batch's click lists: each run gets fresh copies)
            fresh = copy.deepcopy(batches)
            first_loss[channels_last] = trainer.train_step(0, fresh[0])["loss"]  # also the warm-up
            start = time.process_time()
            for i in range(args.steps):
                trainer.train_step(1 + i, fresh[1 + i])
            seconds[channels_last].append((time.process_time() - start) / args.steps)
            print(
                f"channels_last={channels_last}: {seconds[channels_last][-1]:.3f} CPU s per step", flush=True
            )
    fast, slow = statistics.median(seconds[True]), statistics.median(seconds[False])
    print(f"median CPU s per step: channels-last {fast:.3f}, contiguous {slow:.3f} ({slow / fast:.2f}x)")
    difference = abs(first_loss[True] - first_loss[False]) / max(abs(first_loss[False]), 1e-12)
    print(f"first step's loss: {first_loss[True]:.6f} vs {first_loss[False]:.6f} (relative {difference:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
