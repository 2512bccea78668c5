"""Greedy non-maximum suppression, pure PyTorch, O(N * block) memory.

Shape glossary
--------------
N       number of candidate boxes
boxes   float [N, 4] (x1, y1, x2, y2)
scores  float [N]
idxs    int64 [N] category / image index: boxes of different idxs never suppress each other
keep    int64 [K] indices into the inputs, sorted by descending score (ties: lower index first)

Semantics equal torchvision's CPU ``nms``: boxes are visited in descending score order (stable
sort, so equal scores go by index); a visited box that is not yet suppressed is kept and
suppresses every later box whose IoU with it is strictly greater than ``iou_threshold``.

Algorithm: the sorted boxes are processed in blocks of ``_BLOCK`` candidates. Each block is
first tested against the boxes kept so far ([kept, block] IoUs), then the greedy order inside
the block is resolved from its [block, block] "suppresses" matrix by a fixed-point iteration
(keep[i] = alive[i] and no kept j < i suppresses i), which settles after as many rounds as the
longest suppression chain (a handful in practice) and is exact. No N x N matrix is built.
"""

from __future__ import annotations

import torch
from torch import Tensor

from personsearch.ops._torchvision import compiled_ops

__all__ = ["nms", "batched_nms"]

_BLOCK = 512
_LOOP_CATEGORIES_MAX = 16  # batched_nms: below this many categories, run nms per category


def _suppression(
    x1a: Tensor, y1a: Tensor, x2a: Tensor, y2a: Tensor, area_a: Tensor,
    x1b: Tensor, y1b: Tensor, x2b: Tensor, y2b: Tensor, area_b: Tensor,
    iou_threshold: float,
) -> Tensor:
    """[A, B] bool: IoU(a, b) > threshold, computed like torchvision's CPU kernel."""
    w = (torch.min(x2a[:, None], x2b[None, :]) - torch.max(x1a[:, None], x1b[None, :])).clamp_(min=0)
    h = (torch.min(y2a[:, None], y2b[None, :]) - torch.max(y1a[:, None], y1b[None, :])).clamp_(min=0)
    inter = w.mul_(h)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter.div_(union) > iou_threshold


def _nms_sorted(boxes: Tensor, iou_threshold: float, categories: Tensor | None) -> Tensor:
    """Greedy NMS over boxes already in visiting order; returns kept positions (ascending)."""
    num = boxes.shape[0]
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    # kept boxes so far, stored contiguously: rows x1, y1, x2, y2, area
    kept = boxes.new_empty((5, num))
    kept_cats = None if categories is None else categories.new_empty(num)
    kept_positions = torch.empty(num, dtype=torch.int64, device=boxes.device)
    num_kept = 0
    for start in range(0, num, _BLOCK):
        end = min(start + _BLOCK, num)
        block = (x1[start:end], y1[start:end], x2[start:end], y2[start:end], area[start:end])
        block_cats = None if categories is None else categories[start:end]
        if num_kept > 0:
            sup = _suppression(*kept[:, :num_kept], *block, iou_threshold)
            if categories is not None:
                sup &= kept_cats[:num_kept, None] == block_cats[None, :]
            alive = ~sup.any(0)
        else:
            alive = torch.ones(end - start, dtype=torch.bool, device=boxes.device)
        # greedy order inside the block: only earlier (higher-scoring) boxes suppress later ones
        sup = _suppression(*block, *block, iou_threshold)
        if categories is not None:
            sup &= block_cats[:, None] == block_cats[None, :]
        sup = torch.triu(sup, diagonal=1) & alive[:, None]
        sup_f = sup.to(torch.float32)
        keep = alive
        while True:
            suppressed = (keep.to(torch.float32)[None, :] @ sup_f)[0] > 0
            new_keep = alive & ~suppressed
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
        positions = torch.nonzero(keep).flatten()
        count = positions.numel()
        kept[:, num_kept:num_kept + count] = torch.stack(block)[:, positions]
        if categories is not None:
            kept_cats[num_kept:num_kept + count] = block_cats[positions]
        kept_positions[num_kept:num_kept + count] = positions + start
        num_kept += count
    return kept_positions[:num_kept]


def _check(boxes: Tensor, scores: Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have shape [N] with N={boxes.shape[0]}, got {tuple(scores.shape)}"
        )


def _pure_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, categories: Tensor | None) -> Tensor:
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    if not sorted_boxes.is_floating_point():
        sorted_boxes = sorted_boxes.float()
    cats = None if categories is None else categories[order]
    return order[_nms_sorted(sorted_boxes.detach(), float(iou_threshold), cats)]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: boxes [N, 4], scores [N] -> int64 keep indices sorted by descending score.

    A box is suppressed by a higher-scoring kept box when their IoU is > ``iou_threshold``.
    """
    _check(boxes, scores)
    ops = compiled_ops()
    if ops is not None:
        return ops.nms(boxes, scores, float(iou_threshold))
    return _pure_nms(boxes, scores, iou_threshold, None)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS per category: boxes with different ``idxs`` never suppress each other.

    Returns int64 keep indices sorted by descending score (ties: lower index first).
    """
    _check(boxes, scores)
    if idxs.shape != scores.shape:
        raise ValueError(f"idxs must have shape [N] like scores, got {tuple(idxs.shape)}")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    categories = torch.unique(idxs)
    if categories.numel() <= _LOOP_CATEGORIES_MAX:
        pieces = []
        for category in categories:
            members = torch.nonzero(idxs == category).flatten()
            pieces.append(members[nms(boxes[members], scores[members], iou_threshold)])
        keep = torch.cat(pieces)
    else:
        keep = _pure_nms(boxes, scores, iou_threshold, idxs)
    # descending score, ties by index
    keep = torch.sort(keep).values
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
