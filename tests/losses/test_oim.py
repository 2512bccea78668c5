"""OIM loss hand-computed on a 2-identity toy, and the explicit memory update."""

import math

import pytest
import torch

from personsearch.losses.oim import BACKGROUND, UNLABELED, OIMMemory, oim_loss


def test_oim_loss_two_identities_hand_computed():
    lut = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue = torch.tensor([[-1.0, 0.0]])
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, -1.0]])
    ids = torch.tensor([0, 1, UNLABELED, BACKGROUND])
    scale = 2.0
    # row 0: logits [2, 0, -2], target 0;  row 1: logits [1.2, 1.6, -1.2], target 1
    l0 = -2 + math.log(math.exp(2) + math.exp(0) + math.exp(-2))
    l1 = -1.6 + math.log(math.exp(1.2) + math.exp(1.6) + math.exp(-1.2))
    out = oim_loss(feats, ids, lut, queue, scale=scale)
    assert set(out) == {"loss_oim"}
    assert out["loss_oim"].item() == pytest.approx((l0 + l1) / 2, rel=1e-5)


def test_oim_loss_without_labelled_rois_is_zero_and_differentiable():
    feats = torch.nn.functional.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    out = oim_loss(feats, torch.tensor([UNLABELED, BACKGROUND, UNLABELED]), torch.zeros(2, 4), torch.zeros(5, 4))
    assert out["loss_oim"].item() == 0.0
    out["loss_oim"].backward()
    assert torch.all(feats.grad == 0)


def test_oim_loss_gradient_does_not_touch_memory():
    memory = OIMMemory(num_ids=2, queue_size=1, dim=2)
    memory.lut.copy_(torch.eye(2))
    feats = torch.tensor([[0.6, 0.8]], requires_grad=True)
    loss = memory.loss(feats, torch.tensor([0]), scale=1.0)["loss_oim"]
    loss.backward()
    assert feats.grad is not None and torch.equal(memory.lut, torch.eye(2))


def test_oim_memory_update_momentum_and_circular_queue():
    memory = OIMMemory(num_ids=2, queue_size=2, dim=2, momentum=0.5)
    memory.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    feats = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [-0.6, 0.8], [0.0, -1.0]])
    ids = torch.tensor([0, UNLABELED, BACKGROUND, UNLABELED, UNLABELED])
    memory.update(feats, ids)
    s = 1 / math.sqrt(2)
    assert torch.allclose(memory.lut[0], torch.tensor([s, s]))
    assert torch.equal(memory.lut[1], torch.tensor([0.0, 1.0]))
    # three unlabelled features into a queue of 2: the third overwrites slot 0
    assert torch.equal(memory.queue, torch.tensor([[0.0, -1.0], [-0.6, 0.8]]))
    assert memory.queue_head == 1
    state = memory.state_dict()
    other = OIMMemory(num_ids=2, queue_size=2, dim=2)
    other.load_state_dict(state)
    assert torch.equal(other.lut, memory.lut) and other.queue_head == 1


def test_oim_rejects_out_of_range_id():
    with pytest.raises(ValueError, match="out of range"):
        oim_loss(torch.ones(1, 2), torch.tensor([5]), torch.zeros(2, 2), torch.zeros(1, 2))
