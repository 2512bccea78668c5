"""quaduplet_loss: a hand-computed case, the background term, the < 2 labels rule."""

from __future__ import annotations

import math

import pytest
import torch

from personsearch.losses.quaduplet import quaduplet_loss

# a=(1,0) label 0, b=(0.8,0.6) label 0, c=(0,1) label 1, d=(-1,0) background (-2)
FEATS = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, -2])


def test_hand_computed_value():
    # distances: ab = sqrt(0.4) = 0.6324555, ac = sqrt(2), bc = sqrt(0.8) = 0.8944272,
    #            ad = 2, bd = sqrt(3.6) = 1.8973666, cd = sqrt(2)
    # term 1: a: max(ab) - ac + 0.3 < 0 -> 0; b: ab - bc + 0.3 = 0.0380283; c: 1e-6 - bc + 0.3 < 0
    #         -> 0.0380283 / 3 = 0.0126761
    # term 2: a: max(ab, ac) - ad + 0.3 < 0; b: max(ba, bc) - bd + 0.3 < 0;
    #         c: max(ca, cb) - cd + 0.3 = sqrt(2) - sqrt(2) + 0.3 = 0.3 -> 0.3 / 3 = 0.1
    # total = 0.0126761 + 0.25 * 0.1 = 0.0376761
    feats = FEATS.clone().requires_grad_(True)
    out = quaduplet_loss(feats, LABELS)
    assert set(out) == {"loss_quaduplet"}
    expected = (math.sqrt(0.4) - math.sqrt(0.8) + 0.3) / 3 + 0.25 * 0.1
    assert math.isclose(out["loss_quaduplet"].item(), expected, abs_tol=1e-6)
    out["loss_quaduplet"].backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_without_background_only_identity_term():
    out = quaduplet_loss(FEATS[:3], LABELS[:3])
    assert math.isclose(out["loss_quaduplet"].item(), (math.sqrt(0.4) - math.sqrt(0.8) + 0.3) / 3, abs_tol=1e-6)


def test_fewer_than_two_foreground_labels_is_zero():
    feats = FEATS.clone().requires_grad_(True)
    out = quaduplet_loss(feats, torch.tensor([0, 0, -2, -2]))
    assert out["loss_quaduplet"].item() == 0.0
    out["loss_quaduplet"].backward()  # still part of the graph
    assert quaduplet_loss(FEATS, torch.tensor([-2, -2, -2, -2]))["loss_quaduplet"].item() == 0.0


def test_extra_candidates_from_other_processes_hand_computed():
    """1-D features: anchors 0 (label 0) and 1 (label 1); another process holds 0.2 (label 1).
    Alone the batch is easy (loss 0); with the extra candidate, anchor 0's hardest negative is
    0.2 away and anchor 1's hardest positive 0.8 away: mean(0.3 - 0.2 + 1e-6, 0.8 - 1 + 0.3)."""
    feats = torch.tensor([[0.0], [1.0]], requires_grad=True)
    labels = torch.tensor([0, 1])
    alone = quaduplet_loss(feats, labels, margin=0.3)["loss_quaduplet"]
    assert alone.item() == 0.0
    mined = quaduplet_loss(feats, labels, margin=0.3, extra_feats=torch.tensor([[0.2]]),
                           extra_labels=torch.tensor([1]))["loss_quaduplet"]
    assert mined.item() == pytest.approx(((0.3 - 0.2 + 1e-6) + 0.1) / 2, abs=1e-6)
    mined.backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    empty = quaduplet_loss(feats, labels, 0.3, 0.25, torch.zeros(0, 1), torch.zeros(0, dtype=torch.long))
    assert torch.equal(empty["loss_quaduplet"], alone)
