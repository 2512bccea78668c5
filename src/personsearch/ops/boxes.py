"""Box utilities in (x1, y1, x2, y2) pixel coordinates, pure PyTorch.

Shape glossary
--------------
N, M   number of boxes
C      number of classes in class-specific regression (deltas [N, 4*C])
boxes  float [N, 4] as (x1, y1, x2, y2); width = x2 - x1 (no "+1" convention)

Conventions follow torchvision's detection code: areas and IoUs without the legacy "+1",
Faster R-CNN box parameterisation (dx, dy, dw, dh) scaled by per-coordinate weights, e.g.
(10, 10, 5, 5) for the RoI head and (1, 1, 1, 1) for the RPN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_iou",
    "clip_boxes",
    "remove_small_boxes",
    "encode_boxes",
    "decode_boxes",
    "DEFAULT_SCALE_CLAMP",
]

#: Largest allowed dw/dh before exp() in :func:`decode_boxes` (torchvision's default).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {tuple(boxes.shape)}")


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box: boxes [N, 4] -> [N]."""
    _check_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU: boxes1 [N, 4], boxes2 [M, 4] -> [N, M].

    Pairs whose union is zero (two degenerate boxes) give NaN-free 0.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    iou = inter / union
    return torch.where(union > 0, iou, torch.zeros_like(iou))


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip boxes [..., 4] to an image of size (height, width): x in [0, w], y in [0, h]."""
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 coordinates in the last dim, got {tuple(boxes.shape)}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64, ascending) of boxes whose width and height are both >= min_size."""
    _check_boxes(boxes)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    keep = (widths >= min_size) & (heights >= min_size)
    return torch.nonzero(keep).flatten()


def encode_boxes(
    reference: Tensor, proposals: Tensor, weights: tuple[float, float, float, float]
) -> Tensor:
    """Regression targets that turn ``proposals`` into ``reference`` (both [N, 4]) -> [N, 4].

    dx = wx * (ref_cx - prop_cx) / prop_w, dy likewise, dw = ww * log(ref_w / prop_w),
    dh = wh * log(ref_h / prop_h).
    """
    _check_boxes(reference, "reference")
    _check_boxes(proposals, "proposals")
    if reference.shape[0] != proposals.shape[0]:
        raise ValueError(
            f"reference and proposals must have the same number of boxes, "
            f"got {reference.shape[0]} and {proposals.shape[0]}"
        )
    wx, wy, ww, wh = weights
    prop_w = proposals[:, 2] - proposals[:, 0]
    prop_h = proposals[:, 3] - proposals[:, 1]
    prop_cx = proposals[:, 0] + 0.5 * prop_w
    prop_cy = proposals[:, 1] + 0.5 * prop_h
    ref_w = reference[:, 2] - reference[:, 0]
    ref_h = reference[:, 3] - reference[:, 1]
    ref_cx = reference[:, 0] + 0.5 * ref_w
    ref_cy = reference[:, 1] + 0.5 * ref_h
    dx = wx * (ref_cx - prop_cx) / prop_w
    dy = wy * (ref_cy - prop_cy) / prop_h
    dw = ww * torch.log(ref_w / prop_w)
    dh = wh * torch.log(ref_h / prop_h)
    return torch.stack((dx, dy, dw, dh), dim=1)


def decode_boxes(
    deltas: Tensor,
    proposals: Tensor,
    weights: tuple[float, float, float, float],
    clamp: float = DEFAULT_SCALE_CLAMP,
) -> Tensor:
    """Apply deltas [N, 4*C] (class-specific when C > 1) to proposals [N, 4] -> [N, 4*C].

    dw and dh are clamped at ``clamp`` (log(1000/16)) before exp() so huge predictions stay finite.
    The computation runs in the dtype of ``deltas``.
    """
    if deltas.dim() != 2 or deltas.shape[1] % 4 != 0:
        raise ValueError(f"deltas must have shape [N, 4*C], got {tuple(deltas.shape)}")
    _check_boxes(proposals, "proposals")
    if deltas.shape[0] != proposals.shape[0]:
        raise ValueError(
            f"deltas and proposals must have the same number of rows, "
            f"got {deltas.shape[0]} and {proposals.shape[0]}"
        )
    proposals = proposals.to(deltas.dtype)
    wx, wy, ww, wh = weights
    widths = (proposals[:, 2] - proposals[:, 0])[:, None]
    heights = (proposals[:, 3] - proposals[:, 1])[:, None]
    ctr_x = proposals[:, 0, None] + 0.5 * widths
    ctr_y = proposals[:, 1, None] + 0.5 * heights

    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=clamp)
    dh = (deltas[:, 3::4] / wh).clamp(max=clamp)

    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    half_w = 0.5 * torch.exp(dw) * widths
    half_h = 0.5 * torch.exp(dh) * heights
    out = torch.stack(
        (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2
    )  # [N, C, 4]
    return out.flatten(1)
