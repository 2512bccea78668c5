"""SCHP human parser (Li et al., "Self-Correction for Human Parsing"), inference network only,
in plain PyTorch, with the parameter names of its released checkpoints.

Architecture (CE2P with the SCHP weights): a ResNet-101 with a deep stem (three 3x3 convs,
64-64-128 channels, first of stride 2) and a dilated last stage (stride 16 overall); a pyramid
pooling context module on the last stage; a decoder that fuses the context with the stride-4
features; an edge branch on stages 1-3; a fusion head on the decoder and edge features. The
original uses in-place activated batch norm (InPlaceABNSync); here it is a BatchNorm2d followed
by LeakyReLU(0.01) with the same parameter and buffer names, so the checkpoints load unchanged.

Shape glossary:
    B            batch of person crops
    C            parsing classes (LIP 20, ATR 18, Pascal-Person-Part 7; class 0 = background)
    H, W         network input size (LIP 473x473, ATR / Pascal 512x512)
    H4, W4       stride-4 feature size: ceil(ceil(H / 2) / 2) (119 for 473, 128 for 512)
    images       float32 [B, 3, H, W], BGR channel order, (x / 255 - mean) / std with the
                 constants below (the order SCHP's OpenCV pipeline feeds it)
    parsing      [B, C, H4, W4] decoder logits
    fusion       [B, C, H4, W4] fused logits (what SCHP's extractor uses)
    edge         [B, 2, H4, W4] edge logits
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from personsearch.errors import CheckpointError
from personsearch.models.state_dict_check import compare_state_dicts, show_keys

# SCHP's input normalisation, BGR order (its images come from cv2.imread)
SCHP_MEAN_BGR = (0.406, 0.456, 0.485)
SCHP_STD_BGR = (0.225, 0.224, 0.229)


@dataclass(frozen=True)
class ParserDataset:
    name: str
    num_classes: int
    input_size: tuple[int, int]  # (height, width) at test time
    labels: tuple[str, ...]


SCHP_DATASETS: dict[str, ParserDataset] = {
    "lip": ParserDataset("lip", 20, (473, 473), (
        "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
        "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
        "Left-leg", "Right-leg", "Left-shoe", "Right-shoe")),
    "atr": ParserDataset("atr", 18, (512, 512), (
        "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress",
        "Belt", "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm",
        "Right-arm", "Bag", "Scarf")),
    "pascal": ParserDataset("pascal", 7, (512, 512), (
        "Background", "Head", "Torso", "Upper Arms", "Lower Arms", "Upper Legs", "Lower Legs")),
}


class BatchNormLeakyReLU(nn.BatchNorm2d):
    """InPlaceABNSync at inference: batch norm then leaky ReLU (slope 0.01); the parameters
    and buffers are BatchNorm2d's (weight, bias, running_mean, running_var)."""

    def __init__(self, channels: int, slope: float = 0.01) -> None:
        super().__init__(channels)
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(super().forward(x), self.slope)


def _conv(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
          dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride,
                     padding=dilation * (kernel // 2), dilation=dilation, bias=bias)


def _conv_abn(in_channels: int, out_channels: int, kernel: int = 1) -> nn.Sequential:
    """Conv (no bias) + activated BN: the ``<name>.0`` / ``<name>.1`` pairs of the checkpoint."""
    return nn.Sequential(_conv(in_channels, out_channels, kernel),
                         BatchNormLeakyReLU(out_channels))


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with stride / dilation, 1x1 x4) with plain BatchNorm."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride=stride, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class PyramidPooling(nn.Module):
    """PSP context: average-pool to 1, 2, 3, 6 bins, 1x1 conv each, upsample, concatenate with
    the input, 3x3 conv. [B, in, h, w] -> [B, out, h, w]."""

    def __init__(self, in_channels: int = 2048, out_channels: int = 512,
                 bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(bins_), _conv(in_channels, out_channels),
                          BatchNormLeakyReLU(out_channels)) for bins_ in bins)
        self.bottleneck = _conv_abn(in_channels + len(bins) * out_channels, out_channels, 3)

    def forward(self, features: Tensor) -> Tensor:
        size = (features.shape[-2], features.shape[-1])
        pooled = [_upsample(stage(features), size) for stage in self.stages]
        return self.bottleneck(torch.cat(pooled + [features], dim=1))


class EdgeBranch(nn.Module):
    """Edge logits and features from stages 1-3 (each reduced to 256 channels, upsampled to
    stage 1's size). Returns (edge [B, 2, h, w], edge features [B, 768, h, w])."""

    def __init__(self, in_channels: tuple[int, int, int] = (256, 512, 1024),
                 mid_channels: int = 256, out_channels: int = 2) -> None:
        super().__init__()
        self.conv1 = _conv_abn(in_channels[0], mid_channels)
        self.conv2 = _conv_abn(in_channels[1], mid_channels)
        self.conv3 = _conv_abn(in_channels[2], mid_channels)
        self.conv4 = _conv(mid_channels, out_channels, 3, bias=True)  # shared edge classifier
        self.conv5 = _conv(3 * out_channels, out_channels, bias=True)

    def forward(self, stage1: Tensor, stage2: Tensor, stage3: Tensor) -> tuple[Tensor, Tensor]:
        size = (stage1.shape[-2], stage1.shape[-1])
        features = [self.conv1(stage1), self.conv2(stage2), self.conv3(stage3)]
        edges = [_upsample(self.conv4(f), size) for f in features]
        features = [_upsample(f, size) for f in features]
        return self.conv5(torch.cat(edges, dim=1)), torch.cat(features, dim=1)


