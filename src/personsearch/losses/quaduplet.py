"""CGPS "quaduplet" loss (detection context, CGPS §2.3).

Shape glossary
--------------
R       sampled RoIs of the batch
D       embedding dimension
feats   [R, D] unit-norm RoI embeddings
labels  [R] int64: pseudo label (>= 0) of the RoI's assigned GT slot, BACKGROUND (-2) for a
        background RoI; any other negative value (e.g. -1 ignored) takes no part
dist    [R, R] Euclidean distances sqrt(clamp(‖a − b‖², 1e-12))

term 1 (batch-hard triplet among foreground RoIs): for each foreground anchor a,
    d_ap = max dist to foreground RoIs with the same label (itself included),
    d_an = min dist to foreground RoIs with a different label;
    mean_a max(0, d_ap − d_an + margin).
term 2 (background): for each foreground anchor a,
    d_ap' = max dist to any foreground RoI, d_an' = min dist to any background RoI;
    mean_a max(0, d_ap' − d_an' + margin)  (0 when the batch has no background RoI).
loss_quaduplet = term1 + bg_weight · term2, and exactly 0 when fewer than 2 distinct
foreground labels are present.
Cross-process mining (optional ``extra_feats``/``extra_labels``: the other processes' RoIs,
detached): the anchors stay this process's foreground RoIs, the candidates of every max/min
above are this process's RoIs plus the extra ones, as if the global batch were one.

Computed in float32 with autocast off (``personsearch.amp.float32_loss``), whatever the
autocast dtype of the network that produced the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from personsearch.amp import float32_loss
from personsearch.labels import BACKGROUND

__all__ = ["quaduplet_loss", "BACKGROUND"]


@float32_loss
def quaduplet_loss(
    feats: Tensor,
    labels: Tensor,
    margin: float = 0.3,
    bg_weight: float = 0.25,
    extra_feats: Tensor | None = None,
    extra_labels: Tensor | None = None,
) -> dict[str, Tensor]:
    """``extra_feats [E, D]`` / ``extra_labels [E]`` (optional, e.g. the other processes' RoIs,
    detached): more candidates for every hardest positive / negative / background distance;
    the anchors stay the foreground RoIs of ``feats``. Without them the loss is CGPS's."""
    if feats.dim() != 2 or labels.shape != (feats.shape[0],):
        raise ValueError(f"quaduplet_loss: feats must be [R, D] and labels [R], got {tuple(feats.shape)}, "
                         f"{tuple(labels.shape)}")
    labels = labels.to(device=feats.device, dtype=torch.int64)
    foreground = labels >= 0
    background = labels == BACKGROUND
    zero = feats.sum() * 0.0
    if extra_feats is not None and extra_feats.shape[0] > 0:
        extra_labels = extra_labels.to(device=feats.device, dtype=torch.int64)
        pool_feats = torch.cat([feats, extra_feats.detach()])
        pool_labels = torch.cat([labels, extra_labels])
        pool_foreground = pool_labels >= 0
        background = torch.cat([background, extra_labels == BACKGROUND])
        feats_all = pool_feats
    else:
        pool_labels, pool_foreground, feats_all = labels, foreground, feats
    if torch.unique(pool_labels[pool_foreground]).numel() < 2:
        return {"loss_quaduplet": zero}
    if feats_all is not feats and not bool(foreground.any()):
        return {"loss_quaduplet": zero}  # no anchor here (the candidates are elsewhere)
    fg_feats = feats[foreground]  # anchors: this process's foreground RoIs
    fg_labels = labels[foreground]
    candidates = feats_all[pool_foreground]
    candidate_labels = pool_labels[pool_foreground]
    squared = (fg_feats[:, None, :] - candidates[None, :, :]).pow(2).sum(dim=2)
    fg_dist = squared.clamp(min=1e-12).sqrt()  # [F, F (+ extra foreground)]
    same = fg_labels[:, None] == candidate_labels[None, :]
    hardest_positive = torch.where(same, fg_dist, torch.full_like(fg_dist, float("-inf"))).max(dim=1).values
    hardest_negative = torch.where(same, torch.full_like(fg_dist, float("inf")), fg_dist).min(dim=1).values
    term_identity = torch.relu(hardest_positive - hardest_negative + margin).mean()

    if not bool(background.any()):
        return {"loss_quaduplet": term_identity}
    bg_feats = feats_all[background]
    bg_dist = (fg_feats[:, None, :] - bg_feats[None, :, :]).pow(2).sum(dim=2).clamp(min=1e-12).sqrt()
    farthest_foreground = fg_dist.max(dim=1).values
    nearest_background = bg_dist.min(dim=1).values
    term_background = torch.relu(farthest_foreground - nearest_background + margin).mean()
    return {"loss_quaduplet": term_identity + bg_weight * term_background}
