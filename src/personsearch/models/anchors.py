"""Anchor generator for a single stride-16 feature map (RPN on C4).

Shape glossary
--------------
A        anchors per location = len(sizes) * len(ratios) (15 for SeqNet)
H, W     feature-map height and width
cell     [A, 4] anchors centred on (0, 0), x1y1x2y2, ratio-major then size
anchors  [H*W*A, 4] x1y1x2y2 in input pixels, location-major (row, column), then the A
         cell anchors; the RPN head output is flattened in the same order.

Ratios are h/w (as torchvision): ratio 2.0 is a box twice as tall as wide. Every anchor of
one size has the area size**2 (before rounding). Cell anchors are rounded to integers
(``round_cells=True``, torchvision / SeqNet) or kept exact (mmdetection 2.x / CGPS), and
anchors sit at (x * stride, y * stride) for the feature cell (x, y), as both do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def make_cell_anchors(sizes: Sequence[float], ratios: Sequence[float], round_cells: bool = True) -> Tensor:
    """[A, 4] anchors centred on the origin, A = len(ratios) * len(sizes), ratio-major;
    coordinates rounded to integers when ``round_cells``."""
    if len(sizes) == 0 or len(ratios) == 0:
        raise ValueError("anchor sizes and ratios must not be empty")
    if any(s <= 0 for s in sizes) or any(r <= 0 for r in ratios):
        raise ValueError(f"anchor sizes and ratios must be positive, got {sizes}, {ratios}")
    scales = torch.as_tensor(list(sizes), dtype=torch.float32)
    aspect = torch.as_tensor(list(ratios), dtype=torch.float32)
    h_ratios = torch.sqrt(aspect)
    w_ratios = 1.0 / h_ratios
    widths = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    heights = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    cell = torch.stack([-widths, -heights, widths, heights], dim=1) / 2
    return cell.round() if round_cells else cell


class AnchorGenerator(nn.Module):
    """Anchors of one feature map of the given stride."""

    def __init__(self, sizes: Sequence[float], ratios: Sequence[float], stride: int = 16,
                 round_cells: bool = True) -> None:
        super().__init__()
        if stride <= 0:
            raise ValueError(f"anchor stride must be positive, got {stride}")
        self.sizes = tuple(float(s) for s in sizes)
        self.ratios = tuple(float(r) for r in ratios)
        self.stride = int(stride)
        self.register_buffer("cell_anchors", make_cell_anchors(self.sizes, self.ratios, round_cells), persistent=False)

    @property
    def num_anchors_per_location(self) -> int:
        return self.cell_anchors.shape[0]

    def grid_anchors(self, feature_size: tuple[int, int], device: torch.device | None = None) -> Tensor:
        """[H*W*A, 4] float32 anchors for a feature map of size (H, W)."""
        height, width = int(feature_size[0]), int(feature_size[1])
        cell = self.cell_anchors.to(device=device, dtype=torch.float32)
        shift_x = torch.arange(width, dtype=torch.float32, device=cell.device) * self.stride
        shift_y = torch.arange(height, dtype=torch.float32, device=cell.device) * self.stride
        grid_y, grid_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1).reshape(-1, 1, 4)
        return (shifts + cell.reshape(1, -1, 4)).reshape(-1, 4)

    def forward(self, features: Tensor) -> Tensor:
        """Anchors for `features` [B, C, H, W]; the same for every image of the batch."""
        return self.grid_anchors(features.shape[-2:], device=features.device)
