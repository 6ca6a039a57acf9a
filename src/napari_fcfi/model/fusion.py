"""Inference copies of a network with BatchNorm folded into the convolution before it.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it can be folded into
the convolution's weights and bias: same outputs (to float rounding), one memory pass less per layer.
On the bundled HRNet-W8 BatchNorm was 17 % of a CPU forward pass (docs/benchmarks.md).

Only pairs known to be ``bn(conv(x))`` with nothing else reading the convolution's output are folded:
consecutive ``Conv2d`` -> ``BatchNorm2d`` children of a plain ``nn.Sequential``, and the attribute pairs
a module lists in its ``fusable_pairs`` class attribute (e.g. ``(("conv1", "bn1"), ...)`` in HRNet's
residual blocks). Everything else runs as it is.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["FUSION_MAX_PARAMETERS", "fuse_batchnorm", "inference_network", "unfolded_batchnorms"]


def _foldable(conv: object, norm: object) -> bool:
    return isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and norm.track_running_stats


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with the foldable BatchNorms folded (``net`` is left as it is).

    The copy has no gradients; train the original, not the copy (a folded network has no BatchNorm
    left to train).
    """
    fused = copy.deepcopy(net).eval()
    for module in list(fused.modules()):
        if type(module) is nn.Sequential:
            children = list(module.named_children())
            for (conv_name, conv), (norm_name, norm) in zip(children, children[1:], strict=False):
                if _foldable(conv, norm):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                    setattr(module, norm_name, nn.Identity())
        for conv_name, norm_name in getattr(module, "fusable_pairs", ()):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def unfolded_batchnorms(net: nn.Module) -> int:
    """How many BatchNorms ``net`` still has (those :func:`fuse_batchnorm` could not fold)."""
    return sum(type(m) is nn.BatchNorm2d for m in net.modules())


#: Larger networks run as they are: a per-session copy of, e.g., the 59 M-parameter ResNet-101 would cost
#: more memory than folding saves time.
FUSION_MAX_PARAMETERS = 20_000_000


# Folded copies by network, with the fingerprint of the weights they were folded from: copying and
# folding costs ~100 ms, a fingerprint ~10 ms, and sessions come and go (one per image, object, stack).
_FOLDED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[float, ...], nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def weights_fingerprint(net: nn.Module) -> tuple[float, ...]:
    """Sum and absolute sum of every tensor of ``net``'s state: changes whenever training changes it."""
    with torch.no_grad():
        values = [v.detach().double() for v in net.state_dict().values() if v.is_floating_point()]
        return tuple(float(x) for v in values for x in (v.sum(), v.abs().sum()))


def inference_network(net: nn.Module) -> nn.Module:
    """What a session runs: a folded copy of a float32 ``net`` up to :data:`FUSION_MAX_PARAMETERS`
    parameters, ``net`` itself otherwise (half precision, large, or no BatchNorm to fold).

    The copy is shared by the sessions of the same network while its weights stay the same (a
    network trained further, e.g. during training validation, gets a new copy)."""
    parameters = list(net.parameters())
    if (
        not parameters
        or sum(int(p.numel()) for p in parameters) > FUSION_MAX_PARAMETERS
        or any(p.dtype != torch.float32 for p in parameters)
        or unfolded_batchnorms(net) == 0
    ):
        return net
    fingerprint = weights_fingerprint(net)
    cached = _FOLDED.get(net)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    folded = fuse_batchnorm(net)
    _FOLDED[net] = (fingerprint, folded)
    return folded
