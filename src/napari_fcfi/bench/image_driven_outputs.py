"""Stand-in predictions for random-weight networks, so the engine works on nucleus-sized windows."""

from __future__ import annotations

import torch
from torch import nn


class ImageDrivenOutputs(nn.Module):
    """Runs the wrapped network (its full cost), then replaces its prediction by a plausible one.

    A network with random weights predicts noise, which makes the engine's zoom-in windows grow to
    the whole image; that is not what a click on a nucleus costs. This stand-in keeps every
    millisecond of the network but predicts "bright pixels" (normalised intensity > 0.6) as the
    object, like a trained model on :func:`napari_fcfi.bench.synthetic.synthetic_nuclei_image`; the
    engine then works on nucleus-sized windows. Used by the engine and napari benchmarks for
    random-weight models.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.config = dict(getattr(net, "config", {}) or {})
        metadata = getattr(net, "fcfi_metadata", None)
        if isinstance(metadata, dict):
            self.fcfi_metadata = dict(metadata)
        self.train(net.training)  # a fresh Module is in training mode; the engine would toggle it per click

    def forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        new_clicks: torch.Tensor,
        gate: float,
        is_training: bool = False,
    ) -> dict[str, torch.Tensor]:
        outputs = dict(self.net(image, points, new_clicks, gate, is_training=is_training))
        brightness = image[:, :3].float().mean(dim=1, keepdim=True)
        logits = torch.where(brightness > 0.6, 6.0, -6.0).to(outputs["instances"].dtype)
        outputs["instances"] = logits
        if "instances_aux" in outputs:
            outputs["instances_aux"] = logits
        for key in ("updated_feedback1", "updated_feedback2"):
            if key in outputs:
                size = tuple(outputs[key].shape[-2:])
                outputs[key] = torch.nn.functional.interpolate(
                    torch.sigmoid(logits), size=size, mode="bilinear"
                )
        return outputs
