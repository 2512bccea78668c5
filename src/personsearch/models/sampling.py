"""IoU matching and balanced positive/negative sampling (RPN anchors and RoIs).

Shape glossary
--------------
G        ground-truth boxes of one image (may be 0: an image without persons)
N        candidates of one image (anchors or RoIs)
iou      [G, N] IoU between every GT box and every candidate
matches  [N] int64: index of the matched GT box (>= 0), BELOW_LOW (-1) for negatives,
         BETWEEN (-2) for candidates between the two thresholds (ignored)
labels   [N] int64: 1 positive, 0 negative, -1 ignored
pos, neg [N] bool masks of the sampled positives / negatives
"""

from __future__ import annotations

import torch
from torch import Tensor

BELOW_LOW = -1
BETWEEN = -2


class Matcher:
    """Assign each candidate to its best GT box by IoU.

    IoU >= high -> that GT; IoU < low -> BELOW_LOW (negative); in between -> BETWEEN (ignored).
    With `allow_low_quality`, every GT box also keeps the candidates that have its highest IoU
    (ties included) even below `high`, as torchvision's RPN does; a GT box overlapping no
    candidate at all (highest IoU 0) gets none.
    """

    def __init__(self, high: float, low: float, allow_low_quality: bool = False) -> None:
        if low > high:
            raise ValueError(f"matcher low threshold {low} is above the high threshold {high}")
        self.high = float(high)
        self.low = float(low)
        self.allow_low_quality = allow_low_quality

    def __call__(self, iou: Tensor) -> Tensor:
        num_candidates = iou.shape[1]
        if iou.shape[0] == 0:
            return torch.full((num_candidates,), BELOW_LOW, dtype=torch.int64, device=iou.device)
        best_iou, matches = iou.max(dim=0)
        original = matches.clone()
        matches[best_iou < self.high] = BETWEEN
        matches[best_iou < self.low] = BELOW_LOW
        if self.allow_low_quality:
            best_per_gt = iou.max(dim=1).values
            is_best = (iou == best_per_gt[:, None]) & (best_per_gt[:, None] > 0)
            cand_idx = torch.nonzero(is_best.any(dim=0)).flatten()
            matches[cand_idx] = original[cand_idx]
        return matches


def labels_from_matches(matches: Tensor) -> Tensor:
    """[N] labels 1 (matched), 0 (below low), -1 (between, ignored)."""
    labels = torch.ones_like(matches)
    labels[matches == BELOW_LOW] = 0
    labels[matches == BETWEEN] = -1
    return labels


class BalancedSampler:
    """Sample at most `batch_size` candidates, at most `positive_fraction` of them positive;
    negatives fill the rest (as torchvision's BalancedPositiveNegativeSampler). Uses the
    global torch RNG (seed it for reproducibility)."""

    def __init__(self, batch_size: int, positive_fraction: float) -> None:
        if batch_size <= 0:
            raise ValueError(f"sampler batch size must be positive, got {batch_size}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size = int(batch_size)
        self.positive_fraction = float(positive_fraction)

    def __call__(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        positive = torch.nonzero(labels >= 1).flatten()
        negative = torch.nonzero(labels == 0).flatten()
        num_pos = min(positive.numel(), int(self.batch_size * self.positive_fraction))
        num_neg = min(negative.numel(), self.batch_size - num_pos)
        pick_pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
        pick_neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
        pos_mask = torch.zeros_like(labels, dtype=torch.bool)
        neg_mask = torch.zeros_like(labels, dtype=torch.bool)
        pos_mask[pick_pos] = True
        neg_mask[pick_neg] = True
        return pos_mask, neg_mask
