"""Detection losses: hand-computed values, zero box loss without positives."""

import math

import pytest
import torch
import torch.nn.functional as F

from personsearch.losses.detection import fast_rcnn_loss, reid_head_loss, rpn_loss


def test_rpn_loss_hand_computed():
    objectness = torch.tensor([0.0, 2.0])
    labels = torch.tensor([1, 0])
    pred = torch.tensor([[0.0, 0.0, 0.0, 1.0], [5.0, 5.0, 5.0, 5.0]])
    target = torch.zeros(2, 4)
    out = rpn_loss(objectness, pred, labels, target)
    bce = (math.log(2) + (2 + math.log(1 + math.exp(-2)))) / 2
    assert out["loss_rpn_objectness"].item() == pytest.approx(bce, rel=1e-5)
    # |1| >= beta -> 1 - beta/2; negatives contribute nothing; divided by 2 sampled
    assert out["loss_rpn_box"].item() == pytest.approx((1 - 1 / 18) / 2, rel=1e-5)


def test_fast_rcnn_loss_uses_person_deltas_and_sampled_count():
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0], [0.0, 3.0]])
    labels = torch.tensor([1, 0, 1])
    box_regression = torch.zeros(3, 8)
    box_regression[0, 4] = 0.05  # below beta: 0.5 * x^2 / beta
    box_regression[2, 0] = 9.0  # background-class deltas are never penalised
    out = fast_rcnn_loss(logits, box_regression, labels, torch.zeros(3, 4))
    assert out["loss_det_cls"].item() == pytest.approx(F.cross_entropy(logits, labels).item())
    assert out["loss_det_box"].item() == pytest.approx(0.5 * 0.05**2 * 9 / 3, rel=1e-5)


def test_losses_without_persons_are_finite_and_box_terms_zero():
    logits = torch.randn(4, 2, requires_grad=True)
    box_regression = torch.randn(4, 8, requires_grad=True)
    labels = torch.zeros(4, dtype=torch.int64)
    out = {**fast_rcnn_loss(logits, box_regression, labels, torch.zeros(4, 4)),
           **reid_head_loss(torch.randn(4, requires_grad=True), box_regression, labels, torch.zeros(4, 4))}
    assert out["loss_det_box"].item() == 0.0 and out["loss_reid_box"].item() == 0.0
    assert all(torch.isfinite(v) for v in out.values())
    sum(out.values()).backward()
    assert torch.all(box_regression.grad == 0)


def test_losses_with_nothing_sampled_are_zero():
    out = rpn_loss(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    assert set(out) == {"loss_rpn_objectness", "loss_rpn_box"}
    assert all(v.item() == 0.0 for v in out.values())


@pytest.mark.parametrize("box_loss, expected", [
    # deltas 0.05 and 2.0 on one positive, 4 sampled candidates
    ("l1", (0.05 + 2.0) / 4),
    ("smooth_l1", (0.5 * 0.05**2 + (2.0 - 0.5)) / 4),  # beta 1: quadratic below 1
    ("smooth_l1_beta_1_9", (0.5 * 0.05**2 * 9 + (2.0 - 1 / 18)) / 4),
])
def test_box_loss_setting_hand_computed(box_loss, expected):
    labels = torch.tensor([1, 0, 0, 0])
    pred = torch.zeros(4, 4)
    pred[0, 0], pred[0, 3] = 0.05, 2.0
    pred[1] = 7.0  # a negative: never penalised
    assert rpn_loss(torch.zeros(4), pred, labels, torch.zeros(4, 4), box_loss=box_loss)["loss_rpn_box"].item() == pytest.approx(expected, rel=1e-5)
    regression = torch.cat([torch.full((4, 4), 9.0), pred], dim=1)
    assert fast_rcnn_loss(torch.zeros(4, 2), regression, labels, torch.zeros(4, 4), box_loss=box_loss)["loss_det_box"].item() == pytest.approx(expected, rel=1e-5)
    assert reid_head_loss(torch.zeros(4), regression, labels, torch.zeros(4, 4), box_loss=box_loss)["loss_reid_box"].item() == pytest.approx(expected, rel=1e-5)


def test_unknown_box_loss_is_an_error_and_names_match_config():
    import typing

    from personsearch.config import BoxLoss
    from personsearch.losses.detection import BOX_LOSSES

    assert typing.get_args(BoxLoss) == BOX_LOSSES
    with pytest.raises(ValueError, match="box loss must be one of l1, smooth_l1, smooth_l1_beta_1_9; got 'l2'"):
        rpn_loss(torch.zeros(1), torch.zeros(1, 4), torch.ones(1, dtype=torch.int64), torch.zeros(1, 4), box_loss="l2")
