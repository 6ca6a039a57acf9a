"""Running the network on one window of the image: input building, flip averaging, device, timing.

:class:`NetworkRunner` knows the model and the image source, not the session's history or protocol.
The protocols (:mod:`.protocols`) ask it for

* :meth:`NetworkRunner.predict_window`: the probability of a window of the image (microscopy
  protocol), read with a stride when the window is much larger than the network, resized to
  ``input_size``, with clicks mapped align-corners-consistently and the structural-integrity cleanup;
* :meth:`NetworkRunner.infer`: one raw network run (logits and CFFM feedback at input size) on a
  prepared ``(1, 4, h, w)`` input (paper protocol).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_fcfi.model.click_encoding import newest_click_tensor, points_tensor
from napari_fcfi.model.fusion import inference_network

from .clicks import Click
from .intensity import ImageSource
from .postprocess import connected_to_points
from .settings import SegmenterSettings
from .windows import Box, Patch, aligned_click_to_crop, ceil_div, resized_shape

#: Clicks closer than this to an image side get context mirrored beyond it (see ``predict_window``).
BORDER_MARGIN = 8


class NetworkRunner:
    """Runs ``model`` on windows of one image; counts network time for :attr:`InteractiveSegmenter.last_timing`."""

    def __init__(self, model: torch.nn.Module, settings: SegmenterSettings) -> None:
        self.model = model
        self.settings = settings
        # The network the session runs: built at the first run from the weights the model has then
        # (BatchNorm folded, model/fusion.py); a session never sees later changes to ``model``.
        self._network: torch.nn.Module | None = None
        self.source: ImageSource | None = None
        self.network_seconds = 0.0
        self.network_runs = 0

    def start_timing(self) -> None:
        self.network_seconds = 0.0
        self.network_runs = 0

    # ------------------------------------------------------------------ microscopy windows
    def predict_window(
        self, window: Box, clicks: Sequence[Click], feedback: Patch | None, gate: float, threshold: float
    ) -> np.ndarray:
        """Probability (window-sized float32, writable) from one network run on ``window``.

        Windows much larger than ``input_size`` are read with a stride (every ``step``-th pixel, still at
        least twice the network size, then antialiased down), so a 4096-pixel window never becomes a
        full-resolution float tensor. Geometry stays exact: the sampled grid spans native rows
        ``r0 .. r0 + (n - 1) * step``; the prediction is resized back onto that span and the few
        rows/columns beyond it (fewer than ``step``) repeat the edge.

        A click within :data:`BORDER_MARGIN` pixels of an image side that the window touches would sit on
        the network input's edge, where FCFI networks were never shown clicks (and zero padding hides
        the object): the window then reaches past that image side, mirrored, and only the window's part
        of the prediction is kept.
        """
        return self.predict_windows([window], [clicks], [feedback], gate, threshold)[0]

    def predict_windows(
        self,
        windows: Sequence[Box],
        clicks: Sequence[Sequence[Click]],
        feedbacks: Sequence[Patch | None],
        gate: float,
        threshold: float,
        batch_size: int = 16,
        input_size: int | None = None,
    ) -> list[np.ndarray]:
        """:meth:`predict_window` for many windows, batched through the network.

        Windows whose network inputs have the same shape run together, ``batch_size`` at a time; each
        result is the one :meth:`predict_window` gives for that window alone (same code path).
        ``input_size`` (None: the setting) is the network working size of these runs.
        """
        prepared = []
        groups: dict[tuple[int, int], list[int]] = {}
        for index, (window, window_clicks, feedback) in enumerate(
            zip(windows, clicks, feedbacks, strict=True)
        ):
            extended = self._past_the_border(window, window_clicks, input_size)
            network_input, mapped, step = self._prepare(extended, window_clicks, feedback, input_size)
            prepared.append((window, extended, network_input, mapped, step))
            height, width = network_input.shape[-2:]
            groups.setdefault((int(height), int(width)), []).append(index)
        results: list[np.ndarray] = [np.empty(0, np.float32)] * len(prepared)
        for indices in groups.values():
            for start in range(0, len(indices), max(1, batch_size)):
                chunk = indices[start : start + max(1, batch_size)]
                logits, _ = self.infer_batch(
                    torch.cat([prepared[i][2] for i in chunk]),
                    [prepared[i][3] for i in chunk],
                    gate,
                    truncate_new_click=False,
                )
                for k, i in enumerate(chunk):
                    window, extended, _, mapped, step = prepared[i]
                    values = self._finish(logits[k : k + 1].clone(), mapped, extended, step, threshold)
                    if extended != window:
                        values = np.ascontiguousarray(
                            values[
                                window.r0 - extended.r0 : window.r1 - extended.r0 + 1,
                                window.c0 - extended.c0 : window.c1 - extended.c0 + 1,
                            ]
                        )
                    results[i] = values
        return results

    def _past_the_border(self, window: Box, clicks: Sequence[Click], input_size: int | None = None) -> Box:
        """``window`` extended beyond the image sides that clicks lie close to (see :meth:`predict_window`)."""
        assert self.source is not None
        height, width = self.source.height, self.source.width
        side = max(window.height, window.width)
        if side > 2 * (input_size or self.settings.input_size):
            return window  # large windows are read strided; their clicks are far from the edge anyway
        pad = max(BORDER_MARGIN, side // 8)
        r0, r1, c0, c1 = window
        near = [c for c in clicks if window.contains(c.row, c.col)]
        if window.r0 == 0 and any(c.row < BORDER_MARGIN for c in near):
            r0 = -pad
        if window.r1 == height - 1 and any(c.row >= height - BORDER_MARGIN for c in near):
            r1 = height - 1 + pad
        if window.c0 == 0 and any(c.col < BORDER_MARGIN for c in near):
            c0 = -pad
        if window.c1 == width - 1 and any(c.col >= width - BORDER_MARGIN for c in near):
            c1 = width - 1 + pad
        return Box(r0, r1, c0, c1)

    def _prepare(
        self, window: Box, clicks: Sequence[Click], feedback: Patch | None, input_size: int | None = None
    ) -> tuple[torch.Tensor, list[tuple[float, float, bool]], int]:
        """The (1, 4, h, w) network input of ``window``, the clicks mapped into it and the read stride."""
        target = resized_shape(window.height, window.width, input_size or self.settings.input_size)
        step = max(1, min(window.height // target[0], window.width // target[1]) // 2)
        network_input = self.network_input(window, feedback, step)
        n_rows, n_cols = network_input.shape[-2:]
        if target != (n_rows, n_cols):
            network_input = F.interpolate(
                network_input, size=target, mode="bilinear", align_corners=True, antialias=target[0] < n_rows
            )
        mapped = [
            (
                aligned_click_to_crop((c.row - window.r0) / step, 0, n_rows, target[0]),
                aligned_click_to_crop((c.col - window.c0) / step, 0, n_cols, target[1]),
                c.positive,
            )
            for c in clicks
        ]
        return network_input, mapped, step

    def _finish(
        self,
        logits: torch.Tensor,
        mapped: Sequence[tuple[float, float, bool]],
        window: Box,
        step: int,
        threshold: float,
    ) -> np.ndarray:
        """Window-sized probability from the (1, 1, h, w) logits of :meth:`_prepare`'s input."""
        target = tuple(logits.shape[-2:])
        n_rows, n_cols = ceil_div(window.height, step), ceil_div(window.width, step)
        if self.settings.keep_connected:
            # Structural integrity at network resolution: cheap (input_size^2) whatever the window size.
            # Removed parts get a very negative logit so they vanish after the resize back.
            positives = [
                (min(max(round(r), 0), target[0] - 1), min(max(round(c), 0), target[1] - 1))
                for r, c, positive in mapped
                if positive
            ]
            mask = (torch.sigmoid(logits[0, 0]) > threshold).numpy()
            kept = connected_to_points(mask, positives)
            if kept is not mask:
                logits[0, 0][torch.from_numpy(mask & ~kept)] = -30.0
        span = ((n_rows - 1) * step + 1, (n_cols - 1) * step + 1)
        if tuple(logits.shape[-2:]) != span:
            logits = F.interpolate(logits, size=span, mode="bilinear", align_corners=True)
        probability = torch.sigmoid_(logits)[0, 0].float().numpy()
        if span != (window.height, window.width):
            probability = np.pad(
                probability, ((0, window.height - span[0]), (0, window.width - span[1])), mode="edge"
            )
        return probability

    def network_input(self, region: Box, feedback: Patch | None, step: int = 1) -> torch.Tensor:
        """(1, 4, h, w) float32 tensor: normalised RGB of ``region`` plus its feedback map.

        ``step > 1`` samples every ``step``-th pixel (see :meth:`predict_window`). Parts of ``region``
        outside the image (step 1 only) mirror the image and the feedback at the image sides.
        """
        assert self.source is not None
        height, width = self.source.height, self.source.width
        inner = Box(
            max(region.r0, 0), min(region.r1, height - 1), max(region.c0, 0), min(region.c1, width - 1)
        )
        rgb = self.source.read(inner, step)
        if feedback is None:
            prev = np.zeros((1, *rgb.shape[1:]), np.float32)
        else:
            prev = feedback.read(inner, step)[None]
        stacked = np.concatenate([rgb, prev], axis=0)
        if inner != region:
            pads = (
                (0, 0),
                (inner.r0 - region.r0, region.r1 - inner.r1),
                (inner.c0 - region.c0, region.c1 - inner.c1),
            )
            stacked = np.pad(stacked, pads, mode="symmetric")
        return torch.from_numpy(np.ascontiguousarray(stacked)[None])

    # ------------------------------------------------------------------ the network
    def device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where the model lives and the floating dtype of its weights (inputs are sent there)."""
        # Looked up per run, lazily: unpacking every parameter cost 1.7-4.3 ms (docs/reports/2026-11-benchmarks.md).
        for tensor in itertools.chain(self.model.parameters(), self.model.buffers()):
            if tensor.is_floating_point():
                return tensor.device, tensor.dtype
        return torch.device("cpu"), torch.float32

    def infer(
        self,
        network_input: torch.Tensor,
        clicks: Sequence[tuple[float, float, bool]],
        gate: float,
        truncate_new_click: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the network (with flip averaging when enabled) on a (1, 4, h, w) input.

        Returns flip-averaged logits and ``updated_feedback2`` at the input size (1, 1, h, w), on CPU.
        """
        return self.infer_batch(network_input, [clicks], gate, truncate_new_click)

    def infer_batch(
        self,
        network_input: torch.Tensor,
        clicks: Sequence[Sequence[tuple[float, float, bool]]],
        gate: float,
        truncate_new_click: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`infer` on a (B, 4, h, w) input with one click list per sample; outputs are (B, 1, h, w)."""
        height, width = network_input.shape[-2:]
        n = network_input.shape[0]
        batches = [list(c) for c in clicks]
        if self.settings.flip:
            network_input = torch.cat([network_input, torch.flip(network_input, dims=[3])], dim=0)
            batches += [[(r, width - c - 1, p) for r, c, p in sample] for sample in clicks]
        points = points_tensor(batches)
        new_clicks = newest_click_tensor(batches, truncate=truncate_new_click, size=(height, width))

        device, dtype = self.device_and_dtype()
        # A half-precision model (load_model(dtype="float16")) gets its image in that dtype; with
        # autocast the float32 input is cast per operation instead.
        autocast = self.settings.autocast_dtype if device.type in ("cuda", "cpu") else None
        network_input = network_input.to(device=device, dtype=dtype if autocast is None else torch.float32)
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            start = time.perf_counter()
            with torch.inference_mode():
                outputs = self._forward(
                    network_input, points.to(device), new_clicks.to(device), gate, device, autocast
                )
                logits = _last(outputs["instances"]).float()
                feedback = outputs.get("updated_feedback2")
                feedback = None if feedback is None else _last(feedback).float()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            self.network_seconds += time.perf_counter() - start
            self.network_runs += 1
        finally:
            if was_training:
                self.model.train()

        logits = F.interpolate(logits.cpu(), size=(height, width), mode="bilinear", align_corners=True)
        if feedback is not None:
            feedback = F.interpolate(
                feedback.cpu(), size=(height, width), mode="bilinear", align_corners=True
            )
        if self.settings.flip:
            logits = 0.5 * (logits[:n] + torch.flip(logits[n:], dims=[3]))
            if feedback is not None:
                feedback = 0.5 * (feedback[:n] + torch.flip(feedback[n:], dims=[3]))
        return logits, feedback

    def network(self) -> torch.nn.Module:
        """The network runs use: ``model`` with BatchNorm folded (``fuse_batchnorm`` setting), or ``model``."""
        if self._network is None:
            self._network = inference_network(self.model) if self.settings.fuse_batchnorm else self.model
        return self._network

    def _forward(
        self,
        image: torch.Tensor,
        points: torch.Tensor,
        new_clicks: torch.Tensor,
        gate: float,
        device: torch.device,
        autocast: str | None,
    ) -> dict[str, Any]:
        network = self.network()
        if autocast is None:
            return network(image, points, new_clicks, gate, is_training=False)
        with torch.autocast(device_type=device.type, dtype=getattr(torch, autocast)):
            return network(image, points, new_clicks, gate, is_training=False)


def _last(value: Any) -> torch.Tensor:
    return value[-1] if isinstance(value, (list, tuple)) else value
