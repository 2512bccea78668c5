"""SSL multi-label loss (docs/methods.md §3.6; arXiv v1 Eq. 11, ICCV Eq. 10); MMCL-style options.

Shape glossary
--------------
B      number of batch instances (rows)
N      number of memory slots
D      embedding dimension
memory   float [N, D]  memory bank M* (M_I or M_M); used detached, no gradient
feats    float [B, D]  batch features f* (f_i or f_i^h); receive the gradient
targets  bool  [B, N]  Y: True = positive set P_i, False = negative set N_i

For row i, with logits x_iv = M*[v] . f_i:

    L_i = delta/|P_i| * sum_{p in P_i} (x_ip - 1)^2 + 1/|N_i| * sum_{v in N_i'} (x_iv + 1)^2

N_i' = N_i when ``neg_ratio == 1`` (paper text); otherwise only the hardest negatives are
kept, MMCL style: the max(1, floor(neg_ratio * |N_i|)) negatives of highest logit, and the
average runs over those (|N_i'| in the denominator). A row without positives (or without
negatives) has no positive (negative) term. ``reduction="sum"`` sums L_i over the batch (the
paper), ``"mean"`` averages over the batch (MMCL).

Computed in float32 with autocast off (``personsearch.amp.float32_loss``), whatever the
autocast dtype of the network that produced the inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from personsearch.amp import float32_loss

__all__ = ["multilabel_loss"]


def _hard_negative_mask(logits: Tensor, negatives: Tensor, neg_ratio: float) -> Tensor:
    """Per row, keep the max(1, floor(neg_ratio * n_neg)) negatives with the largest logit."""
    num_negatives = negatives.sum(dim=1)                                 # [B]
    keep_count = torch.floor(num_negatives.to(torch.float64) * neg_ratio).to(torch.int64)
    keep_count = torch.minimum(keep_count.clamp_min(1), num_negatives)   # 0 when no negatives
    max_keep = int(keep_count.max()) if keep_count.numel() else 0
    keep = torch.zeros_like(negatives)
    if max_keep == 0:
        return keep
    ranked = logits.detach().masked_fill(~negatives, float("-inf"))
    top_index = ranked.topk(max_keep, dim=1).indices                     # [B, max_keep]
    within = torch.arange(max_keep, device=logits.device)[None, :] < keep_count[:, None]
    keep.scatter_(1, top_index, within)
    return keep & negatives


@float32_loss
def multilabel_loss(
    memory: Tensor,
    feats: Tensor,
    targets: Tensor,
    delta: float = 5.0,
    neg_ratio: float = 1.0,
    reduction: str = "sum",
) -> dict[str, Tensor]:
    """Multi-label loss ``{"loss_multilabel": scalar}`` (see module docstring)."""
    if feats.dim() != 2 or memory.dim() != 2 or memory.shape[1] != feats.shape[1]:
        raise ValueError(
            f"memory must be [N, D] and feats [B, D] with the same D, got {tuple(memory.shape)} "
            f"and {tuple(feats.shape)}"
        )
    if targets.shape != (feats.shape[0], memory.shape[0]) or targets.dtype != torch.bool:
        raise ValueError(
            f"targets must be a bool tensor [B, N] = [{feats.shape[0]}, {memory.shape[0]}], "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    if not 0.0 < neg_ratio <= 1.0 or math.isnan(neg_ratio):
        raise ValueError(f"neg_ratio must be in (0, 1], got {neg_ratio}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if feats.shape[0] == 0:
        return {"loss_multilabel": feats.sum() * 0.0}

    logits = feats @ memory.detach().t()                                 # [B, N]
    positives = targets
    negatives = ~targets
    if neg_ratio < 1.0:
        negatives = _hard_negative_mask(logits, negatives, neg_ratio)

    zero = logits.new_zeros(())
    positive_sq = torch.where(positives, (logits - 1.0).pow(2), zero)
    negative_sq = torch.where(negatives, (logits + 1.0).pow(2), zero)
    num_pos = positives.sum(dim=1).clamp_min(1).to(logits.dtype)
    num_neg = negatives.sum(dim=1).clamp_min(1).to(logits.dtype)
    per_row = delta * positive_sq.sum(dim=1) / num_pos + negative_sq.sum(dim=1) / num_neg
    loss = per_row.sum() if reduction == "sum" else per_row.mean()
    return {"loss_multilabel": loss}
