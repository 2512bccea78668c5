"""DICL similarity and relational KL losses, and the feature fusion."""

from __future__ import annotations

import math

import pytest
import torch

from personsearch.losses import dicl_relation_kl_loss, dicl_similarity_loss, fuse_features

ROI = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
CROP = torch.tensor([[0.6, 0.8], [0.0, 1.0]])


def test_similarity_loss_hand_value() -> None:
    # cosines: (1,0).(0.6,0.8) = 0.6 ; (0,1).(0,1) = 1 -> mean(1 - 0.6, 1 - 1) = 0.2
    assert dicl_similarity_loss(ROI, CROP)["loss_sim"].item() == pytest.approx(0.2, abs=1e-7)


def test_relation_kl_hand_value() -> None:
    # A = f f^T = [[1, 0], [0, 1]] -> each row softmax = (sigmoid(1), sigmoid(-1)) up to order
    # G = g g^T = [[1, 0.8], [0.8, 1]] -> each row = (sigmoid(0.2), sigmoid(-0.2)) up to order
    # (both rows are mirror images, so both rows have the same KL)
    p = 1 / (1 + math.exp(-1.0))     # 0.7310586
    q = 1 / (1 + math.exp(-0.2))     # 0.5498340
    kl_q_p = q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))   # KL(G||A) per row ~ 0.0752556
    kl_p_q = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))   # KL(A||G) per row ~ 0.0697240
    # kl_div 'mean' = sum over the 2x2 elements / 4 = (2 rows * KL_row) / 4
    expected = (2 * kl_q_p + 2 * kl_p_q) / 4
    assert expected == pytest.approx(0.0724898, abs=1e-7)
    assert dicl_relation_kl_loss(ROI, CROP)["loss_kl"].item() == pytest.approx(expected, abs=1e-6)


def test_relation_kl_zero_for_identical_and_grads_both_sides() -> None:
    feats = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    assert dicl_relation_kl_loss(feats, feats.clone())["loss_kl"].item() == pytest.approx(0.0, abs=1e-7)
    roi = ROI.clone().requires_grad_(True)
    crop = CROP.clone().requires_grad_(True)
    dicl_relation_kl_loss(roi, crop)["loss_kl"].backward()
    assert roi.grad.abs().sum() > 0 and crop.grad.abs().sum() > 0   # nothing detached


def test_fuse_not_renormalised() -> None:
    fused = fuse_features(ROI, CROP)
    torch.testing.assert_close(fused, torch.tensor([[0.8, 0.4], [0.0, 1.0]]))
    assert fused[0].norm().item() == pytest.approx(math.sqrt(0.8), abs=1e-6)


def test_empty_and_mismatched() -> None:
    roi = torch.zeros(0, 4, requires_grad=True)
    loss = dicl_similarity_loss(roi, torch.zeros(0, 4))["loss_sim"] + dicl_relation_kl_loss(
        roi, torch.zeros(0, 4)
    )["loss_kl"]
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError):
        dicl_similarity_loss(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError):
        fuse_features(torch.zeros(2, 4), torch.zeros(2, 3))


def test_relation_kl_equals_torch_kl_div_elementwise_mean() -> None:
    # torch kl_div 'mean' (the official reduction) = 'sum' / number of elements (R*R)
    generator = torch.Generator().manual_seed(2)
    roi = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=1)
    crop = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=1)
    log_a = torch.log_softmax(roi @ roi.t(), dim=1)
    log_g = torch.log_softmax(crop @ crop.t(), dim=1)
    kl = torch.nn.functional.kl_div
    expected = (kl(log_a, log_g, reduction="sum", log_target=True) + kl(log_g, log_a, reduction="sum", log_target=True)) / 36
    assert dicl_relation_kl_loss(roi, crop)["loss_kl"].item() == pytest.approx(expected.item(), abs=1e-6)


def test_relation_kl_with_other_processes_adds_columns():
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    f, g = F.normalize(torch.randn(3, 4, generator=generator), dim=1), F.normalize(torch.randn(3, 4, generator=generator), dim=1)
    fe, ge = F.normalize(torch.randn(2, 4, generator=generator), dim=1), F.normalize(torch.randn(2, 4, generator=generator), dim=1)
    out = dicl_relation_kl_loss(f, g, fe, ge)["loss_kl"]
    log_a = F.log_softmax(f @ torch.cat([f, fe]).t(), dim=1)
    log_g = F.log_softmax(g @ torch.cat([g, ge]).t(), dim=1)
    expected = (log_g.exp() * (log_g - log_a)).mean() + (log_a.exp() * (log_a - log_g)).mean()
    torch.testing.assert_close(out, expected)
    assert torch.equal(dicl_relation_kl_loss(f, g, fe[:0], ge[:0])["loss_kl"], dicl_relation_kl_loss(f, g)["loss_kl"])
