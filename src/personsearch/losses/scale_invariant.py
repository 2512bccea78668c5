"""SSL scale-invariant loss (docs/methods.md §3.3; SSL arXiv v1 Eq. 2-4, ICCV Eq. 2-3).

Shape glossary
--------------
P      number of GT persons in the batch (all images together)
K      number of resized exemplar scales (K = 3 in the paper)
D      embedding dimension (256)
inst        float [P, D]       main-branch feature f_i of each person (L2-normalised)
exemplars   float [P, K+1, D]  exemplar-branch features; index 0 = original scale f_i^o,
                               indices 1..K = the resized scales f_i^s (L2-normalised)
image_ids   int64 [P]          which batch image each person belongs to (any integer ids)

With D(a, b) = ||a - b||^2 (squared Euclidean distance), for person i of image b:

    L^{b,i} = [ m + max_{s=1..K} D(f_i, f_i^s) - min_{j in b, j != i, s in {o,1..K}} D(f_i, f_j^s) ]_+
              + gamma * D(f_i, f_i^o)

    L_scale = 1/B * sum_b 1/P_b * sum_{i in b} L^{b,i}

B is the number of distinct images among ``image_ids`` (images without persons contribute
nothing and are not counted). A person alone in its image has no negative: its hinge term is
dropped and only the gamma term is kept (docs/methods.md §3.3: the paper is silent, our choice).

Computed in float32 with autocast off (``personsearch.amp.float32_loss``), whatever the
autocast dtype of the network that produced the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from personsearch.amp import float32_loss

__all__ = ["scale_invariant_loss"]


def _check_inputs(inst: Tensor, exemplars: Tensor, image_ids: Tensor) -> None:
    if inst.dim() != 2:
        raise ValueError(f"inst must be [P, D], got shape {tuple(inst.shape)}")
    if exemplars.dim() != 3 or exemplars.shape[0] != inst.shape[0] or exemplars.shape[2] != inst.shape[1]:
        raise ValueError(
            f"exemplars must be [P, K+1, D] = [{inst.shape[0]}, K+1, {inst.shape[1]}], "
            f"got shape {tuple(exemplars.shape)}"
        )
    if exemplars.shape[1] < 2:
        raise ValueError("exemplars need the original scale (index 0) and at least one resized scale")
    if image_ids.shape != (inst.shape[0],):
        raise ValueError(f"image_ids must be [P] = [{inst.shape[0]}], got shape {tuple(image_ids.shape)}")


@float32_loss
def scale_invariant_loss(
    inst: Tensor,
    exemplars: Tensor,
    image_ids: Tensor,
    margin: float = 0.3,
    gamma: float = 0.05,
) -> dict[str, Tensor]:
    """Scale-invariant loss ``{"loss_scale": scalar}`` (see module docstring for the formula).

    Vectorised over all persons of the batch: the person-to-exemplar distance tensor is
    [P, P, K+1], and same-image masks select positives and negatives.
    """
    _check_inputs(inst, exemplars, image_ids)
    num_persons = inst.shape[0]
    if num_persons == 0:
        # Keep the graph connected so that the trainer can always call backward.
        return {"loss_scale": inst.sum() * 0.0 + exemplars.sum() * 0.0}

    # dist[i, j, s] = ||f_i - f_j^s||^2, expanded form (clamped: rounding can go below 0).
    inst_sq = (inst * inst).sum(dim=1)                                   # [P]
    exemplar_sq = (exemplars * exemplars).sum(dim=2)                     # [P, K+1]
    cross = torch.einsum("id,jsd->ijs", inst, exemplars)                 # [P, P, K+1]
    dist = (inst_sq[:, None, None] + exemplar_sq[None, :, :] - 2.0 * cross).clamp_min(0.0)

    person_index = torch.arange(num_persons, device=inst.device)
    own = dist[person_index, person_index]                               # [P, K+1]
    original_scale_dist = own[:, 0]                                      # D(f_i, f_i^o)
    hardest_positive = own[:, 1:].amax(dim=1)                            # max over resized scales

    same_image = image_ids[:, None] == image_ids[None, :]                # [P, P]
    is_negative = same_image & (person_index[:, None] != person_index[None, :])
    has_negative = is_negative.any(dim=1)                                # [P]
    negative_dist = dist.masked_fill(~is_negative[:, :, None], float("inf"))
    hardest_negative = negative_dist.flatten(1).amin(dim=1)              # [P], inf if none

    hinge = (margin + hardest_positive - hardest_negative).clamp_min(0.0)
    # where() (not multiplication) so that a person without negatives gets neither an inf
    # value nor a NaN gradient from the dropped term.
    hinge = torch.where(has_negative, hinge, torch.zeros_like(hinge))
    per_person = hinge + gamma * original_scale_dist                     # [P]

    persons_in_image = same_image.sum(dim=1).to(per_person.dtype)        # P_b for each person
    num_images = torch.unique(image_ids).numel()
    loss = (per_person / persons_in_image).sum() / num_images
    return {"loss_scale": loss}
