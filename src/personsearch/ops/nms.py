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

Algorithm: (1) candidate pairs. IoU(a, b) <= overlap_x / max(width_a, width_b), so a pair can
exceed a threshold t >= 0 only when its x-overlap exceeds t * width (with a small safety margin
for rounding). With the boxes sorted by x1, each box's partners further right form one
contiguous run, found with ``searchsorted``; blocks of consecutive boxes get one dense IoU block
(computed like torchvision's kernel) against the union of their runs. (2) The surviving pairs form a sparse "suppresses" graph
directed from the earlier (higher-scoring) box to the later one; greedy NMS is resolved on it in
vectorised rounds: an undecided box with an edge from a kept box is suppressed, then an undecided
box with no edge from an undecided box is kept. Each round decides at least the earliest
undecided box, and in practice all boxes are decided after as many rounds as the longest chain
of suppressions (a handful). Edges whose outcome is settled are dropped between rounds. Exact:
the same keep list as the sequential greedy loop. No N x N matrix is built (for t < 0 every pair
is a candidate). Before the graph, leading blocks of the visiting order are resolved and their
kept boxes remove what they suppress while that removes many boxes, so heavy overlap (every box
covering the image, as from an untrained RPN) does not turn into ~N^2 / 2 graph edges.
"""

from __future__ import annotations

import torch
from torch import Tensor

from personsearch.ops._torchvision import chunk_budget, compiled_ops, warn_if_slow_fallback

__all__ = ["nms", "batched_nms"]

#: Boxes per dense IoU block, and the upper bound on one block's compared pairs.
_PAIR_BLOCK = 256
_PAIR_CHUNK = 1 << 21
#: Boxes per leading greedy block (see _nms_sorted).
_GREEDY_BLOCK = 256
#: Estimated suppression-graph edges above which the greedy blocks go on (see _dense_overlap).
_DENSE_EDGES = 1 << 22
_LOOP_CATEGORIES_MAX = 16  # batched_nms: below this many categories, run nms per category
#: Relative slack of the x-overlap pruning bound (keeps pairs whose rounded IoU could pass).
_PRUNE_SLACK = 1e-3


def _iou_exceeds(boxes_a: Tensor, boxes_b: Tensor, iou_threshold: float) -> Tensor:
    """[A, B] bool: IoU(a, b) > threshold, computed like torchvision's CPU kernel."""
    x1a, y1a, x2a, y2a = (v[:, None] for v in boxes_a.unbind(1))
    x1b, y1b, x2b, y2b = (v[None, :] for v in boxes_b.unbind(1))
    w = (torch.min(x2a, x2b) - torch.max(x1a, x1b)).clamp_(min=0)
    h = (torch.min(y2a, y2b) - torch.max(y1a, y1b)).clamp_(min=0)
    inter = w.mul_(h)
    union = ((x2a - x1a) * (y2a - y1a)) + ((x2b - x1b) * (y2b - y1b)) - inter
    return inter.div_(union) > iou_threshold


def _suppression_edges(boxes: Tensor, iou_threshold: float, categories: Tensor | None) -> tuple[Tensor, Tensor]:
    """Pairs (earlier, later) of positions in ``boxes`` (visiting order) with IoU > threshold.

    Boxes are sorted by x1; each block of ``_PAIR_BLOCK`` consecutive boxes is compared (one
    dense IoU block) with the boxes from the block's start up to the last possible partner.
    """
    num = boxes.shape[0]
    device = boxes.device
    by_x = torch.sort(boxes[:, 0], stable=True).indices
    sorted_boxes = boxes[by_x]
    x1 = sorted_boxes[:, 0].double().contiguous()
    if iou_threshold >= 0:
        # a partner j right of i must start before x2_i - t * width_i (minus slack)
        width = (sorted_boxes[:, 2] - sorted_boxes[:, 0]).double()
        limit = sorted_boxes[:, 2].double() - iou_threshold * (1.0 - _PRUNE_SLACK) * width.clamp(min=0)
        end = torch.searchsorted(x1, limit, side="left")
        end = torch.maximum(end, torch.arange(num, device=device) + 1)
    else:
        end = torch.full((num,), num, dtype=torch.int64, device=device)
    block_ends = torch.cummax(end, 0).values  # partners of boxes up to i end before block_ends[i]
    earlier_list, later_list = [], []
    first = 0
    while first < num:
        # grow the block while its dense comparison stays within _PAIR_CHUNK entries
        last = min(first + _PAIR_BLOCK, num)
        span = int(block_ends[last - 1]) - first
        while last - first > 1 and (last - first) * span > _PAIR_CHUNK:
            last = first + (last - first) // 2
            span = int(block_ends[last - 1]) - first
        hit = _iou_exceeds(sorted_boxes[first:last], sorted_boxes[first:first + span], iou_threshold)
        rows = torch.arange(first, last, device=device)[:, None]
        cols = torch.arange(first, first + span, device=device)[None, :]
        hit &= (cols > rows) & (cols < end[first:last, None])
        left, right = torch.nonzero(hit).unbind(1)
        left, right = by_x[left + first], by_x[right + first]
        if categories is not None:
            same = categories[left] == categories[right]
            left, right = left[same], right[same]
        earlier_list.append(torch.minimum(left, right))
        later_list.append(torch.maximum(left, right))
        first = last
    return torch.cat(earlier_list), torch.cat(later_list)


def _suppressed_by(kept: Tensor, kept_categories: Tensor | None, rest: Tensor,
                   rest_categories: Tensor | None, iou_threshold: float) -> Tensor:
    """[M] bool: rest box m has IoU > threshold with some kept box (of its category); chunked so
    one comparison block stays within ``_PAIR_CHUNK`` entries."""
    suppressed = torch.zeros(rest.shape[0], dtype=torch.bool, device=rest.device)
    if kept.shape[0] == 0:
        return suppressed
    step = max(1, chunk_budget(_PAIR_CHUNK, rest.device) // kept.shape[0])
    for start in range(0, rest.shape[0], step):
        hit = _iou_exceeds(kept, rest[start:start + step], iou_threshold)
        if kept_categories is not None:
            hit &= kept_categories[:, None] == rest_categories[None, start:start + step]
        suppressed[start:start + step] = hit.any(0)
    return suppressed


def _dense_overlap(boxes: Tensor, categories: Tensor | None, iou_threshold: float) -> bool:
    """Whether the pair graph of ``boxes`` would exceed ``_DENSE_EDGES`` edges, estimated from
    ``_GREEDY_BLOCK`` evenly spaced boxes compared with all (one block's cost; deterministic)."""
    num = boxes.shape[0]
    if num * (num - 1) // 2 <= _DENSE_EDGES:
        return False
    sample = torch.linspace(0, num - 1, min(_GREEDY_BLOCK, num), device=boxes.device).long()
    hits = 0
    step = max(1, _PAIR_CHUNK // sample.numel())
    for start in range(0, num, step):
        hit = _iou_exceeds(boxes[sample], boxes[start:start + step], iou_threshold)
        if categories is not None:
            hit &= categories[sample][:, None] == categories[None, start:start + step]
        hits += int(hit.sum())
    hits = max(0, hits - int(sample.numel()))  # a box with itself (IoU 1 > any threshold below 1)
    return hits * num / (2 * sample.numel()) > _DENSE_EDGES


def _nms_sorted(boxes: Tensor, iou_threshold: float, categories: Tensor | None) -> Tensor:
    """Greedy NMS over boxes already in visiting order; returns kept positions (ascending).

    Leading blocks of ``_GREEDY_BLOCK`` boxes are resolved first (exactly, on their own pair
    graph) and their kept boxes remove every later box they suppress, for as long as a block
    removes at least a block's worth of boxes or the boxes left would still make a dense graph
    (``_dense_overlap``): heavy overlap (e.g. an untrained RPN whose boxes all cover the image)
    then costs O(N * kept) instead of a pair graph with ~N^2 / 2 edges. What survives goes
    through the pair graph. Exact: a later box's fate depends only on the kept boxes before it,
    which the blocks have already applied.
    """
    alive = torch.arange(boxes.shape[0], device=boxes.device)
    kept_parts = []
    while alive.numel() > _GREEDY_BLOCK:
        block, rest = alive[:_GREEDY_BLOCK], alive[_GREEDY_BLOCK:]
        block_categories = None if categories is None else categories[block]
        block_kept = block[_graph_nms(boxes[block], iou_threshold, block_categories)]
        kept_parts.append(block_kept)
        suppressed = _suppressed_by(
            boxes[block_kept], None if categories is None else categories[block_kept],
            boxes[rest], None if categories is None else categories[rest], iou_threshold,
        )
        alive = rest[~suppressed]
        if int(suppressed.sum()) < _GREEDY_BLOCK and not _dense_overlap(
                boxes[alive], None if categories is None else categories[alive], iou_threshold):
            break  # sparse overlap from here on: the pair graph is cheaper
    if alive.numel():
        kept_parts.append(alive[_graph_nms(boxes[alive], iou_threshold, None if categories is None else categories[alive])])
    return torch.sort(torch.cat(kept_parts)).values if kept_parts else alive


def _graph_nms(boxes: Tensor, iou_threshold: float, categories: Tensor | None) -> Tensor:
    """Greedy NMS resolved on the sparse suppression graph; returns kept positions (ascending)."""
    num = boxes.shape[0]
    device = boxes.device
    earlier, later = _suppression_edges(boxes, iou_threshold, categories)
    undecided = torch.ones(num, dtype=torch.bool, device=device)
    kept = torch.zeros(num, dtype=torch.bool, device=device)
    while True:
        # an undecided box with an edge from a kept box is suppressed
        hit = torch.zeros(num, dtype=torch.bool, device=device)
        hit[later[kept[earlier]]] = True
        undecided &= ~hit
        # drop settled edges: decided targets, or sources that are no longer candidates
        live = undecided[later] & (undecided[earlier] | kept[earlier])
        earlier, later = earlier[live], later[live]
        # an undecided box whose earlier neighbours are all decided (none kept) is kept
        blocked = torch.zeros(num, dtype=torch.bool, device=device)
        blocked[later[undecided[earlier]]] = True
        newly_kept = undecided & ~blocked
        kept |= newly_kept
        undecided &= ~newly_kept
        if not bool(undecided.any()):
            break
    return torch.nonzero(kept).flatten()


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
    warn_if_slow_fallback(boxes.device)
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
