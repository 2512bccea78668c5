"""Inference-only rewrites of a trained model: fold every BatchNorm into the convolution before
it, and switch convolutions to channels_last. Both change results only by float rounding
(``benchmarks/inference_speed.py`` measures the speed, with ``--map-checkpoint`` the mAP change).

Shape glossary
--------------
C_out, C_in, k   convolution weight [C_out, C_in, k, k]; bias [C_out]
scale, shift     per output channel [C_out]: BN(y) = y * scale + shift with
                 scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale

Folded: conv(x) then BN  ==  conv'(x) with weight' = weight * scale[:, None, None, None] and
bias' = bias * scale + shift (bias = 0 when the conv has none). Only pairs whose order is known
are folded: consecutive (Conv2d, BN) children of an ``nn.Sequential`` that keeps Sequential's
forward (the C4 body's stem, the ``downsample`` branches) and ``convN`` / ``bnN`` of the ResNet
blocks (exact classes). A BN that normalises
with batch statistics (a BatchNorm2d in training mode) is never folded.

The rewrite is in place and replaces BN modules by ``nn.Identity``: the state dict changes, so
apply it to a model loaded for inference (``engine.checkpoint.load_model``), never to a model
that trains or is saved afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from personsearch.models.backbones import BasicBlock, Bottleneck, FrozenBatchNorm2d, ResNet

__all__ = ["fold_batchnorms", "prepare_for_inference", "set_test_proposals", "current_test_proposals"]

_BLOCK_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _is_foldable_bn(module: nn.Module) -> bool:
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return isinstance(module, nn.BatchNorm2d) and not module.training and module.track_running_stats


def _bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = weight.detach().double() * (bn.running_var.detach().double() + bn.eps).rsqrt()
    shift = bias.detach().double() - bn.running_mean.detach().double() * scale
    return scale, shift


def _folded_conv(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A new Conv2d (with bias) computing bn(conv(x)); arithmetic in float64, stored in the
    conv's dtype."""
    scale, shift = _bn_scale_shift(bn)
    weight = conv.weight.detach().double() * scale[:, None, None, None]
    bias = shift if conv.bias is None else conv.bias.detach().double() * scale + shift
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(weight.to(conv.weight.dtype))
        folded.bias.copy_(bias.to(conv.weight.dtype))
    folded.weight.requires_grad_(False)
    folded.bias.requires_grad_(False)
    if conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous():
        folded = folded.to(memory_format=torch.channels_last)  # keep the layout the model had
    return folded


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = parent._modules.get(conv_name), parent._modules.get(bn_name)
    if not isinstance(conv, nn.Conv2d) or not _is_foldable_bn(bn) or bn.num_features != conv.out_channels:
        return False
    parent._modules[conv_name] = _folded_conv(conv, bn)
    parent._modules[bn_name] = nn.Identity()
    return True


def fold_batchnorms(model: nn.Module) -> int:
    """Fold BN into the preceding convolution everywhere the order is known (in place).
    Returns the number of BN layers folded."""
    folded = 0
    for module in list(model.modules()):
        # exact classes / the plain Sequential forward: a subclass may apply its BN elsewhere
        if type(module) in (BasicBlock, Bottleneck, ResNet):
            folded += sum(_fold_pair(module, conv, bn) for conv, bn in _BLOCK_PAIRS)
        elif isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            names = list(module._modules.keys())
            folded += sum(_fold_pair(module, first, second) for first, second in zip(names, names[1:]))
    return folded


def set_test_proposals(model: nn.Module, count: int) -> None:
    """Keep ``count`` RPN proposals per test image (SeqNet: 300). Fewer is faster (the stage-1
    res5 head runs once per proposal) and may miss persons in crowded scenes; measured in
    ``benchmarks/inference_speed.py``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"test proposals must be a positive integer, got {count!r}")
    model.rpn.post_nms_top_n["testing"] = count


def current_test_proposals(model: nn.Module) -> int:
    """The number of RPN proposals kept per test image."""
    return int(model.rpn.post_nms_top_n["testing"])


def prepare_for_inference(model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """Eval mode, BN folded, channels_last weights; returns ``model`` (changed in place).
    Feed it channels_last images for the full gain (``evaluation.inference`` does)."""
    model.eval()
    if fold_bn:
        fold_batchnorms(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
