"""InstanceMemory: initialisation, sequential momentum update, checkpoint round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from personsearch.errors import CheckpointError, PersonSearchError
from personsearch.memory.instance_memory import InstanceMemory


def test_initialize_normalises_rows():
    memory = InstanceMemory(2, 2, [0, 0])
    memory.initialize(torch.tensor([[3.0, 4.0], [0.0, -2.0]]))
    torch.testing.assert_close(memory.features, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    torch.testing.assert_close(memory.labels, torch.tensor([0, 1]))
    with pytest.raises(PersonSearchError):
        memory.initialize(torch.zeros(3, 2))


def test_update_with_repeated_slot_is_sequential():
    memory = InstanceMemory(2, 2, [0, 1])
    memory.initialize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # slots [0, 1, 0], momentum 0.2 (weight of the OLD value):
    # 1) slot 0: 0.2*(1,0) + 0.8*(0,1) = (0.2, 0.8) / sqrt(0.68) = (0.2425356, 0.9701425)
    # 2) slot 1: 0.2*(0,1) + 0.8*(1,0) = (0.8, 0.2) / sqrt(0.68) = (0.9701425, 0.2425356)
    # 3) slot 0 again, from step 1's value: 0.2*(0.2425356, 0.9701425) + 0.8*(0,1)
    #    = (0.0485071, 0.9940285) / 0.9952117 = (0.0487405, 0.9988115)
    memory.update(torch.tensor([0, 1, 0]), torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), momentum=0.2)
    expected = torch.tensor([[0.0487405, 0.9988115], [0.9701425, 0.2425356]])
    torch.testing.assert_close(memory.features, expected, atol=1e-6, rtol=0)


def test_update_matches_plain_loop_with_many_repeats():
    generator = torch.Generator().manual_seed(0)
    num_slots, dim = 7, 5
    start = torch.nn.functional.normalize(torch.randn(num_slots, dim, generator=generator), dim=1)
    slots = torch.randint(0, 3, (40,), generator=generator)  # heavy repetition of slots 0..2
    feats = torch.nn.functional.normalize(torch.randn(40, dim, generator=generator), dim=1)
    memory = InstanceMemory(num_slots, dim, torch.zeros(num_slots, dtype=torch.long))
    memory.initialize(start)
    memory.update(slots, feats, momentum=0.3)
    reference = start.clone()
    for slot, feat in zip(slots.tolist(), feats):
        mixed = 0.3 * reference[slot] + 0.7 * feat
        reference[slot] = mixed / mixed.norm()
    torch.testing.assert_close(memory.features, reference)
    torch.testing.assert_close(memory.features[3:], start[3:])  # untouched slots unchanged


def test_update_does_not_track_gradients():
    memory = InstanceMemory(2, 2, [0, 0])
    memory.initialize(torch.eye(2))
    feats = torch.tensor([[1.0, 1.0]], requires_grad=True)
    memory.update([1], feats * 2)
    assert not memory.features.requires_grad
    with pytest.raises(PersonSearchError):
        memory.update([5], feats)
    with pytest.raises(PersonSearchError):
        memory.update([0, 1], feats)


def test_state_dict_round_trip_weights_only():
    memory = InstanceMemory(3, 2, np.array([0, 0, 1]))
    memory.initialize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    memory.set_labels(np.array([0, 0, 1]))
    buffer = io.BytesIO()
    torch.save(memory.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = InstanceMemory(3, 2, [0, 0, 0])
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.features, memory.features)
    torch.testing.assert_close(restored.labels, torch.tensor([0, 0, 1]))
    torch.testing.assert_close(restored.slot_images, torch.tensor([0, 0, 1]))
    with pytest.raises(CheckpointError):
        InstanceMemory(4, 2, [0] * 4).load_state_dict(state)
