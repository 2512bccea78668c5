"""cluster_contrast_loss: hand-computed values, hard-negative selection, gradient routing."""

from __future__ import annotations

import math

import torch

from personsearch.losses.cluster_contrast import cluster_contrast_loss

# memory rows and labels: class 0 = {(1,0), (0,1)}, class 1 = {(0.6,0.8)}, class 2 = {(-1,0)}
MEMORY = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, 2])


def test_single_roi_hard_negative_selection():
    # f = (1,0), slot 0 -> y = 0. <f, M> = [1, 0, 0.6, -1]; class means [0.5, 0.6, -1];
    # with tau = 0.5 logits [1.0, 1.2, -2.0], e = [2.7182818, 3.3201169, 0.1353353].
    # negatives {1: 3.3201169, 2: 0.1353353}, q = [0.96083, 0.03917], cumsum [0.96083, 1.0];
    # closest to 0.6 is rank 0 -> keep only class 1:
    # p = 2.7182818 / (2.7182818 + 3.3201169 + 1e-6) = 0.4501659, loss = -log(p + 1e-6) = 0.7981368
    feats = torch.tensor([[1.0, 0.0]])
    out = cluster_contrast_loss(feats, torch.tensor([0]), MEMORY, LABELS, temperature=0.5, top_percent=0.6)
    assert set(out) == {"loss_cluster"}
    assert math.isclose(out["loss_cluster"].item(), 0.7981368, abs_tol=1e-5)
    # top_percent 0.99: cumsum 1.0 is closest -> keep both negatives:
    # p = 2.7182818 / (2.7182818 + 3.3201169 + 0.1353353 + 1e-6) = 0.4402978, loss = 0.8203017
    out = cluster_contrast_loss(feats, torch.tensor([0]), MEMORY, LABELS, temperature=0.5, top_percent=0.99)
    assert math.isclose(out["loss_cluster"].item(), 0.8203017, abs_tol=1e-5)


def test_batch_mean_and_gradients_reach_feats_only():
    # second RoI f = (0,1), slot 3 -> y = 2 (a singleton class: instance-level contrast).
    # <f, M> = [0, 1, 0.8, 0]; class means [0.5, 0.8, 0]; logits/0.5 [1, 1.6, 0];
    # e = [2.7182818, 4.9530324, 1]; negatives q sorted [0.64566, 0.35434] -> rank 0 closest to 0.6
    # -> keep class 1 only: p = 1 / (1 + 4.9530324 + 1e-6) = 0.1679816, loss = 1.7838950.
    # mean with the first RoI (0.7981368): 1.2910159
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    memory = MEMORY.clone().requires_grad_(True)
    out = cluster_contrast_loss(feats, torch.tensor([0, 3]), memory, LABELS, temperature=0.5, top_percent=0.6)
    assert math.isclose(out["loss_cluster"].item(), 1.2910159, abs_tol=1e-5)
    out["loss_cluster"].backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    assert memory.grad is None


def test_empty_class_ids_are_ignored():
    # label 1 unused: the classes are {0: rows 0,1}, {2: row 2}, {3: row 3} -> same value as above
    labels = torch.tensor([0, 0, 2, 3])
    feats = torch.tensor([[1.0, 0.0]])
    out = cluster_contrast_loss(feats, torch.tensor([0]), MEMORY, labels, temperature=0.5, top_percent=0.6)
    assert math.isclose(out["loss_cluster"].item(), 0.7981368, abs_tol=1e-5)