class ParsingDecoder(nn.Module):
    """Context (stride 16, 512 ch) + stage-1 features (stride 4, 256 ch) -> parsing logits
    [B, C, h, w] and decoder features [B, 256, h, w]."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = _conv_abn(512, 256)
        self.conv2 = _conv_abn(256, 48)
        self.conv3 = nn.Sequential(_conv(304, 256), BatchNormLeakyReLU(256),
                                   _conv(256, 256), BatchNormLeakyReLU(256))
        self.conv4 = _conv(256, num_classes, bias=True)

    def forward(self, context: Tensor, stage1: Tensor) -> tuple[Tensor, Tensor]:
        size = (stage1.shape[-2], stage1.shape[-1])
        fused = torch.cat([_upsample(self.conv1(context), size), self.conv2(stage1)], dim=1)
        features = self.conv3(fused)
        return self.conv4(features), features


class SCHPOutput(NamedTuple):
    parsing: Tensor
    fusion: Tensor
    edge: Tensor


class SCHPNet(nn.Module):
    """The SCHP / CE2P parser: ``SCHPNet(num_classes)(images) -> SCHPOutput``."""

    def __init__(self, num_classes: int, layers: tuple[int, int, int, int] = (3, 4, 23, 3)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = _conv(3, 64, 3, stride=2)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = _conv(64, 64, 3)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = _conv(64, 128, 3)
        self.bn3 = nn.BatchNorm2d(128)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_channels = 128
        self.layer1 = self._stage(64, layers[0])
        self.layer2 = self._stage(128, layers[1], stride=2)
        self.layer3 = self._stage(256, layers[2], stride=2)
        self.layer4 = self._stage(512, layers[3], dilation=2)
        self.context_encoding = PyramidPooling(2048, 512)
        self.edge = EdgeBranch()
        self.decoder = ParsingDecoder(num_classes)
        # "fushion" is the checkpoint's spelling
        self.fushion = nn.Sequential(_conv(1024, 256), BatchNormLeakyReLU(256), nn.Dropout2d(0.1),
                                     _conv(256, num_classes, bias=True))

    def _stage(self, width: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        out_channels = width * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(_conv(self._in_channels, out_channels, stride=stride),
                                       nn.BatchNorm2d(out_channels))
        units = [Bottleneck(self._in_channels, width, stride, dilation, downsample)]
        self._in_channels = out_channels
        units += [Bottleneck(out_channels, width, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*units)

    def forward(self, images: Tensor) -> SCHPOutput:
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        stage1 = self.layer1(self.maxpool(x))
        stage2 = self.layer2(stage1)
        stage3 = self.layer3(stage2)
        context = self.context_encoding(self.layer4(stage3))
        parsing, decoder_features = self.decoder(context, stage1)
        edge, edge_features = self.edge(stage1, stage2, stage3)
        fusion = self.fushion(torch.cat([decoder_features, edge_features], dim=1))
        return SCHPOutput(parsing, fusion, edge)


# ---------------------------------------------------------------------------------------------
# released checkpoints


def _is_tracked_count(name: str) -> bool:
    return name.endswith("num_batches_tracked")


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: SCHP weights file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file "
                              f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
                              ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state or \
            not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (or a dict with one "
                              f"under 'state_dict', as SCHP saves them)")
    # SCHP saves the DataParallel model: every name starts with "module."
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_schp(path: str | Path, dataset: str | None = None) -> tuple[SCHPNet, ParserDataset]:
    """SCHP network in eval mode with the weights of ``path`` (a released SCHP checkpoint:
    ``{'state_dict': {'module.<name>': tensor}}``; a bare state dict and names without the
    ``module.`` prefix are accepted too). The parsing dataset (LIP / ATR / Pascal) follows from
    the class count; ``dataset`` given, the count must match it. CheckpointError naming the
    file and what it lacks: missing or unexpected parameters, shape mismatches, class count."""
    path = Path(path)
    state = _read_state_dict(path)
    classifier = "decoder.conv4.weight"
    if classifier not in state:
        raise CheckpointError(f"{path}: no {classifier!r} (the parsing classifier): not an SCHP "
                              f"checkpoint (it has {len(state)} tensors, e.g. "
                              f"{show_keys(sorted(state), 3)})")
    num_classes = int(state[classifier].shape[0])
    by_count = {d.num_classes: d for d in SCHP_DATASETS.values()}
    if dataset is not None:
        if dataset not in SCHP_DATASETS:
            raise CheckpointError(f"unknown SCHP dataset {dataset!r} (known: "
                                  f"{', '.join(SCHP_DATASETS)})")
        expected = SCHP_DATASETS[dataset]
        if num_classes != expected.num_classes:
            raise CheckpointError(f"{path}: {num_classes} parsing classes, but the {dataset} "
                                  f"parser has {expected.num_classes}")
    elif num_classes not in by_count:
        raise CheckpointError(f"{path}: {num_classes} parsing classes; the released SCHP "
                              f"parsers have " + ", ".join(f"{d.num_classes} ({d.name})"
                                                           for d in SCHP_DATASETS.values()))
    info = SCHP_DATASETS[dataset] if dataset is not None else by_count[num_classes]
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = SCHPNet(info.num_classes)
    expected_state = {k: v for k, v in model.state_dict().items() if not _is_tracked_count(k)}
    given = {k: v for k, v in state.items() if not _is_tracked_count(k)}
    diff = compare_state_dicts(given, expected_state)
    missing, unexpected = sorted(diff.missing), sorted(diff.unexpected)
    mismatched = sorted(f"{k} {shape} (expected {wanted})" for k, shape, wanted in diff.mismatched)
    problems = []
    if missing:
        problems.append(f"missing {show_keys(missing, 5)}")
    if unexpected:
        problems.append(f"unexpected {show_keys(unexpected, 5)}")
    if mismatched:
        problems.append(f"shape mismatch {show_keys(mismatched, 5)}")
    if problems:
        raise CheckpointError(f"{path}: not the SCHP ResNet-101 parser with {info.num_classes} "
                              f"classes: " + "; ".join(problems))
    model = model.to_empty(device="cpu")
    model.load_state_dict(given, strict=False)
    for name, buffer in model.named_buffers():  # not in the checkpoints; unused at inference
        if _is_tracked_count(name):
            buffer.zero_()
    return model.eval(), info


# ---------------------------------------------------------------------------------------------
# test-time transform


def crop_affine(width: int, height: int, input_size: tuple[int, int]) -> np.ndarray:
    """float64 [2, 3] affine map from crop pixels to network input pixels, as SCHP's
    extractor builds it for a whole image of ``width`` x ``height``: the centre of the pixel
    range [0, width-1] x [0, height-1] goes to the input's centre, and the range, widened or
    heightened to the input's aspect ratio, fills the input (uniform scale, no rotation)."""
    input_h, input_w = input_size
    aspect = input_w / input_h
    center_x, center_y = (width - 1) * 0.5, (height - 1) * 0.5
    span_w, span_h = float(width - 1), float(height - 1)
    if span_w > aspect * span_h:
        span_h = span_w / aspect
    elif span_w < aspect * span_h:
        span_w = span_h * aspect
    scale = input_w / max(span_w, 1e-6)
    return np.array([[scale, 0.0, input_w * 0.5 - scale * center_x],
                     [0.0, scale, input_h * 0.5 - scale * center_y]])


