"""DICL OIC masking: occlude random grid patches inside GT boxes (methods.md §4.3).

Shape glossary
--------------
B      images in the batch;  H, W  padded batch size
n      GT boxes of one image
images            float [B, 3, H, W]  normalised (padded) batch images; not modified
boxes_per_image   list of B float [n, 4] x1y1x2y2 boxes in input pixels
returns           float [B, 3, H, W]  a masked copy

For every box of every image, in order: the box is turned into the integer pixel rectangle
of pixels lying fully inside it, clipped to the image: columns ceil(x1)..floor(x2)-1, rows
ceil(y1)..floor(y2)-1 (size bw x bh). Then, with probability ``prob``, ``patches`` cells of a
``grid`` = (rows, cols) = (14, 6) grid of that rectangle are drawn (uniformly, with
replacement; row and column drawn independently) and each is filled with the per-image,
per-channel mean. A cell is floor(bh/14) x floor(bw/6) pixels anchored at the grid corner
(cell r, c starts at (r*floor(bh/14), c*floor(bw/6))), so it always lies inside the box; for
boxes under 14 px high or 6 px wide it is empty.

Quirks of the official code (jiabeiwangTJU/DICL, two_stage_siamese.py) that are kept:
- the fill value is the per-channel mean of the WHOLE image tensor as given, padding
  included, computed once before any masking of the batch;
- boxes are masked in place one after another, so overlapping boxes see earlier patches;
- a box narrower or lower than 4 px ``break``s the loop: the remaining boxes of that image are
  not masked. ``fix_small_box_quirk=True`` skips only that box instead.
Deliberate difference: the official code takes the pixel rectangle as int(box + 1) (a 1 px
shift to the lower right, so a patch can leave the box by one pixel); here the rectangle is
the pixels fully inside the box.

Random draws (``generator``), per box that passes the size check: one uniform for the
probability, then ``patches`` column cells, then ``patches`` row cells — deterministic for a
seeded ``torch.Generator`` (CPU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["occlusion_mask_boxes"]

MIN_BOX_SIDE = 4  # pixels; smaller boxes stop (or, fixed, skip) the masking of an image


def _pixel_rect(box: Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    left = min(max(math.ceil(x1), 0), width)
    top = min(max(math.ceil(y1), 0), height)
    right = max(min(math.floor(x2), width), left)
    bottom = max(min(math.floor(y2), height), top)
    return left, top, right, bottom


@torch.no_grad()
def occlusion_mask_boxes(
    images: Tensor,
    boxes_per_image: list[Tensor],
    prob: float = 0.5,
    patches: int = 2,
    grid: tuple[int, int] = (14, 6),
    generator: torch.Generator | None = None,
    fix_small_box_quirk: bool = False,
) -> Tensor:
    """Masked copy of ``images`` (see module docstring for the exact procedure)."""
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if len(boxes_per_image) != images.shape[0]:
        raise ValueError(f"got {len(boxes_per_image)} box tensors for {images.shape[0]} images")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    grid_rows, grid_cols = grid
    if grid_rows <= 0 or grid_cols <= 0 or patches < 0:
        raise ValueError(f"grid must be positive and patches >= 0, got grid={grid}, patches={patches}")

    masked = images.clone()
    channel_means = images.mean(dim=(2, 3))                              # [B, C]
    height, width = images.shape[2], images.shape[3]
    for image_index, boxes in enumerate(boxes_per_image):
        if boxes.numel() and (boxes.dim() != 2 or boxes.shape[1] != 4):
            raise ValueError(f"boxes of image {image_index} must be [n, 4], got shape {tuple(boxes.shape)}")
        fill = channel_means[image_index][:, None]                       # [C, 1]
        for box in boxes.reshape(-1, 4).cpu():
            left, top, right, bottom = _pixel_rect(box, height, width)
            box_w, box_h = right - left, bottom - top
            if box_w < MIN_BOX_SIDE or box_h < MIN_BOX_SIDE:
                if fix_small_box_quirk:
                    continue
                break  # official quirk: later boxes of this image stay unmasked
            if torch.rand(1, generator=generator).item() >= prob:
                continue
            cell_h, cell_w = box_h // grid_rows, box_w // grid_cols
            cols = torch.randint(grid_cols, (patches,), generator=generator).tolist()
            rows = torch.randint(grid_rows, (patches,), generator=generator).tolist()
            region = torch.zeros(box_h, box_w, dtype=torch.bool)
            for row, col in zip(rows, cols):
                region[row * cell_h:(row + 1) * cell_h, col * cell_w:(col + 1) * cell_w] = True
            if not region.any():
                continue
            view = masked[image_index, :, top:bottom, left:right]        # [C, bh, bw] view
            view[:, region.to(view.device)] = fill.to(view.dtype)
    return masked
