"""Does bfloat16 autocast change what a training step learns? A paired check on the line's batches.

For ``--steps`` batches of the training line's own sampler (its recipe and seed), the same network
weights, inputs and robot clicks go through the loss and the backward pass twice: in float32 and under
CPU bfloat16 autocast (what ``fcfi train --bf16`` does). Prints, per step and summarised, the relative
loss difference, the cosine similarity of the two gradients and the ratio of their norms, and the
time of each pass::

    OMP_NUM_THREADS=1 python benchmarks/bf16_training_check.py --line training/line --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from napari_fcfi.model import load_model
from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.click_encoding import newest_click_tensor, points_tensor
from napari_fcfi.training.line import LineRecipe, line_sampler, read_state
from napari_fcfi.training.losses import LossWeights, fcfi_loss
from napari_fcfi.training.sources import load_sources


def gradient(
    net: torch.nn.Module, inputs: tuple, masks: torch.Tensor, bf16: bool
) -> tuple[float, torch.Tensor, float]:
    net.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
        out = net(*inputs, is_training=True)
    loss, _ = fcfi_loss(out, masks, LossWeights())
    loss.backward()
    seconds = time.perf_counter() - start
    grads = torch.cat([p.grad.flatten().float() for p in net.parameters() if p.grad is not None])
    return float(loss), grads, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--line", default="training/line")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--first-step", type=int, default=100_000, help="sampler step of the first batch")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state = read_state(args.line)
    recipe = LineRecipe.from_dict(state["recipe"])
    seed = int(state["seed"])
    sources = load_sources(
        recipe.data, recipe.train_data, [], val_fraction=recipe.val_fraction, val_objects=0
    )
    sampler = line_sampler(recipe, sources.real, seed)
    loaded = load_model(f"{args.line}/model.safetensors", device="cpu")
    net = build_network(dict(loaded.config))
    net.load_state_dict(loaded.state_dict())
    net.train()
    rows = []
    for offset in range(args.steps):
        images, masks, click_sets = sampler.batch(args.first_step + offset, recipe.batch_size)
        prev = torch.zeros_like(images[:, :1])
        inputs = (
            torch.cat([images, prev], dim=1),
            points_tensor(click_sets),
            newest_click_tensor(click_sets),
            0.0,
        )
        loss32, grad32, t32 = gradient(net, inputs, masks, bf16=False)
        loss16, grad16, t16 = gradient(net, inputs, masks, bf16=True)
        cosine = float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0))
        rows.append(
            {
                "loss_rel_diff": abs(loss16 - loss32) / max(abs(loss32), 1e-8),
                "grad_cosine": cosine,
                "grad_norm_ratio": float(grad16.norm() / grad32.norm()),
                "fp32_s": t32,
                "bf16_s": t16,
            }
        )
        print(json.dumps({k: round(v, 4) for k, v in rows[-1].items()}), flush=True)
    summary = {
        key: round(statistics.median(r[key] for r in rows), 4)
        for key in ("loss_rel_diff", "grad_cosine", "grad_norm_ratio", "fp32_s", "bf16_s")
    }
    summary["grad_cosine_min"] = round(min(r["grad_cosine"] for r in rows), 4)
    summary["steps"] = len(rows)
    print("median:", json.dumps(summary))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
