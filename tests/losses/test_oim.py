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


def test_oim_vectorised_update_hand_computed_repeats_and_queue_wrap():
    """Repeated ids are folded in RoI order and a queue overflow keeps the last features:
    hand-computed against the sequential definition."""
    memory = OIMMemory(num_ids=2, queue_size=2, dim=2, momentum=0.5)
    memory.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    memory.queue_head = 1
    feats = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [-0.6, 0.8], [0.0, -1.0]])
    ids = torch.tensor([0, 0, UNLABELED, UNLABELED, BACKGROUND, UNLABELED])
    memory.update(feats, ids)
    # id 0: (1,0) -> normalise(0.5*(1,0) + 0.5*(0,1)) = (s, s) -> normalise(0.5*(s,s) + 0.5*(0,1))
    s = 1 / math.sqrt(2)
    row = torch.tensor([0.5 * s, 0.5 * s + 0.5])
    assert torch.allclose(memory.lut[0], row / row.norm(), atol=1e-7)
    assert torch.equal(memory.lut[1], torch.tensor([0.0, 1.0]))
    # queue head 1: (1,0) -> slot 1, (0.6,0.8) -> slot 0, (0,-1) -> slot 1 (overwrites (1,0))
    assert torch.equal(memory.queue, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    assert memory.queue_head == 0


def test_oim_vectorised_update_equals_the_loop_on_random_steps():
    torch.manual_seed(0)

    def loop(mem, feats, ids):
        for feat, identity in zip(feats, ids.tolist()):
            if identity >= 0:
                row = mem.momentum * mem.lut[identity] + (1.0 - mem.momentum) * feat
                mem.lut[identity] = row / row.norm().clamp(min=1e-12)
            elif identity == UNLABELED:
                mem.queue[mem.queue_head] = feat
                mem.queue_head = (mem.queue_head + 1) % mem.queue.shape[0]

    looped, vectorised = OIMMemory(6, 5, 8, 0.5), OIMMemory(6, 5, 8, 0.5)
    start = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    looped.lut.copy_(start)
    vectorised.lut.copy_(start)
    for _ in range(4):
        feats = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)
        ids = torch.randint(-2, 6, (12,))
        loop(looped, feats, ids)
        vectorised.update(feats, ids)
        assert torch.allclose(looped.lut, vectorised.lut, atol=1e-6)
        assert torch.equal(looped.queue, vectorised.queue)
        assert looped.queue_head == vectorised.queue_head


def test_oim_memory_lives_on_the_given_device():
    memory = OIMMemory(num_ids=3, queue_size=4, dim=2, device="meta")
    assert memory.lut.device.type == "meta" and memory.queue.device.type == "meta"
