"""Deformable RoI pooling (mmcv ``DeformRoIPoolPack`` semantics), pure PyTorch with autograd.

Shape glossary
--------------
B, C, H, W   feature map
K            number of RoIs; rois float [K, 5] = (batch_index, x1, y1, x2, y2) in image pixels
h, w         output_size (e.g. 14 x 6 in DICL)
offsets      float [K, 2, h, w] normalised bin offsets (channel 0 = x, 1 = y), predicted by the
             offset head; the shift in feature pixels is gamma * offset * roi size

Forward: (1) plain pooling (RoIAlign with the half-pixel shift, ``aligned=True``) of every RoI;
(2) a small fully connected head (C*gh*gw -> fc -> fc -> 2*h*w, ReLUs between) predicts the
normalised offsets; its last layer is zero-initialised, so a fresh module is plain RoIAlign;
(3) pooling again with each bin's start shifted by gamma * offset * (roi width, roi height).
Gradients flow to the features through both poolings and to the offset head.

Offset head size. mmcv's DeformRoIPoolPack feeds the whole pooled map to the first layer:
Linear(C*h*w -> 1024). DICL uses it at 14 x 6 bins on the 1024-channel C4 map: Linear(86,016
-> 1,024), 88 M parameters. Our SeqNet-style heads pool 14 x 14 bins, where the same rule gives
Linear(200,704 -> 1,024) = 205.5 M parameters (about 2.5 GB with gradient and momentum, all
reduced every step). The head here reads the plain-pooled map average-pooled to ``offset_grid``
bins (default ``REFERENCE_OFFSET_GRID`` = DICL's 14 x 6, capped at the output size): the first
layer is the reference's size whatever the output size; at 14 x 6 output it is exactly mmcv.
``offset_grid=None`` feeds the full map (mmcv's rule at any output size).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from personsearch.ops.roi_align import _pair, roi_sample_bins

__all__ = ["DeformRoIPool", "REFERENCE_OFFSET_GRID", "deform_roi_pool"]

#: The pooled grid DICL's DeformRoIPoolPack feeds to its offset head (14 x 6 bins).
REFERENCE_OFFSET_GRID = (14, 6)


def deform_roi_pool(
    features: Tensor,
    rois: Tensor,
    offsets: Tensor | None,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 0,
    gamma: float = 0.1,
) -> Tensor:
    """Pool features [B, C, H, W] in rois [K, 5] with normalised bin offsets [K, 2, h, w] -> [K, C, h, w].

    ``offsets=None`` is plain (aligned) RoIAlign. Differentiable in features and offsets.
    """
    out_h, out_w = _pair(output_size)
    if offsets is None:
        return roi_sample_bins(features, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned=True)
    if offsets.shape != (rois.shape[0], 2, out_h, out_w):
        raise ValueError(
            f"offsets must have shape [K, 2, h, w] = {(rois.shape[0], 2, out_h, out_w)}, "
            f"got {tuple(offsets.shape)}"
        )
    boxes = rois.detach()[:, 1:].to(offsets.dtype) * spatial_scale
    roi_w = boxes[:, 2] - boxes[:, 0]
    roi_h = boxes[:, 3] - boxes[:, 1]
    scale = torch.stack((roi_w, roi_h), dim=1)[:, :, None, None] * gamma  # [K, 2, 1, 1]
    return roi_sample_bins(
        features, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned=True, offsets=offsets * scale
    )


class DeformRoIPool(nn.Module):
    """RoI pooling with learned per-bin offsets (mmcv DeformRoIPoolPack).

    Args:
        in_channels: C of the feature map.
        output_size: (h, w) or an int.
        spatial_scale: feature stride inverse, e.g. 1/16.
        sampling_ratio: samples per bin side; <= 0 adaptive (ceil(roi_size / output_size)).
        gamma: offset scale (0.1 as in mmcv).
        fc_channels: width of the offset head's hidden layers (mmcv default 1024).
        offset_grid: (gh, gw) bins the offset head reads (capped at the output size), or None
            for the full output grid (see the module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int = 0,
        gamma: float = 0.1,
        fc_channels: int = 1024,
        offset_grid: tuple[int, int] | None = REFERENCE_OFFSET_GRID,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.gamma = float(gamma)
        out_h, out_w = self.output_size
        grid = self.output_size if offset_grid is None else _pair(offset_grid)
        self.offset_grid = (min(grid[0], out_h), min(grid[1], out_w))
        self.offset_fc = nn.Sequential(
            nn.Linear(in_channels * self.offset_grid[0] * self.offset_grid[1], fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(fc_channels, fc_channels),
            nn.ReLU(inplace=True),
            nn.Linear(fc_channels, 2 * out_h * out_w),
        )
        nn.init.zeros_(self.offset_fc[-1].weight)
        nn.init.zeros_(self.offset_fc[-1].bias)

    def predict_offsets(self, pooled: Tensor) -> Tensor:
        """Normalised offsets [K, 2, h, w] from plainly pooled RoI features [K, C, h, w]."""
        out_h, out_w = self.output_size
        if self.offset_grid != self.output_size:
            pooled = F.adaptive_avg_pool2d(pooled, self.offset_grid)
        return self.offset_fc(pooled.flatten(1)).view(-1, 2, out_h, out_w)

    def forward(self, features: Tensor, rois: Tensor) -> Tensor:
        if features.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} feature channels, got {features.shape[1]}")
        args = (self.output_size, self.spatial_scale, self.sampling_ratio)
        pooled = deform_roi_pool(features, rois, None, *args, gamma=self.gamma)
        if rois.shape[0] == 0:
            return pooled
        offsets = self.predict_offsets(pooled)
        return deform_roi_pool(features, rois, offsets, *args, gamma=self.gamma)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}, gamma={self.gamma}, "
            f"offset_grid={self.offset_grid}"
        )
