"""Widen a trained FCFI HRNet without changing what it computes, so its training can go on wider.

A training line that has stopped improving may lack capacity; starting a wider network from
scratch would throw its hours away. :func:`widen_hrnet` builds the same network with more channels
in its HRNet branches and copies every trained weight into it: the old channels keep their weights
and indices, the new channels get fresh random incoming weights, and every weight *from* a new
channel into an old one is zero. The old channels therefore never see the new ones and the wider
network's outputs equal the old network's (train and eval mode, up to float rounding), while the new
channels are not symmetric copies (as Net2WiderNet's duplicated units would be) and start to
contribute as soon as training moves their zero outgoing weights.

Only the HRNet trunk widens; FFCM's and CFFM's encoders and the OCR head keep their widths (their
cosine and attention products would change with extra channels). Their first convolutions read the
concatenated branch features, whose per-branch blocks move when the branches widen: those inputs
are re-indexed block by block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_fcfi.model.architectures import build_network
from napari_fcfi.model.hrnet import default_branch_channels

#: State-dict prefixes of what widens with the branches (the HRNet trunk, and the heads whose hidden
#: layer is as wide as the features): every channel space there keeps its old channels first.
WIDENED_PREFIXES = tuple(
    f"feature_extractor.{name}"
    for name in (
        "conv1.",
        "bn1.",
        "conv2.",
        "bn2.",
        "layer1.",
        "transition",
        "stage",
        "aux_head.",
        "cls_head.",
    )
)


def branch_channels_of(config: dict) -> list[int]:
    """The four branch widths of an HRNet FCFI ``config``."""
    if config.get("arch") != "hrnet":
        raise ValueError(f"widening needs an HRNet FCFI network, got arch {config.get('arch')!r}")
    return list(config.get("branch_channels") or default_branch_channels(int(config["width"])))


def _concat_readers(net: nn.Module, feature_ch: int) -> dict[str, tuple[int, int]]:
    """Weights whose input channels are the concatenated branch features: name -> (channels before
    the features, channels after them) in that input."""
    extractor = net.feature_extractor
    readers: dict[str, nn.Module] = {}
    if getattr(extractor, "ocr_width", 0) > 0:
        readers["feature_extractor.aux_head.0"] = extractor.aux_head[0]
        readers["feature_extractor.conv3x3_ocr.0"] = extractor.conv3x3_ocr[0]
    else:
        readers["feature_extractor.cls_head.0"] = extractor.cls_head[0]
    correction, fusion = extractor.correction_module, extractor.fusion_module
    if hasattr(correction, "info_encoder"):
        readers["feature_extractor.correction_module.info_encoder.0.conv"] = correction.info_encoder[0].conv
    if hasattr(fusion, "feature_conv"):
        readers["feature_extractor.fusion_module.feature_conv.conv"] = fusion.feature_conv.conv
        readers["feature_extractor.fusion_module.residual_predictor.conv"] = fusion.residual_predictor.conv
    layout = {}
    for name, module in readers.items():
        if not isinstance(module, nn.Conv2d):
            raise ValueError(f"widening: {name} is not a convolution ({type(module).__name__})")
        before = module.in_channels - feature_ch if name.endswith("info_encoder.0.conv") else 0
        after = module.in_channels - feature_ch - before
        layout[name + ".weight"] = (before, after)
    return layout


def _feature_index(
    old_branches: Sequence[int], new_branches: Sequence[int], before: int, after: int
) -> torch.Tensor:
    """For each old input channel of a concat reader, its index in the widened input."""
    index = list(range(before))
    start = before
    for old, new in zip(old_branches, new_branches):
        index += range(start, start + old)
        start += new
    index += range(start, start + after)
    return torch.tensor(index, dtype=torch.long)


def widen_hrnet(net: nn.Module, branch_channels: Sequence[int], seed: int = 0) -> nn.Module:
    """A copy of ``net`` (an HRNet FCFI network) with ``branch_channels`` channels in its four
    branches (each at least the old width), computing the same outputs; see the module docstring.

    ``seed`` fixes the new channels' random weights. The copy is in train mode iff ``net`` is.
    """
    config = dict(net.config)
    old_branches = branch_channels_of(config)
    new_branches = [int(c) for c in branch_channels]
    if len(new_branches) != 4 or any(n < o for n, o in zip(new_branches, old_branches)):
        raise ValueError(
            f"widen_hrnet: branch_channels must be 4 widths no smaller than the network's "
            f"{old_branches}, got {list(branch_channels)}"
        )
    new_config = {**config, "branch_channels": new_branches}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = build_network(new_config)
    old_state = net.state_dict()
    new_state = wide.state_dict()
    readers = _concat_readers(wide, sum(new_branches))
    out_state = {}
    for name, new in new_state.items():
        old = old_state[name]
        if old.shape == new.shape and name not in readers:
            out_state[name] = old.clone()
            continue
        if old.ndim != new.ndim or not (name.startswith(WIDENED_PREFIXES) or name in readers):
            raise ValueError(
                f"widen_hrnet: cannot widen {name} from {tuple(old.shape)} to {tuple(new.shape)}"
            )
        value = new.clone()
        rows = torch.arange(old.shape[0])
        if old.ndim == 1:
            value[rows] = old
        else:
            if name in readers:
                columns = _feature_index(old_branches, new_branches, *readers[name])
            else:
                columns = torch.arange(old.shape[1])
            # Old outputs read nothing from new channels; new outputs keep their random weights.
            value[: old.shape[0]] = 0
            value[rows[:, None], columns[None, :]] = old
        out_state[name] = value
    wide.load_state_dict(out_state)
    wide.train(net.training)
    return wide
