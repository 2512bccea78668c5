"""DICL OIC masking: occlude random grid patches inside GT boxes (docs/methods.md §4.3).

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

GPU path: the boxes are read back to the host once per batch; the patches are collected as
rectangles on the host and painted in one pass on the images' device (no boolean indexing per
box). Since every patch of an image gets the same fill, painting them at once gives exactly the
sequential result.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["draw_patch_cells", "occlusion_mask_boxes"]

MIN_BOX_SIDE = 4  # pixels; smaller boxes stop (or, fixed, skip) the masking of an image


def _pixel_rect(box, height: int, width: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    left = min(max(math.ceil(x1), 0), width)
    top = min(max(math.ceil(y1), 0), height)
    right = max(min(math.floor(x2), width), left)
    bottom = max(min(math.floor(y2), height), top)
    return left, top, right, bottom


def draw_patch_cells(generator: torch.Generator | None, prob: float, patches: int,
                     grid: tuple[int, int]) -> tuple[list[int], list[int]] | None:
    """One box's draws from the (CPU) generator: None when the box is not masked, else the
    patches' (rows, cols). Host-only work: the tensors read back here never live on the GPU."""
    if torch.rand(1, generator=generator).item() >= prob:
        return None
    cols = torch.randint(grid[1], (patches,), generator=generator).tolist()
    rows = torch.randint(grid[0], (patches,), generator=generator).tolist()
    return rows, cols


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

    channel_means = images.mean(dim=(2, 3))                              # [B, C]
    height, width = images.shape[2], images.shape[3]
    for image_index, boxes in enumerate(boxes_per_image):
        if boxes.numel() and (boxes.dim() != 2 or boxes.shape[1] != 4):
            raise ValueError(f"boxes of image {image_index} must be [n, 4], got shape {tuple(boxes.shape)}")
    # one host read of every box of the batch; the draws below use the (CPU) generator only
    counts = [int(b.numel() // 4) for b in boxes_per_image]
    flat = torch.cat([b.reshape(-1, 4).to(torch.float64) for b in boxes_per_image]).cpu().tolist() \
        if sum(counts) else []
    rects: list[tuple[int, int, int, int, int]] = []  # (image, top, bottom, left, right)
    start = 0
    for image_index, count in enumerate(counts):
        for box in flat[start:start + count]:
            left, top, right, bottom = _pixel_rect(box, height, width)
            box_w, box_h = right - left, bottom - top
            if box_w < MIN_BOX_SIDE or box_h < MIN_BOX_SIDE:
                if fix_small_box_quirk:
                    continue
                break  # official quirk: later boxes of this image stay unmasked
            draw = draw_patch_cells(generator, prob, patches, grid)
            if draw is None:
                continue
            rows, cols = draw
            cell_h, cell_w = box_h // grid_rows, box_w // grid_cols
            if cell_h == 0 or cell_w == 0:
                continue
            for row, col in zip(rows, cols):
                y0, x0 = top + row * cell_h, left + col * cell_w
                rects.append((image_index, y0, y0 + cell_h, x0, x0 + cell_w))
        start += count
    if not rects:
        return images.clone()
    # every patch at once on the images' device: rows [n, H] x columns [n, W] per image
    table = torch.tensor(rects, dtype=torch.int64).to(images.device, non_blocking=True)
    ys = torch.arange(height, device=images.device)
    xs = torch.arange(width, device=images.device)
    in_rows = (ys[None, :] >= table[:, 1:2]) & (ys[None, :] < table[:, 2:3])       # [n, H]
    in_cols = (xs[None, :] >= table[:, 3:4]) & (xs[None, :] < table[:, 4:5])       # [n, W]
    of_image = table[:, 0:1] == torch.arange(images.shape[0], device=images.device)[None, :]  # [n, B]
    covered = torch.einsum("nb,nh,nw->bhw", of_image.to(images.dtype), in_rows.to(images.dtype),
                           in_cols.to(images.dtype)) > 0                            # [B, H, W]
    fill = channel_means.to(images.dtype)[:, :, None, None]
    return torch.where(covered[:, None], fill, images)
