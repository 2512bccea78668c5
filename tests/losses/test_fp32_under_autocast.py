"""Loss heads compute in float32 under autocast: with bf16 autocast on (CPU) and bf16 inputs
(what the network hands them under autocast), every loss equals the float32 computation on
the same values to float32 tolerance, and its gradient reaches the bf16 input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from personsearch.losses import (cluster_contrast_loss, dicl_relation_kl_loss, dicl_similarity_loss,
                                 multilabel_loss, quaduplet_loss, scale_invariant_loss)
from personsearch.losses.oim import oim_loss


def _unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=-1)


def _cases():
    torch.manual_seed(0)
    memory = _unit(40, 16)
    labels = torch.arange(40) % 7
    targets = torch.rand(6, 40) < 0.2
    ids = torch.tensor([0, 3, -1, 5, -2, 1])
    roi_labels = torch.tensor([0, 0, 1, 2, -2, 1])
    image_ids = torch.tensor([0, 0, 0, 1, 1, 1])
    return {
        "oim": (lambda f: oim_loss(f, ids, memory[:8], memory[8:20], 30.0), (6, 16)),
        "cluster": (lambda f: cluster_contrast_loss(f, torch.tensor([0, 5, 9, 11, 20, 33]), memory, labels), (6, 16)),
        "multilabel": (lambda f: multilabel_loss(memory, f, targets, 5.0, 0.5, "mean"), (6, 16)),
        "scale": (lambda f: scale_invariant_loss(f[:, 0], f[:, 1:], image_ids), (6, 5, 16)),
        "sim": (lambda f: dicl_similarity_loss(f[0], f[1]), (2, 6, 16)),
        "kl": (lambda f: dicl_relation_kl_loss(f[0], f[1]), (2, 6, 16)),
        "quaduplet": (lambda f: quaduplet_loss(f, roi_labels), (6, 16)),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_loss_is_float32_under_bf16_autocast(name):
    loss_fn, shape = _cases()[name]
    feats = _unit(*shape).bfloat16().requires_grad_()
    (reference,) = loss_fn(feats.detach().float()).values()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (value,) = loss_fn(feats).values()
    assert value.dtype == torch.float32
    assert torch.allclose(value, reference, rtol=1e-6, atol=1e-6), (value.item(), reference.item())
    value.backward()
    assert feats.grad is not None and feats.grad.dtype == torch.bfloat16


def test_bf16_logits_would_be_quantised():
    """Why: a logit of about 30 in bf16 moves in steps of 0.125 (what OIM saw before)."""
    feats, bank = _unit(4, 16), _unit(10, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = 30.0 * feats @ bank.t()
    assert lowered.dtype == torch.bfloat16
    assert not torch.allclose(lowered.float(), 30.0 * feats @ bank.t(), atol=1e-3)
