"""SSL multi-label loss (Eq. 11) with MMCL options: hand-computed values and gradients."""

from __future__ import annotations

import pytest
import torch

from personsearch.losses import multilabel_loss

# memory slots: m0=(1,0), m1=(0,1), m2=(-1,0), m3=(0.6,0.8)
MEMORY = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
# row 0: f=(1,0) -> logits x = [1, 0, -1, 0.6], positives {0, 3}, negatives {1, 2}
# row 1: f=(0,1) -> logits x = [0, 1, 0, 0.8], positives {1},    negatives {0, 2, 3}
FEATS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TARGETS = torch.tensor([[True, False, False, True], [False, True, False, False]])

# row 0: pos 5/2 * ((1-1)^2 + (0.6-1)^2) = 2.5 * 0.16 = 0.4 ; neg 1/2 * ((0+1)^2 + (-1+1)^2) = 0.5
ROW0 = 0.4 + 0.5
# row 1: pos 5/1 * (1-1)^2 = 0 ; neg 1/3 * ((0+1)^2 + (0+1)^2 + (0.8+1)^2) = (1 + 1 + 3.24)/3
ROW1 = 5.24 / 3


def test_sum_and_mean_reduction() -> None:
    loss_sum = multilabel_loss(MEMORY, FEATS, TARGETS)["loss_multilabel"]
    assert loss_sum.item() == pytest.approx(ROW0 + ROW1, abs=1e-6)
    loss_mean = multilabel_loss(MEMORY, FEATS, TARGETS, reduction="mean")["loss_multilabel"]
    assert loss_mean.item() == pytest.approx((ROW0 + ROW1) / 2, abs=1e-6)


def test_delta_scales_positive_term() -> None:
    # delta 1: row 0 pos = 1/2 * 0.16 = 0.08 -> 0.58 ; row 1 unchanged
    loss = multilabel_loss(MEMORY, FEATS, TARGETS, delta=1.0)["loss_multilabel"]
    assert loss.item() == pytest.approx(0.08 + 0.5 + ROW1, abs=1e-6)


def test_hard_negative_ratio() -> None:
    # neg_ratio 0.5: row 0 keeps floor(0.5*2)=1 negative, the most similar: m1 (x=0 > -1) -> (0+1)^2 = 1
    #                row 1 keeps floor(0.5*3)=1 negative: m3 (x=0.8) -> (1.8)^2 = 3.24
    loss = multilabel_loss(MEMORY, FEATS, TARGETS, neg_ratio=0.5)["loss_multilabel"]
    assert loss.item() == pytest.approx((0.4 + 1.0) + 3.24, abs=1e-6)
    # neg_ratio 0.01: floor(0.02) = 0 -> at least one negative is kept: the same hardest ones
    loss = multilabel_loss(MEMORY, FEATS, TARGETS, neg_ratio=0.01)["loss_multilabel"]
    assert loss.item() == pytest.approx((0.4 + 1.0) + 3.24, abs=1e-6)


def test_gradient_flows_to_feats_only() -> None:
    memory = MEMORY.clone().requires_grad_(True)
    feats = FEATS.clone().requires_grad_(True)
    multilabel_loss(memory, feats, TARGETS)["loss_multilabel"].backward()
    assert memory.grad is None
    # row 0: d/df [2.5 * sum_p (m_p.f - 1)^2] = 2.5 * 2 * (0.6 - 1) * (0.6, 0.8) = (-1.2, -1.6)
    #        d/df [1/2 * sum_v (m_v.f + 1)^2] = (2 * 1 * (0, 1) + 2 * 0 * (-1, 0)) / 2 = (0, 1)
    torch.testing.assert_close(feats.grad[0], torch.tensor([-1.2, -0.6]))
    # row 1: pos term 0 gradient; neg = (2*(0,1)... ) / 3: 2*1*(1,0) + 2*1*(-1,0) + 2*1.8*(0.6,0.8) = (2.16, 2.88) / 3
    torch.testing.assert_close(feats.grad[1], torch.tensor([0.72, 0.96]))


def test_row_without_negatives_or_positives() -> None:
    # all slots positive: only the positive term; no slot positive: only the negative term
    all_pos = torch.ones(1, 4, dtype=torch.bool)
    # f=(1,0): 5/4 * (0 + 1 + 4 + 0.16) = 6.45
    loss = multilabel_loss(MEMORY, FEATS[:1], all_pos)["loss_multilabel"]
    assert loss.item() == pytest.approx(6.45, abs=1e-6)
    # 1/4 * (4 + 1 + 0 + 2.56) = 1.89
    loss = multilabel_loss(MEMORY, FEATS[:1], ~all_pos)["loss_multilabel"]
    assert loss.item() == pytest.approx(1.89, abs=1e-6)
    loss = multilabel_loss(MEMORY, FEATS[:1], all_pos, neg_ratio=0.01)["loss_multilabel"]
    assert loss.item() == pytest.approx(6.45, abs=1e-6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="neg_ratio"):
        multilabel_loss(MEMORY, FEATS, TARGETS, neg_ratio=0.0)
    with pytest.raises(ValueError, match="reduction"):
        multilabel_loss(MEMORY, FEATS, TARGETS, reduction="none")
    with pytest.raises(ValueError, match="bool"):
        multilabel_loss(MEMORY, FEATS, TARGETS.float())
    empty = multilabel_loss(MEMORY, torch.zeros(0, 2), torch.zeros(0, 4, dtype=torch.bool))
    assert empty["loss_multilabel"].item() == 0.0
