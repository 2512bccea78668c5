"""SSL dual memory: Eq. 5 update (lambda on the new feature), sequential repeats, state."""

from __future__ import annotations

import io
import math

import pytest
import torch

from personsearch.errors import CheckpointError, PersonSearchError
from personsearch.memory import DualMemory, momentum_update_rows_
from personsearch.memory.dual_memory import occurrence_rank


def _memory() -> DualMemory:
    memory = DualMemory(3, 2, slot_images=torch.tensor([0, 0, 1]), lam=0.8)
    memory.initialize(
        torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]),   # normalised to (0.6,0.8), (1,0), (0,1)
        torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]),
    )
    return memory


def test_initialize_normalises() -> None:
    memory = _memory()
    torch.testing.assert_close(memory.bank_main, torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]]))
    assert memory.initialized


def test_update_lambda_on_new_feature() -> None:
    memory = _memory()
    memory.update(torch.tensor([1]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    # M_I[1] = normalize(0.8*(0,1) + 0.2*(1,0)) = (0.2, 0.8)/sqrt(0.68)
    norm = math.sqrt(0.68)
    torch.testing.assert_close(memory.bank_main[1], torch.tensor([0.2 / norm, 0.8 / norm]))
    # M_M[1] = normalize(0.8*(1,0) + 0.2*(0,1)) = (0.8, 0.2)/sqrt(0.68)
    torch.testing.assert_close(memory.bank_multiscale[1], torch.tensor([0.8 / norm, 0.2 / norm]))
    # other rows untouched
    torch.testing.assert_close(memory.bank_main[0], torch.tensor([0.6, 0.8]))


def test_repeated_slot_is_sequential() -> None:
    memory = _memory()
    memory.update(
        torch.tensor([1, 1]),
        torch.tensor([[0.0, 1.0], [-1.0, 0.0]]),
        torch.tensor([[0.0, 1.0], [0.0, 1.0]]),
    )
    # step 1: a = (0.2, 0.8)/sqrt(0.68) = (0.242536, 0.970143)
    # step 2: 0.8*(-1,0) + 0.2*a = (-0.751493, 0.194029), norm 0.776137 -> (-0.968250, 0.249993)
    a = torch.tensor([0.2, 0.8]) / math.sqrt(0.68)
    b = 0.8 * torch.tensor([-1.0, 0.0]) + 0.2 * a
    torch.testing.assert_close(memory.bank_main[1], b / b.norm())
    torch.testing.assert_close(memory.bank_main[1], torch.tensor([-0.968250, 0.249993]), atol=1e-5, rtol=0)


def test_vectorised_update_matches_python_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(10, 6, generator=generator), dim=1)
    slots = torch.randint(0, 10, (40,), generator=generator)         # many repeats
    feats = torch.nn.functional.normalize(torch.randn(40, 6, generator=generator), dim=1)
    expected = bank.clone()
    for slot, feat in zip(slots.tolist(), feats):
        mixed = 0.8 * feat + 0.2 * expected[slot]
        expected[slot] = mixed / mixed.norm()
    momentum_update_rows_(bank, slots, feats, 0.8)
    torch.testing.assert_close(bank, expected)


def test_occurrence_rank() -> None:
    assert occurrence_rank(torch.tensor([4, 2, 4, 4, 2])).tolist() == [0, 0, 1, 2, 1]
    assert occurrence_rank(torch.tensor([], dtype=torch.long)).tolist() == []


def test_update_takes_no_gradient() -> None:
    memory = _memory()
    feats = torch.tensor([[0.0, 1.0]], requires_grad=True)
    memory.update(torch.tensor([0]), feats * 2, feats * 3)
    assert not memory.bank_main.requires_grad and not memory.bank_multiscale.requires_grad
    with pytest.raises(PersonSearchError, match="out of range"):
        memory.update(torch.tensor([3]), feats, feats)


def test_combined_and_similarities() -> None:
    memory = _memory()
    # row 0: mean((0.6,0.8), (0,1)) = (0.3, 0.9) -> /sqrt(0.9)
    # row 1: mean((1,0), (0,1)) = (0.5, 0.5) -> (0.7071, 0.7071); row 2: (0.5,0.5) as well
    combined = memory.combined()
    torch.testing.assert_close(combined[0], torch.tensor([0.3, 0.9]) / math.sqrt(0.9))
    torch.testing.assert_close(combined[1], torch.tensor([1.0, 1.0]) / math.sqrt(2.0))
    sim = memory.similarities(torch.tensor([1]))
    # s_11 = 1 ; s_12 = 1 (identical rows) ; s_10 = (0.3 + 0.9)/sqrt(0.9)/sqrt(2)
    torch.testing.assert_close(sim, torch.tensor([[1.2 / math.sqrt(1.8), 1.0, 1.0]]))


def test_state_dict_roundtrip_is_tensors_only() -> None:
    memory = _memory()
    memory.set_labels(torch.tensor([5, 5, -1]))
    state = memory.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded_state = torch.load(buffer, weights_only=True)
    other = DualMemory(3, 2, slot_images=torch.tensor([0, 0, 1]))
    other.load_state_dict(loaded_state)
    torch.testing.assert_close(other.bank_main, memory.bank_main)
    torch.testing.assert_close(other.bank_multiscale, memory.bank_multiscale)
    assert other.labels.tolist() == [5, 5, -1] and other.initialized


def test_load_state_dict_rejects_mismatch() -> None:
    state = _memory().state_dict()
    with pytest.raises(CheckpointError, match="bank_main"):
        DualMemory(4, 2, slot_images=torch.tensor([0, 0, 1, 1])).load_state_dict(state)
    with pytest.raises(CheckpointError, match="slot_images"):
        DualMemory(3, 2, slot_images=torch.tensor([0, 1, 1])).load_state_dict(state)
    del state["labels"]
    with pytest.raises(CheckpointError, match="labels"):
        DualMemory(3, 2, slot_images=torch.tensor([0, 0, 1])).load_state_dict(state)


def test_initialize_rejects_non_finite() -> None:
    memory = DualMemory(2, 2, slot_images=torch.tensor([0, 1]))
    with pytest.raises(PersonSearchError, match="NaN"):
        memory.initialize(torch.tensor([[float("nan"), 0.0], [1.0, 0.0]]), torch.ones(2, 2))


def test_default_labels_and_bad_construction() -> None:
    assert DualMemory(3, 2, slot_images=torch.tensor([0, 0, 1])).labels.tolist() == [0, 1, 2]
    with pytest.raises(PersonSearchError, match="slot_images"):
        DualMemory(3, 2, slot_images=torch.tensor([0, 1]))
    with pytest.raises(PersonSearchError, match="lam"):
        DualMemory(3, 2, slot_images=torch.tensor([0, 0, 1]), lam=0.0)
