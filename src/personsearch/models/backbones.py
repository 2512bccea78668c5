"""ResNet backbones split at C4 for single-map (stride 16) person search detectors.

Shape glossary
--------------
B          batch size
H, W       input image height, width (any size; stride-16 map has ceil-ish H/16 x W/16)
C4         backbone output channels: 1024 (resnet50), 256 (resnet18), 64 (small)
body(x)    x float [B, 3, H, W] -> feature map [B, C4, H/16, W/16]
head(r)    r float [K, C4, 14, 14] RoI features -> [K, C5, 7, 7]; C5 = 2048 / 512 / 128

Parameter and buffer names of ``resnet50`` / ``resnet18`` equal torchvision's ImageNet models
(``conv1``, ``bn1``, ``layer1``..``layer4`` of Bottleneck / BasicBlock with ``downsample.0/.1``,
``fc``), so a torchvision state dict file loads without renaming. The full network is built and
loaded once; ``body`` (stem + layer1..3) shares its modules, ``make_head()`` deep-copies layer4
(res5) so each RoI head (e.g. SeqNet's box head and re-id head) trains its own copy starting
from the same weights.

``resnet_style`` (bottleneck ResNets): "pytorch" puts a downsampling block's stride on its 3x3
conv (torchvision's ResNet v1.5), "caffe" on its first 1x1 conv (the original MSRA / Caffe
ResNet, mmdetection's ``style='caffe'``, which CGPS's released models use). The parameters and
their shapes are the same; the computed features are not.

``PixelRenormalization`` (first child of ``body`` when the backbone expects other input than
ours): every data pipeline gives images as RGB with ImageNet mean/std on 0..1 pixels
(``data.transforms.IMAGENET_MEAN``/``IMAGENET_STD``); a backbone whose weights were trained
on other input (caffe: BGR, mean 103.53/116.28/123.675 subtracted from 0..255 pixels, std 1)
gets it re-normalised by one per-channel affine map and channel permutation. The default
settings (ImageNet RGB) add no module at all.

``small`` is a narrow BasicBlock ResNet (widths 16/32/64/128) for CPU demos and tests, with the
same split (C4 = 64 ch at stride 16, head = a stride-2 stage to 128 ch). It has no pretrained
weights. Measured on this project's 2-core CPU (torch 2.13, fp32, one 3x544x960 image, batch 1,
``benchmarks/ops_speed.py``): 1.38 GFLOPs, 0.43 s channels_last (see ``SMALL_BACKBONE_COST``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from personsearch.errors import CheckpointError
from personsearch.models.state_dict_check import compare_state_dicts, show_keys

__all__ = [
    "BackboneParts",
    "CHANNEL_ORDERS",
    "FrozenBatchNorm2d",
    "IMAGENET_PIXEL_MEAN",
    "IMAGENET_PIXEL_STD",
    "PixelRenormalization",
    "RESNET_STYLES",
    "ResNet",
    "build_backbone",
    "resnet_state_dict_keys",
    "load_resnet_weights",
    "SMALL_BACKBONE_COST",
]

#: Measured cost of the ``small`` body (stem + 3 stages) on one 3x544x960 input by
#: ``benchmarks/ops_speed.py`` (torch FlopCounterMode; forward, no grad, fp32, 2 threads) on the
#: project's 2-core CPU while it was shared (load average 10.9): 1365 ms contiguous, 432 ms
#: channels_last. An idle machine is faster; rerun the benchmark for your own numbers.
SMALL_BACKBONE_COST = {"input": (3, 544, 960), "gflops": 1.38, "ms_channels_last": 432, "ms_contiguous": 1365}

RESNET_STYLES = ("pytorch", "caffe")
CHANNEL_ORDERS = ("rgb", "bgr")
#: The input every data pipeline produces, in 0..255 pixel units, RGB: ImageNet mean / std.
IMAGENET_PIXEL_MEAN = (123.675, 116.28, 103.53)
IMAGENET_PIXEL_STD = (58.395, 57.12, 57.375)


class PixelRenormalization(nn.Module):
    """Images normalised like ours (RGB, ImageNet mean/std) -> the input a backbone was trained
    on: channels in ``channel_order``, ``(pixel - pixel_mean) / pixel_std`` on 0..255 pixels
    (mean and std given in that channel order). [B, 3, H, W] -> [B, 3, H, W].

    out[c] = x[source[c]] * scale[c] + shift[c], with source the channel permutation and
    scale, shift folding our de-normalisation and the target normalisation together."""

    def __init__(self, pixel_mean: tuple[float, float, float], pixel_std: tuple[float, float, float],
                 channel_order: str) -> None:
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or any(s <= 0 for s in pixel_std):
            raise ValueError(f"pixel_mean and pixel_std need 3 values each (std > 0), got {pixel_mean}, {pixel_std}")
        self.channel_order = channel_order
        source = [2, 1, 0] if channel_order == "bgr" else [0, 1, 2]
        ours_mean = torch.tensor(IMAGENET_PIXEL_MEAN, dtype=torch.float64)[source]
        ours_std = torch.tensor(IMAGENET_PIXEL_STD, dtype=torch.float64)[source]
        target_mean = torch.tensor(pixel_mean, dtype=torch.float64)
        target_std = torch.tensor(pixel_std, dtype=torch.float64)
        # non-persistent: the settings live in the model kwargs, the state dict stays the backbone's
        self.register_buffer("source", torch.tensor(source), persistent=False)
        self.register_buffer("scale", (ours_std / target_std).float(), persistent=False)
        self.register_buffer("shift", ((ours_mean - target_mean) / target_std).float(), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        picked = images.index_select(1, self.source)
        return picked * self.scale[None, :, None, None].to(images.dtype) + self.shift[None, :, None, None].to(images.dtype)

    def extra_repr(self) -> str:
        return f"channel_order={self.channel_order}"


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (buffers, never trained).

    Buffers are named like torchvision's BatchNorm2d (weight, bias, running_mean, running_var),
    so BN entries of a checkpoint load into it; ``num_batches_tracked`` is accepted and dropped.
    Always behaves as BN in eval mode.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):  # noqa: D401,E501
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None].to(x.dtype) + shift[None, :, None, None].to(x.dtype)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> "FrozenBatchNorm2d":
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            if bn.affine:
                frozen.weight.copy_(bn.weight)
                frozen.bias.copy_(bn.bias)
            if bn.track_running_stats:
                frozen.running_mean.copy_(bn.running_mean)
                frozen.running_var.copy_(bn.running_var)
        return frozen

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet bottleneck: stride on the 3x3 conv (``style="pytorch"``, torchvision's v1.5) or on
    the first 1x1 conv (``style="caffe"``, the original ResNet / mmdetection caffe style)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 style: str = "pytorch") -> None:
        super().__init__()
        if style not in RESNET_STYLES:
            raise ValueError(f"resnet style must be one of {RESNET_STYLES}, got {style!r}")
        self.conv1 = _conv1x1(in_ch, width, stride if style == "caffe" else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride if style == "pytorch" else 1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with torchvision's module names (conv1, bn1, layer1..4, fc). ``style`` places the
    stride of bottleneck blocks (see Bottleneck); BasicBlock ResNets have one style only."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        stem_width: int = 64,
        num_classes: int = 1000,
        style: str = "pytorch",
    ) -> None:
        super().__init__()
        if style not in RESNET_STYLES:
            raise ValueError(f"resnet style must be one of {RESNET_STYLES}, got {style!r}")
        if style != "pytorch" and block is not Bottleneck:
            raise ValueError(f"resnet style {style!r} places the stride inside bottleneck blocks; "
                             f"this ResNet has {block.__name__}s (use style 'pytorch')")
        block_style = {"style": style} if block is Bottleneck else {}
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = stem_width
        stages = []
        for index, (width, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or in_ch != width * block.expansion:
                downsample = nn.Sequential(
                    _conv1x1(in_ch, width * block.expansion, stride), nn.BatchNorm2d(width * block.expansion)
                )
            layer = [block(in_ch, width, stride, downsample, **block_style)]
            in_ch = width * block.expansion
            layer += [block(in_ch, width, **block_style) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.c4_channels = widths[2] * block.expansion
        self.c5_channels = in_ch
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:  # full classifier, for completeness
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_ARCHS: dict[str, Callable[[str], ResNet]] = {
    "resnet50": lambda style: ResNet(Bottleneck, (3, 4, 6, 3), style=style),
    "resnet18": lambda style: ResNet(BasicBlock, (2, 2, 2, 2), style=style),
    "small": lambda style: ResNet(BasicBlock, (1, 1, 1, 1), widths=(16, 32, 64, 128), stem_width=16, style=style),
}


def resnet_state_dict_keys(name: str) -> list[str]:
    """The state dict keys (parameters + BN buffers incl. num_batches_tracked) of an architecture."""
    return list(_build_arch(name).state_dict().keys())


def _build_arch(name: str, style: str = "pytorch") -> ResNet:
    if name not in _ARCHS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_ARCHS)}")
    return _ARCHS[name](style)


def _read_state_dict(weights: str) -> dict[str, Tensor]:
    if weights.startswith(("http://", "https://")):
        try:
            return torch.hub.load_state_dict_from_url(weights, map_location="cpu", progress=True)
        except Exception as exc:
            raise CheckpointError(
                f"{weights}: could not download the backbone weights ({type(exc).__name__}: {exc}). "
                "Download the file on a machine with network access and pass its local path instead."
            ) from exc
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a torchvision-named ResNet state dict)")
    return state


def load_resnet_weights(model: ResNet, weights: str) -> None:
    """Load a torchvision-named state dict (file path or URL) into ``model`` with a strict key check."""
    state = _read_state_dict(weights)
    diff = compare_state_dicts(state, model.state_dict())
    if diff.missing or diff.unexpected:
        raise CheckpointError(
            f"{weights}: state dict does not match the backbone architecture; "
            f"missing keys: [{show_keys(diff.missing, 10)}]; unexpected keys: [{show_keys(diff.unexpected, 10)}]"
        )
    wrong = [f"{k} {shape} != {wanted}" for k, shape, wanted in diff.mismatched]
    if wrong:
        raise CheckpointError(f"{weights}: tensor shapes do not match the backbone: {'; '.join(wrong[:10])}")
    model.load_state_dict(state, strict=True)


def _freeze_batchnorms(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d inside ``module`` by a FrozenBatchNorm2d (in place)."""
    if isinstance(module, nn.BatchNorm2d):
        return FrozenBatchNorm2d.from_batchnorm(module)
    for name, child in module.named_children():
        replaced = _freeze_batchnorms(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


class Body(nn.Sequential):
    """[PixelRenormalization +] stem + layer1..layer3 -> C4 map (stride 16). Keeps torchvision
    names for its children (the renormalisation has no state dict entries)."""

    def __init__(self, resnet: ResNet, renormalize: PixelRenormalization | None = None) -> None:
        super().__init__()
        if renormalize is not None:
            self.add_module("renormalize", renormalize)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
            self.add_module(name, getattr(resnet, name))
        self.out_channels = resnet.c4_channels
        self.stride = 16


@dataclass
class BackboneParts:
    """The two halves of a C4-split ResNet.

    ``body``: images [B, 3, H, W] -> C4 map [B, out_channels, H/16, W/16].
    ``make_head()``: a fresh deep copy of layer4 (res5) with the loaded weights, for RoI heads:
    [K, out_channels, 14, 14] -> [K, head_out_channels, 7, 7].
    """

    name: str
    body: nn.Module
    _head_template: nn.Module
    out_channels: int
    head_out_channels: int

    @property
    def c4_channels(self) -> int:
        return self.out_channels

    def make_head(self) -> nn.Module:
        return copy.deepcopy(self._head_template)


def build_backbone(
    name: str,
    weights: str | None = None,
    frozen_stem: bool = True,
    frozen_bn: bool = False,
    style: str = "pytorch",
    pixel_mean: tuple[float, float, float] = IMAGENET_PIXEL_MEAN,
    pixel_std: tuple[float, float, float] = IMAGENET_PIXEL_STD,
    channel_order: str = "rgb",
) -> BackboneParts:
    """Build ``resnet50`` | ``resnet18`` | ``small`` split at C4.

    Args:
        weights: path (or http(s) URL) of a torchvision-named ImageNet state dict; None keeps the
            random (Kaiming) initialisation. ``small`` has the same naming but no public weights.
        frozen_stem: conv1 + bn1 parameters get ``requires_grad=False`` (bn1 still normalises with
            batch statistics in training unless ``frozen_bn``).
        frozen_bn: every BatchNorm (body and head) becomes a FrozenBatchNorm2d.
        style: "pytorch" | "caffe", where a bottleneck block strides (see Bottleneck).
        pixel_mean, pixel_std, channel_order: the input the backbone's weights expect (0..255
            pixels, mean/std in ``channel_order``); other than ImageNet RGB adds a
            PixelRenormalization in front of the body.
    """
    resnet = _build_arch(name, style)
    same_input = (channel_order == "rgb" and tuple(map(float, pixel_mean)) == IMAGENET_PIXEL_MEAN
                  and tuple(map(float, pixel_std)) == IMAGENET_PIXEL_STD)
    renormalize = None if same_input else PixelRenormalization(tuple(pixel_mean), tuple(pixel_std), channel_order)
    if weights is not None:
        load_resnet_weights(resnet, str(weights))
    if frozen_bn:
        _freeze_batchnorms(resnet)
    if frozen_stem:  # SeqNet: conv1 and bn1's affine parameters get no gradient
        for parameter in (*resnet.conv1.parameters(), *resnet.bn1.parameters()):
            parameter.requires_grad_(False)
    body = Body(resnet, renormalize)
    return BackboneParts(
        name=name,
        body=body,
        _head_template=resnet.layer4,
        out_channels=resnet.c4_channels,
        head_out_channels=resnet.c5_channels,
    )
