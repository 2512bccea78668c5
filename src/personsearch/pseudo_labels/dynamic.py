"""SSL dynamic-threshold multi-label pseudo labels (docs/methods.md §3.5; arXiv v1 Eq. 7-10).

Shape glossary
--------------
B      number of batch instances (GT persons of the batch)
N      number of memory slots (training GT boxes; 18,048 PRW, 55,272 CUHK-SYSU)
sim          float [B, N]  similarity of each batch instance to every memory slot (s_ij)
slot_images  int64 [N]     training-image index of every slot (>= 0)
own_slots    int64 [B]     (optional) the slot of each batch instance itself
targets      bool  [B, N]  Y_ij after thresholding and same-image exclusion (P_i = True entries)

Threshold (Eq. 9): t(e) = t_s + alpha * exp(beta * e), e = epoch counted from 0.

Same-image exclusion (paper): visit the candidates j (s_ij >= t) in descending s_ij; when a
visited candidate j is still positive, every other slot of j's image is set to negative.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["dynamic_threshold", "multilabel_targets"]


def dynamic_threshold(epoch: int, t_s: float = 0.6, alpha: float = 0.1, beta: float = -0.1) -> float:
    """Eq. 9: ``t_s + alpha * exp(beta * epoch)``, epoch 0-based (t(0) = t_s + alpha = 0.70).

    Defaults are the arXiv v1 values (beta = -0.1); the ICCV text uses beta = -0.05.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return t_s + alpha * math.exp(beta * epoch)


def multilabel_targets(
    sim: Tensor,
    slot_images: Tensor,
    threshold: float,
    own_slots: Tensor | None = None,
) -> Tensor:
    """Multi-label targets Y [B, N] (bool) with same-image exclusion, vectorised.

    Equivalence with the sequential rule (proof). Fix a row i and an image I. Let C be the
    candidates (s_ij >= t) and let j* be the first candidate of image I in the visit order.
    (a) Only visiting a still-positive candidate k zeroes anything, and it zeroes only slots
    of k's own image. Before j* is visited no candidate of I has been visited, so nothing has
    zeroed j*: j* is still positive when visited, and it zeroes every other slot of I.
    (b) Every later candidate of I is then already zero when visited, so it zeroes nothing,
    and no visit of a candidate from another image touches I. So j* stays positive.
    (c) Non-candidates are never set positive. Hence the final Y_i has exactly one positive
    per image that holds a candidate: its first-visited candidate, i.e. the candidate of
    maximal similarity. Images interact with each other in no way, so the rule is the same as
    "per (row, image), keep the max-similarity candidate".

    Threshold: candidates are ``sim >= threshold`` evaluated by torch, i.e. with the threshold
    in sim's dtype (a float32 similarity 0.7 passes a threshold 0.7).

    Ties: the visit order is descending similarity, and among exactly equal similarities
    ascending slot index (a stable descending sort). So among tied maxima of one image the
    LOWEST slot index is kept.

    ``own_slots`` (optional): the slot of each batch instance. Its own slot is treated as the
    most similar entry of its row (always a candidate, visited first), so P_i always contains
    i and every other slot of i's image is a negative, whatever rounding does to s_ii.
    """
    if sim.dim() != 2:
        raise ValueError(f"sim must be [B, N], got shape {tuple(sim.shape)}")
    num_rows, num_slots = sim.shape
    if slot_images.shape != (num_slots,):
        raise ValueError(f"slot_images must be [N] = [{num_slots}], got shape {tuple(slot_images.shape)}")
    if slot_images.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"slot_images must be an integer tensor, got {slot_images.dtype}")
    if num_rows == 0 or num_slots == 0:
        return torch.zeros(num_rows, num_slots, dtype=torch.bool, device=sim.device)
    if int(slot_images.min()) < 0:
        raise ValueError("slot_images must be >= 0")

    sim = sim.detach()
    if own_slots is not None:
        if own_slots.shape != (num_rows,):
            raise ValueError(f"own_slots must be [B] = [{num_rows}], got shape {tuple(own_slots.shape)}")
        sim = sim.clone()
        sim[torch.arange(num_rows, device=sim.device), own_slots] = float("inf")

    candidates = sim >= threshold                                        # [B, N]
    masked = sim.masked_fill(~candidates, float("-inf"))
    slot_images = slot_images.to(device=sim.device, dtype=torch.int64)
    num_images = int(slot_images.max()) + 1
    image_index = slot_images.unsqueeze(0).expand(num_rows, num_slots)   # [B, N]

    # Best similarity per (row, image) among candidates.
    best = masked.new_full((num_rows, num_images), float("-inf"))
    best = best.scatter_reduce(1, image_index, masked, reduce="amax", include_self=True)
    is_best = candidates & (masked == best.gather(1, image_index))

    # Tie break: lowest slot index among the tied maxima of a (row, image).
    slot_index = torch.arange(num_slots, device=sim.device).unsqueeze(0).expand(num_rows, num_slots)
    tied_index = torch.where(is_best, slot_index, torch.full_like(slot_index, num_slots))
    first = torch.full((num_rows, num_images), num_slots, dtype=torch.int64, device=sim.device)
    first = first.scatter_reduce(1, image_index, tied_index, reduce="amin", include_self=True)
    return is_best & (slot_index == first.gather(1, image_index))
