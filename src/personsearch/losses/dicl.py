"""DICL intra-image contrast losses (docs/methods.md §4.4 items 1-2) and the feature fusion.

Shape glossary
--------------
R      number of positive scene RoIs of the batch
D      embedding dimension (256)
roi_feats           float [R, D]  scene-branch features f_r of the positive RoIs (unit norm)
crop_feats_per_roi  float [R, D]  crop-branch feature g_{k(r)} of the GT each RoI is assigned
                                  to (rows repeat when several RoIs share a GT; unit norm)

loss_sim = mean_r (1 - f_r . g_{k(r)})                         (SIC "many-to-one", weight 1)
loss_kl  = KL(G || A) + KL(A || G), with A = f f^T, G = g g^T, both row-wise log-softmaxed,
           each KL computed as torch ``kl_div(log_target=True)`` with its default 'mean'
           reduction, i.e. averaged over all R*R matrix elements (as the official code);
           no side is detached. The caller applies the weight (0.1 in DICL).
fuse_features(f, g) = (f + g) / 2, NOT re-normalised (DICL training and inference).

Computed in float32 with autocast off (``personsearch.amp.float32_loss``), whatever the
autocast dtype of the network that produced the inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from personsearch.amp import float32_loss

__all__ = ["dicl_similarity_loss", "dicl_relation_kl_loss", "fuse_features"]


def _check_pair(roi_feats: Tensor, crop_feats_per_roi: Tensor) -> None:
    if roi_feats.dim() != 2 or roi_feats.shape != crop_feats_per_roi.shape:
        raise ValueError(
            "roi_feats and crop_feats_per_roi must both be [R, D] with the same shape, got "
            f"{tuple(roi_feats.shape)} and {tuple(crop_feats_per_roi.shape)}"
        )


def _zero(roi_feats: Tensor, crop_feats_per_roi: Tensor) -> Tensor:
    return roi_feats.sum() * 0.0 + crop_feats_per_roi.sum() * 0.0


@float32_loss
def dicl_similarity_loss(roi_feats: Tensor, crop_feats_per_roi: Tensor) -> dict[str, Tensor]:
    """``{"loss_sim": mean over RoIs of (1 - f_r . g_k(r))}``; 0 (graph kept) when R = 0."""
    _check_pair(roi_feats, crop_feats_per_roi)
    if roi_feats.shape[0] == 0:
        return {"loss_sim": _zero(roi_feats, crop_feats_per_roi)}
    cosine = (roi_feats * crop_feats_per_roi).sum(dim=1)
    return {"loss_sim": (1.0 - cosine).mean()}


@float32_loss
def dicl_relation_kl_loss(roi_feats: Tensor, crop_feats_per_roi: Tensor,
                          extra_roi_feats: Tensor | None = None,
                          extra_crop_feats: Tensor | None = None) -> dict[str, Tensor]:
    """``{"loss_kl": KL(G||A) + KL(A||G)}`` on the row-softmaxed relation matrices.

    Optional ``extra_*`` [E, D] (the other processes' pairs, detached) add columns: A = f
    [f; f_extra]^T, G = g [g; g_extra]^T, the relation over the global batch."""
    _check_pair(roi_feats, crop_feats_per_roi)
    if roi_feats.shape[0] == 0:
        return {"loss_kl": _zero(roi_feats, crop_feats_per_roi)}
    roi_keys, crop_keys = roi_feats, crop_feats_per_roi
    if extra_roi_feats is not None and extra_roi_feats.shape[0] > 0:
        _check_pair(extra_roi_feats, extra_crop_feats)
        roi_keys = torch.cat([roi_feats, extra_roi_feats.detach()])
        crop_keys = torch.cat([crop_feats_per_roi, extra_crop_feats.detach()])
    log_roi_relation = F.log_softmax(roi_feats @ roi_keys.t(), dim=1)                      # log A
    log_crop_relation = F.log_softmax(crop_feats_per_roi @ crop_keys.t(), dim=1)           # log G
    kl_crop_to_roi = _kl_elementwise_mean(log_crop_relation, log_roi_relation)  # KL(G || A)
    kl_roi_to_crop = _kl_elementwise_mean(log_roi_relation, log_crop_relation)  # KL(A || G)
    return {"loss_kl": kl_crop_to_roi + kl_roi_to_crop}


def _kl_elementwise_mean(log_target: Tensor, log_input: Tensor) -> Tensor:
    """KL(target || input) averaged over ALL elements: exactly torch
    ``F.kl_div(log_input, log_target, log_target=True)`` with its 'mean' reduction, written
    out because torch deprecates that reduction's meaning (it will become 'batchmean')."""
    return (log_target.exp() * (log_target - log_input)).mean()


def fuse_features(scene_feats: Tensor, crop_feats: Tensor) -> Tensor:
    """DICL fused embedding ``(scene + crop) / 2``, deliberately not re-normalised."""
    if scene_feats.shape != crop_feats.shape:
        raise ValueError(
            f"scene and crop features must have the same shape, got {tuple(scene_feats.shape)} "
            f"and {tuple(crop_feats.shape)}"
        )
    return (scene_feats + crop_feats) / 2.0