@torch.no_grad()
def parse_crops(model: SCHPNet, crops_rgb: list[np.ndarray], input_size: tuple[int, int],
                device: torch.device | str = "cpu", batch_size: int = 8
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the parser on person crops (uint8 RGB [h, w, 3] each). Per crop: (foreground bool
    [h, w] = argmax class is not background, score float32 [h, w] = 1 - P(background)), the
    fused logits mapped back to the crop with the inverse of :func:`crop_affine` as SCHP's
    extractor does (bilinear upsampling to the input size, then the inverse warp; edge logits
    replicated where the warp samples past the input, see below)."""
    import cv2

    input_h, input_w = input_size
    mean = torch.tensor(SCHP_MEAN_BGR, device=device).view(1, 3, 1, 1)
    std = torch.tensor(SCHP_STD_BGR, device=device).view(1, 3, 1, 1)
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(crops_rgb), batch_size):
        chunk = crops_rgb[start:start + batch_size]
        affines = [crop_affine(c.shape[1], c.shape[0], input_size) for c in chunk]
        warped = np.stack([
            cv2.warpAffine(np.ascontiguousarray(crop[:, :, ::-1]), affine, (input_w, input_h),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0, 0, 0))
            for crop, affine in zip(chunk, affines)])
        images = torch.from_numpy(warped).to(device).permute(0, 3, 1, 2).float() / 255.0
        logits = model((images - mean) / std).fusion
        logits = _upsample(logits, (input_h, input_w)).permute(0, 2, 3, 1).float().cpu().numpy()
        for crop, affine, crop_logits in zip(chunk, affines, logits):
            height, width = crop.shape[:2]
            inverse = cv2.invertAffineTransform(affine)
            # SCHP's transform maps the pixel range [0, w-1] onto [0, input w], so the crop's
            # last row / column samples just past the input's edge: replicate the edge logits
            # there (SCHP pads with 0 and so tends to lose that row / column)
            back = np.stack([cv2.warpAffine(np.ascontiguousarray(crop_logits[:, :, c]), inverse,
                                            (width, height), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REPLICATE)
                             for c in range(crop_logits.shape[2])], axis=0)
            probabilities = torch.from_numpy(back).softmax(dim=0)
            foreground = (back.argmax(axis=0) != 0)
            results.append((foreground, (1.0 - probabilities[0]).numpy().astype(np.float32)))
    return results
