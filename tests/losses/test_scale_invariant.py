"""SSL scale-invariant loss: hand-computed values, a literal per-person reference, gradients."""

from __future__ import annotations

import pytest
import torch

from personsearch.losses import scale_invariant_loss

# For unit vectors a, b: D(a, b) = ||a - b||^2 = 2 - 2 a.b


def _two_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # image 7: persons 0 and 1; image 3: person 2 alone. K = 2 (index 0 = original scale).
    inst = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    exemplars = torch.tensor(
        [
            [[0.8, 0.6], [0.6, 0.8], [0.8, 0.6]],    # person 0: o, s1, s2
            [[0.0, 1.0], [0.6, 0.8], [-0.6, 0.8]],   # person 1
            [[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]],  # person 2 (alone)
        ]
    )
    image_ids = torch.tensor([7, 7, 3])
    return inst, exemplars, image_ids


def test_hand_computed_value() -> None:
    inst, exemplars, image_ids = _two_images()
    # person 0, f=(1,0): D to own o=(.8,.6): 0.4; s1=(.6,.8): 0.8; s2=(.8,.6): 0.4 -> pos = 0.8
    #   negatives = person 1's exemplars: (0,1): 2.0; (.6,.8): 0.8; (-.6,.8): 3.2 -> neg = 0.8
    #   L0 = [0.3 + 0.8 - 0.8]_+ + 0.05 * 0.4 = 0.32
    # person 1, f=(0,1): own o: 0; s1=(.6,.8): 0.4; s2=(-.6,.8): 0.4 -> pos = 0.4
    #   negatives = person 0's: (.8,.6): 0.8; (.6,.8): 0.4; (.8,.6): 0.8 -> neg = 0.4
    #   L1 = [0.3 + 0.4 - 0.4]_+ + 0 = 0.3
    # image 7: (0.32 + 0.3) / 2 = 0.31
    # person 2 alone: hinge dropped, L2 = 0.05 * D((1,0),(0,1)) = 0.05 * 2 = 0.1 ; image 3: 0.1
    # L_scale = (0.31 + 0.1) / 2 = 0.205
    loss = scale_invariant_loss(inst, exemplars, image_ids)["loss_scale"]
    assert loss.item() == pytest.approx(0.205, abs=1e-6)


def test_margin_and_gamma_are_used() -> None:
    inst, exemplars, image_ids = _two_images()
    # margin 0.5: hinges become 0.5 each; gamma 0.1: person 0 -> 0.04, person 2 -> 0.2
    # image 7: (0.54 + 0.5)/2 = 0.52 ; image 3: 0.2 ; mean 0.36
    loss = scale_invariant_loss(inst, exemplars, image_ids, margin=0.5, gamma=0.1)["loss_scale"]
    assert loss.item() == pytest.approx(0.36, abs=1e-6)


def test_hinge_clamps_at_zero() -> None:
    # Positives identical to the anchor (D = 0), negatives opposite (D = 4): [0.3 + 0 - 4]_+ = 0,
    # gamma term 0 -> loss 0.
    inst = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    exemplars = torch.stack([inst[0].expand(4, 2), inst[1].expand(4, 2)])
    loss = scale_invariant_loss(inst, exemplars, torch.tensor([0, 0]))["loss_scale"]
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def _reference(inst, exemplars, image_ids, margin=0.3, gamma=0.05):
    """Literal per-person transcription of Eq. 2-4 (python loops)."""
    def d(a, b):
        return float(((a - b) ** 2).sum())

    per_image: dict[int, list[float]] = {}
    num_persons, num_scales = exemplars.shape[:2]
    for i in range(num_persons):
        b = int(image_ids[i])
        pos = max(d(inst[i], exemplars[i, s]) for s in range(1, num_scales))
        others = [j for j in range(num_persons) if j != i and int(image_ids[j]) == b]
        value = gamma * d(inst[i], exemplars[i, 0])
        if others:
            neg = min(d(inst[i], exemplars[j, s]) for j in others for s in range(num_scales))
            value += max(0.0, margin + pos - neg)
        per_image.setdefault(b, []).append(value)
    return sum(sum(v) / len(v) for v in per_image.values()) / len(per_image)


def test_matches_literal_reference_on_random_inputs() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        num_persons, num_scales, dim = 9, 4, 8
        inst = torch.nn.functional.normalize(torch.randn(num_persons, dim, generator=generator), dim=1)
        exemplars = torch.nn.functional.normalize(
            inst[:, None, :] + 0.7 * torch.randn(num_persons, num_scales, dim, generator=generator), dim=2
        )
        image_ids = torch.randint(0, 4, (num_persons,), generator=generator) * 10
        got = scale_invariant_loss(inst, exemplars, image_ids)["loss_scale"].item()
        assert got == pytest.approx(_reference(inst, exemplars, image_ids), abs=1e-5)


def test_gradient_of_lonely_person_is_gamma_term_only() -> None:
    inst, exemplars, image_ids = _two_images()
    inst = inst.clone().requires_grad_(True)
    exemplars = exemplars.clone().requires_grad_(True)
    scale_invariant_loss(inst, exemplars, image_ids)["loss_scale"].backward()
    # person 2 contributes (1/2 images) * (1/1 person) * 0.05 * ||f - f^o||^2
    # d/df = 0.5 * 0.05 * 2 * (f - f^o) = 0.05 * ((1,0) - (0,1)) = (0.05, -0.05)
    torch.testing.assert_close(inst.grad[2], torch.tensor([0.05, -0.05]))
    assert torch.isfinite(inst.grad).all() and torch.isfinite(exemplars.grad).all()
    # the lonely person's resized exemplars get no gradient (hinge dropped)
    torch.testing.assert_close(exemplars.grad[2, 1:], torch.zeros(2, 2))


def test_empty_batch_and_bad_shapes() -> None:
    inst = torch.zeros(0, 4, requires_grad=True)
    loss = scale_invariant_loss(inst, torch.zeros(0, 3, 4), torch.zeros(0, dtype=torch.long))["loss_scale"]
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="resized scale"):
        scale_invariant_loss(torch.zeros(2, 4), torch.zeros(2, 1, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="exemplars"):
        scale_invariant_loss(torch.zeros(2, 4), torch.zeros(3, 2, 4), torch.zeros(2, dtype=torch.long))
