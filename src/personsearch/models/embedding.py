"""Norm-Aware Embedding (NAE, SeqNet §1.4 b) and the BN-neck box regressor (§1.4 a).

Shape glossary
--------------
R          RoIs (or crops) in the batch
C4         channels of feat_res4 (1024 for ResNet-50; from the backbone parts)
C5         channels of feat_res5 (2048 for ResNet-50; from the head)
D          embedding dimension (256 by default), split D/2 for feat_res4 and D/2 for feat_res5
feat_res4  [R, C4] global max pool of the RoI map
feat_res5  [R, C5] global max pool after res5
v          [R, D]  concat(BN(Linear(feat_res4)), BN(Linear(feat_res5)))
embeddings [R, D]  v / ||v||   (unit norm)
logits     [R]     person logit = BatchNorm1d(1)(||v||), trained with binary CE

BatchNorm1d needs two or more samples per batch in training mode; for a batch of one RoI in
training mode the BN layers of this file use their running statistics for that call (the
result is then what eval mode gives), so a training step with a single person still works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _batch_norm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """`bn(x)`, but with running statistics when training on a single sample."""
    if bn.training and x.shape[0] <= 1:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


class LinearBN(nn.Module):
    """Linear + BatchNorm1d; weights N(0, 0.01), biases 0 (SeqNet init)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.constant_(self.linear.bias, 0.0)
        nn.init.normal_(self.bn.weight, std=0.01)
        nn.init.constant_(self.bn.bias, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return _batch_norm(self.bn, self.linear(x))


class NormAwareEmbedding(nn.Module):
    """feat_res4 [R, C4], feat_res5 [R, C5] -> (embeddings [R, D] unit norm, logits [R])."""

    def __init__(self, res4_channels: int, res5_channels: int, dim: int = 256) -> None:
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"embedding dimension must be a positive even number, got {dim}")
        self.dim = dim
        self.project_res4 = LinearBN(res4_channels, dim // 2)
        self.project_res5 = LinearBN(res5_channels, dim // 2)
        self.rescaler = nn.BatchNorm1d(1, affine=True)
        nn.init.normal_(self.rescaler.weight, std=0.01)
        nn.init.constant_(self.rescaler.bias, 0.0)

    def forward(self, feat_res4: Tensor, feat_res5: Tensor) -> tuple[Tensor, Tensor]:
        v = torch.cat([self.project_res4(feat_res4), self.project_res5(feat_res5)], dim=1)
        # The norm and division in float32: under bf16 autocast the unit norm stays exact.
        v = v.float()
        norms = v.norm(dim=1, keepdim=True)
        embeddings = v / norms.clamp(min=1e-12)
        logits = _batch_norm(self.rescaler, norms).squeeze(1)
        return embeddings, logits


class BNNeckBoxRegressor(nn.Module):
    """Stage-2 class-specific box regressor: Linear(C5 -> 4 * classes) + BatchNorm1d."""

    def __init__(self, in_channels: int, num_classes: int = 2) -> None:
        super().__init__()
        self.layer = LinearBN(in_channels, 4 * num_classes)

    def forward(self, feat_res5: Tensor) -> Tensor:
        return self.layer(feat_res5)
