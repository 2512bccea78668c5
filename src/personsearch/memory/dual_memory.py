"""SSL dual memory banks M_I (main branch) and M_M (multi-scale exemplars) (docs/methods.md §3.4).

Shape glossary
--------------
N      number of memory slots = training GT boxes (global slot index, data.splits)
D      embedding dimension (256)
n      number of updates in one call (a slot may appear several times)
bank_main        float [N, D]  M_I, rows unit norm
bank_multiscale  float [N, D]  M_M, rows unit norm
slot_images      int64 [N]     training-image index of each slot
labels           int64 [N]     pseudo label per slot for the optional cluster-contrast term
                               (default: every slot its own class, ``arange(N)``)
slots            int64 [n]     slots to update, in the order the updates happen
inst_feats             float [n, D]  main-branch features f_i
exemplar_mean_feats    float [n, D]  f_i^h = mean of the K+1 exemplar features

Update (Eq. 5), lambda on the NEW feature, rows re-normalised after each update:
    M[k] <- normalize(lam * f + (1 - lam) * M[k])
Repeated slots in one call are applied sequentially in the given order (exactly as a python
loop over the updates would), vectorised by occurrence rank (see ``momentum_update_rows_``).
Scale-enhanced memory (Eq. 6): ``combined() = normalize((M_I + M_M) / 2)`` row-wise.
The banks are only changed by explicit calls (``initialize``, ``update``, ``load_state_dict``)
made after the optimizer step; never inside forward/backward.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor

from personsearch.amp import autocast_off
from personsearch.errors import CheckpointError, PersonSearchError

__all__ = ["DualMemory", "blend_rows_sequentially_", "momentum_update_rows_"]


def occurrence_rank(slots: Tensor) -> Tensor:
    """For each position, how many earlier positions hold the same slot ([n] int64).

    e.g. slots [4, 2, 4, 4, 2] -> [0, 0, 1, 2, 1].
    """
    num = slots.numel()
    if num == 0:
        return torch.zeros(0, dtype=torch.int64, device=slots.device)
    sorted_slots, order = torch.sort(slots, stable=True)
    positions = torch.arange(num, device=slots.device)
    group_start = torch.ones(num, dtype=torch.bool, device=slots.device)
    group_start[1:] = sorted_slots[1:] != sorted_slots[:-1]
    start_position = torch.where(group_start, positions, torch.zeros_like(positions)).cummax(dim=0).values
    rank = torch.empty_like(positions)
    rank[order] = positions - start_position
    return rank


@torch.no_grad()
def blend_rows_sequentially_(bank: Tensor, slots: Tensor, new_feats: Tensor, new_weight: float,
                             old_weight: float) -> None:
    """In place, for each (k, f) in order: ``bank[k] <- normalize(new_weight * f + old_weight
    * bank[k])``. Repeated slots are applied sequentially (exactly as a python loop over the
    updates), one vectorised round per occurrence rank: the number of rounds is the largest
    multiplicity of a slot, not the number of updates. Two host syncs per call (range check +
    round sizes), whatever the number of updates; everything else stays on ``bank.device``.

    The memory banks of this package all use it: SSL (new_weight = lambda), CGPS and OIM
    (old_weight = momentum on the old value).
    """
    if slots.dim() != 1 or new_feats.dim() != 2 or new_feats.shape[0] != slots.shape[0]:
        raise PersonSearchError(
            f"memory update: slots must be [n] and feats [n, D], got {tuple(slots.shape)} and {tuple(new_feats.shape)}"
        )
    if new_feats.shape[1] != bank.shape[1]:
        raise PersonSearchError(f"memory update: feature dim {new_feats.shape[1]} != memory dim {bank.shape[1]}")
    if slots.numel() == 0:
        return
    slots = slots.to(device=bank.device, dtype=torch.int64)
    rank = occurrence_rank(slots)
    lowest, highest, last_round = torch.stack([slots.min(), slots.max(), rank.max()]).tolist()
    if lowest < 0 or highest >= bank.shape[0]:
        raise PersonSearchError(f"memory update: slot index out of range [0, {bank.shape[0]})")
    new_feats = new_feats.detach().to(device=bank.device, dtype=bank.dtype)
    order = torch.sort(rank, stable=True).indices  # round by round, update order kept inside
    round_sizes = torch.bincount(rank, minlength=last_round + 1).tolist()
    start = 0
    for size in round_sizes:
        rows = order[start:start + size]
        round_slots = slots[rows]  # distinct within one round
        mixed = new_weight * new_feats[rows] + old_weight * bank[round_slots]
        bank[round_slots] = F.normalize(mixed, dim=1)
        start += size


@torch.no_grad()
def momentum_update_rows_(bank: Tensor, slots: Tensor, new_feats: Tensor, new_weight: float) -> None:
    """In place: ``bank[k] <- normalize(new_weight * f + (1 - new_weight) * bank[k])`` for each
    (k, f) in order (SSL Eq. 5; see :func:`blend_rows_sequentially_`)."""
    blend_rows_sequentially_(bank, slots, new_feats, new_weight, 1.0 - new_weight)


def _digest(slot_images: Tensor) -> str:
    """SHA-1 of the int64 slot-image table (host copy; called at construction and on load)."""
    table = slot_images.detach().to("cpu", torch.int64).contiguous().numpy()
    return hashlib.sha1(table.tobytes()).hexdigest()


class DualMemory:
    """The two SSL memory banks plus per-slot image index and optional pseudo labels."""

    def __init__(self, num_slots: int, dim: int, slot_images: Tensor, lam: float = 0.8,
                 device: torch.device | str = "cpu") -> None:
        if num_slots <= 0 or dim <= 0:
            raise PersonSearchError(f"DualMemory: num_slots and dim must be positive, got {num_slots}, {dim}")
        if not 0.0 < lam <= 1.0:
            raise PersonSearchError(f"DualMemory: lam must be in (0, 1], got {lam}")
        slot_images = torch.as_tensor(slot_images, dtype=torch.int64)
        if slot_images.shape != (num_slots,):
            raise PersonSearchError(f"DualMemory: slot_images must be [{num_slots}], got shape {tuple(slot_images.shape)}")
        self.num_slots = num_slots
        self.dim = dim
        self.lam = lam
        # the split's fingerprint, checked against a checkpoint without reading the device
        self.slot_images_digest = _digest(slot_images)
        self.slot_images = slot_images.to(device)
        self.bank_main = torch.zeros(num_slots, dim, device=device)
        self.bank_multiscale = torch.zeros(num_slots, dim, device=device)
        self.labels = torch.arange(num_slots, dtype=torch.int64, device=device)
        self.initialized = False

    @property
    def device(self) -> torch.device:
        return self.bank_main.device

    def to(self, device: torch.device | str) -> "DualMemory":
        self.bank_main = self.bank_main.to(device)
        self.bank_multiscale = self.bank_multiscale.to(device)
        self.slot_images = self.slot_images.to(device)
        self.labels = self.labels.to(device)
        return self

    @torch.no_grad()
    def initialize(self, inst_feats: Tensor, exemplar_feats: Tensor) -> None:
        """Fill both banks (rows re-normalised) from features of every slot, in slot order."""
        for name, feats in (("inst_feats", inst_feats), ("exemplar_feats", exemplar_feats)):
            if feats.shape != (self.num_slots, self.dim):
                raise PersonSearchError(
                    f"DualMemory.initialize: {name} must be [{self.num_slots}, {self.dim}], got {tuple(feats.shape)}"
                )
            if not torch.isfinite(feats).all():
                raise PersonSearchError(f"DualMemory.initialize: {name} contain NaN or inf")
        self.bank_main = F.normalize(inst_feats.detach().to(self.device, torch.float32), dim=1)
        self.bank_multiscale = F.normalize(exemplar_feats.detach().to(self.device, torch.float32), dim=1)
        self.initialized = True

    @torch.no_grad()
    def update(self, slots: Tensor, inst_feats: Tensor, exemplar_mean_feats: Tensor) -> None:
        """Eq. 5 on both banks; call after the optimizer step."""
        momentum_update_rows_(self.bank_main, slots, inst_feats, self.lam)
        momentum_update_rows_(self.bank_multiscale, slots, exemplar_mean_feats, self.lam)

    @torch.no_grad()
    def combined(self) -> Tensor:
        """Scale-enhanced memory M = row-normalised mean(M_I, M_M) [N, D] (a new float32
        tensor on the banks' device)."""
        return F.normalize((self.bank_main + self.bank_multiscale) / 2.0, dim=1)

    @torch.no_grad()
    def similarities(self, slots: Tensor) -> Tensor:
        """s_i = M[i] . M^T for the given batch slots, [n, N] float32 on the banks' device
        (input of multilabel_targets); autocast never lowers it."""
        with autocast_off(self.device.type):
            memory = self.combined()
            return memory[slots.to(self.device)] @ memory.t()

    def set_labels(self, labels: Tensor) -> None:
        """Store per-slot pseudo labels (int64 [N]) for the optional cluster-contrast term."""
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.shape != (self.num_slots,):
            raise PersonSearchError(f"DualMemory.set_labels: labels must be [{self.num_slots}], got shape {tuple(labels.shape)}")
        self.labels = labels.to(self.device)

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "bank_main": self.bank_main.clone(),
            "bank_multiscale": self.bank_multiscale.clone(),
            "slot_images": self.slot_images.clone(),
            "labels": self.labels.clone(),
            "initialized": torch.tensor(self.initialized),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        expected = {
            "bank_main": (self.num_slots, self.dim),
            "bank_multiscale": (self.num_slots, self.dim),
            "slot_images": (self.num_slots,),
            "labels": (self.num_slots,),
            "initialized": (),
        }
        for key, shape in expected.items():
            if key not in state:
                raise CheckpointError(f"dual memory state is missing {key!r}")
            if tuple(state[key].shape) != shape:
                raise CheckpointError(
                    f"dual memory state {key!r} has shape {tuple(state[key].shape)}, expected {shape}"
                )
        if _digest(state["slot_images"]) != self.slot_images_digest:
            raise CheckpointError("dual memory state was saved for a different training split (slot_images differ)")
        self.bank_main = state["bank_main"].to(self.device, torch.float32).clone()
        self.bank_multiscale = state["bank_multiscale"].to(self.device, torch.float32).clone()
        self.labels = state["labels"].to(self.device, torch.int64).clone()
        self.initialized = bool(state["initialized"])
