"""Cluster-level contrastive loss against the instance memory, with hard-negative selection
(CGPS §2.2, "memory context").

Shape glossary
--------------
P              positive RoIs in the batch (RoIs assigned to a GT box)
D              embedding dimension
N              memory slots (training GT boxes)
C              pseudo classes = memory_labels.max() + 1 (clusters and singletons)
feats          [P, D] unit-norm RoI embeddings (gradient flows here only)
slots          [P]    int64 memory slot of each RoI's GT box; its class is memory_labels[slot]
memory_feats   [N, D] unit memory rows (read as constants)
memory_labels  [N]    int64 pseudo label of every slot, values in 0..C-1
logits         [P, C] = mean_{j: label j = c} <f, M[j]> / temperature  (similarity to the
                       un-normalised class centroid; classes without members are ignored)

For each RoI with class y: e_c = exp(logit_c); the negatives c != y are sorted by e
descending, q = e_neg / sum(e_neg), and the rank r whose cumulative sum of q is closest to
``top_percent`` is found (first such rank on ties); the negatives with e >= the (r+1)-th
largest negative e are kept ("hard negatives carrying ~top_percent of the negative mass"), the
rest dropped. p_y = e_y / (e_y + sum kept e_neg + 1e-6); loss = mean over RoIs of
−log(p_y + 1e-6). The selection itself carries no gradient.

Computed in float32 with autocast off (``personsearch.amp.float32_loss``), whatever the
autocast dtype of the network that produced the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from personsearch.amp import float32_loss

__all__ = ["cluster_contrast_loss"]


@float32_loss
def cluster_contrast_loss(
    feats: Tensor,
    slots: Tensor,
    memory_feats: Tensor,
    memory_labels: Tensor,
    temperature: float = 0.05,
    top_percent: float = 0.6,
) -> dict[str, Tensor]:
    if feats.dim() != 2 or memory_feats.dim() != 2 or feats.shape[1] != memory_feats.shape[1]:
        raise ValueError(
            f"cluster_contrast_loss: feats {tuple(feats.shape)} and memory_feats "
            f"{tuple(memory_feats.shape)} must be [P, D] and [N, D]"
        )
    if slots.shape != (feats.shape[0],) or memory_labels.shape != (memory_feats.shape[0],):
        raise ValueError("cluster_contrast_loss: slots must be [P] and memory_labels [N]")
    if feats.shape[0] == 0:
        return {"loss_cluster": feats.sum() * 0.0}
    memory_feats = memory_feats.detach().to(feats.dtype)
    memory_labels = memory_labels.detach().to(device=feats.device, dtype=torch.int64)
    slots = slots.to(device=feats.device, dtype=torch.int64)
    num_classes = int(memory_labels.max()) + 1

    similarities = feats @ memory_feats.t()  # [P, N]
    class_sums = similarities.new_zeros(feats.shape[0], num_classes).index_add(1, memory_labels, similarities)
    class_sizes = torch.bincount(memory_labels, minlength=num_classes).to(feats.dtype)
    present = class_sizes > 0
    logits = class_sums / class_sizes.clamp(min=1.0) / temperature  # [P, C]
    exp_logits = torch.exp(logits) * present.to(feats.dtype)

    targets = memory_labels[slots]  # [P]
    rows = torch.arange(feats.shape[0], device=feats.device)
    with torch.no_grad():
        negatives = exp_logits.detach().clone()
        negatives[rows, targets] = 0.0
        sorted_neg, _ = torch.sort(negatives, dim=1, descending=True)
        mass = sorted_neg / sorted_neg.sum(dim=1, keepdim=True).clamp(min=torch.finfo(feats.dtype).tiny)
        closest_rank = torch.argmin((torch.cumsum(mass, dim=1) - top_percent).abs(), dim=1)
        threshold = sorted_neg[rows, closest_rank]
        keep = (negatives >= threshold[:, None]) & (negatives > 0)
        keep[rows, targets] = False
    positive = exp_logits[rows, targets]
    denominator = positive + (exp_logits * keep.to(feats.dtype)).sum(dim=1) + 1e-6
    probability = positive / denominator
    return {"loss_cluster": -torch.log(probability + 1e-6).mean()}
