"""SSL dynamic threshold (Eq. 9) and multi-label targets with same-image exclusion."""

from __future__ import annotations

import pytest
import torch

from personsearch.pseudo_labels import dynamic_threshold, multilabel_targets


def test_dynamic_threshold_table() -> None:
    # docs/methods.md §3.5: t = 0.6 + 0.1 * exp(beta * e), e 0-based
    epochs = [0, 5, 10, 16, 22, 25]
    iccv = [0.700, 0.678, 0.661, 0.645, 0.633, 0.629]      # beta = -0.05
    arxiv = [0.700, 0.661, 0.637, 0.620, 0.611, 0.608]     # beta = -0.1 (default)
    assert [round(dynamic_threshold(e, beta=-0.05), 3) for e in epochs] == iccv
    assert [round(dynamic_threshold(e), 3) for e in epochs] == arxiv
    # e = 10, beta = -0.1: 0.6 + 0.1 * exp(-1) = 0.6367879...
    assert dynamic_threshold(10) == pytest.approx(0.6 + 0.1 * 0.36787944117, abs=1e-12)
    assert dynamic_threshold(0) == pytest.approx(0.7, abs=1e-15)
    with pytest.raises(ValueError):
        dynamic_threshold(-1)


def test_same_image_exclusion_hand_example() -> None:
    slot_images = torch.tensor([0, 0, 1, 1, 1, 2])
    sim = torch.tensor([[1.0, 0.75, 0.9, 0.8, 0.5, 0.7]])
    # candidates (>= 0.7): 0 (1.0), 2 (0.9), 3 (0.8), 1 (0.75), 5 (0.7 — equality counts)
    # visit 0 -> zero slot 1 (image 0); visit 2 -> zero 3, 4 (image 1); 3 and 1 already zero;
    # visit 5 -> image 2 has no other slot.  Result {0, 2, 5}.
    targets = multilabel_targets(sim, slot_images, 0.7)
    assert targets.tolist() == [[True, False, True, False, False, True]]


def test_ties_keep_lowest_slot_index() -> None:
    slot_images = torch.tensor([0, 1, 1, 1])
    sim = torch.tensor([[1.0, 0.8, 0.8, 0.6], [0.2, 0.9, 0.95, 0.95]])
    # row 0: image 1 candidates 1 and 2 tie at 0.8 -> keep slot 1
    # row 1: image 1 candidates 2 and 3 tie at 0.95 (max) -> keep slot 2; slot 0 below threshold
    targets = multilabel_targets(sim, slot_images, 0.7)
    assert targets.tolist() == [[True, True, False, False], [False, False, True, False]]


def test_own_slot_is_always_visited_first() -> None:
    slot_images = torch.tensor([0, 0, 1])
    sim = torch.tensor([[0.99, 1.0, 0.3]])
    # without own_slots slot 1 (1.0) wins image 0; with own_slots=[0] the row's own slot wins,
    # even though its (rounded) similarity is lower; slot 2 is below the threshold.
    assert multilabel_targets(sim, slot_images, 0.7).tolist() == [[False, True, False]]
    assert multilabel_targets(sim, slot_images, 0.7, own_slots=torch.tensor([0])).tolist() == [
        [True, False, False]
    ]
    # own slot below the threshold is still positive
    assert multilabel_targets(sim, slot_images, 0.995, own_slots=torch.tensor([0])).tolist() == [
        [True, False, False]
    ]


def _sequential_reference(sim: torch.Tensor, slot_images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Literal transcription of the paper's rule: sort descending (ties: lower index first),
    traverse, and zero the other slots of each still-positive candidate's image. The threshold
    comparison itself is done by torch (threshold in the tensor's dtype, as the function does:
    float32 0.7 >= 0.7 is True, while the python double 0.69999998807 < 0.7)."""
    num_rows, num_slots = sim.shape
    out = torch.zeros(num_rows, num_slots, dtype=torch.bool)
    images = slot_images.tolist()
    for i in range(num_rows):
        row = sim[i].tolist()
        labels = (sim[i] >= threshold).tolist()
        order = sorted(range(num_slots), key=lambda j: (-row[j], j))
        for j in order:
            if not labels[j]:
                continue
            for k in range(num_slots):
                if k != j and images[k] == images[j]:
                    labels[k] = False
        out[i] = torch.tensor(labels)
    return out


def test_matches_sequential_reference_with_many_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(20):
        num_rows, num_slots = 6, 40
        # quantised similarities -> many exact ties
        sim = torch.randint(0, 11, (num_rows, num_slots), generator=generator).float() / 10.0
        slot_images = torch.randint(0, 7, (num_slots,), generator=generator)
        for threshold in (0.0, 0.5, 0.7, 1.0):
            got = multilabel_targets(sim, slot_images, threshold)
            assert torch.equal(got, _sequential_reference(sim, slot_images, threshold)), (trial, threshold)


def test_matches_sequential_reference_continuous() -> None:
    generator = torch.Generator().manual_seed(1)
    sim = torch.rand(5, 60, generator=generator) * 2 - 1
    slot_images = torch.randint(0, 12, (60,), generator=generator)
    got = multilabel_targets(sim, slot_images, 0.3)
    assert torch.equal(got, _sequential_reference(sim, slot_images, 0.3))
    # at most one positive per (row, image)
    for i in range(5):
        kept_images = slot_images[got[i]]
        assert kept_images.unique().numel() == kept_images.numel()


def test_empty_and_bad_input() -> None:
    assert multilabel_targets(torch.zeros(0, 3), torch.tensor([0, 0, 1]), 0.5).shape == (0, 3)
    with pytest.raises(ValueError, match="slot_images"):
        multilabel_targets(torch.zeros(2, 3), torch.tensor([0, 1]), 0.5)
    with pytest.raises(ValueError, match=">= 0"):
        multilabel_targets(torch.zeros(2, 3), torch.tensor([0, -1, 1]), 0.5)
