"""Online Instance Matching (OIM) loss and its memory, for the fully supervised reference.

Shape glossary
--------------
R         RoIs whose embeddings enter the loss
D         embedding dimension
L         number of labelled training identities (from the data: rows of the lookup table)
Q         circular-queue length for unlabelled persons (SeqNet: 5,000 CUHK-SYSU / 500 PRW)
feats     [R, D] unit-norm embeddings
ids       [R] int64: identity index 0..L-1 (labelled), UNLABELED (-1) for an unlabelled person,
          BACKGROUND (-2) for a background RoI
lut       [L, D] lookup table of identity features
queue     [Q, D] features of recent unlabelled persons
logits    [R', D] -> [R', L + Q] = scale * feats @ [lut; queue]^T over non-background RoIs

``oim_loss`` is a pure function: the lookup table and queue are read as constants (no
gradient); it computes in float32 with autocast off (a bf16 logit of 30 moves in steps of
0.125). ``OIMMemory.update(feats, ids)`` is called explicitly after the optimizer step:
lut[id] <- normalise(m * lut[id] + (1 - m) * feat) in RoI order, and every unlabelled
feature is written into the queue at the head, which then advances circularly. The update is
vectorised (same result as that loop: one round per repeat of an id, the queue written with
one ``index_copy_``) and the memory lives on the device it was built for (the model's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from personsearch.amp import float32_loss
from personsearch.labels import BACKGROUND, UNLABELED
from personsearch.memory.dual_memory import blend_rows_sequentially_


def oim_logits(feats: Tensor, lut: Tensor, queue: Tensor, scale: float = 30.0) -> Tensor:
    """[R, L + Q] scaled cosine logits against the lookup table then the queue."""
    bank = torch.cat([lut, queue], dim=0).detach().to(feats.dtype)
    return scale * feats @ bank.t()


@float32_loss
def oim_loss(feats: Tensor, ids: Tensor, lut: Tensor, queue: Tensor, scale: float = 30.0) -> dict[str, Tensor]:
    """{loss_oim}: cross-entropy of labelled RoIs over [lut; queue]; unlabelled and background
    RoIs are ignored (zero loss, still on the graph, when no RoI is labelled)."""
    if feats.shape[0] != ids.shape[0]:
        raise ValueError(f"oim_loss: {feats.shape[0]} features but {ids.shape[0]} ids")
    if feats.shape[1] != lut.shape[1] or feats.shape[1] != queue.shape[1]:
        raise ValueError(f"oim_loss: feature dim {feats.shape[1]} differs from the memory's {lut.shape[1]}")
    ids = ids.to(feats.device)
    labelled = ids >= 0
    highest, any_labelled = (torch.stack([ids.max(), labelled.any()]).tolist()
                             if ids.numel() else (-1, False))  # one host sync
    if highest >= lut.shape[0]:
        raise ValueError(f"oim_loss: id {highest} out of range for {lut.shape[0]} identities")
    if not any_labelled:
        return {"loss_oim": feats.sum() * 0.0}
    logits = oim_logits(feats[labelled], lut, queue, scale)
    return {"loss_oim": F.cross_entropy(logits, ids[labelled])}


class OIMMemory:
    """Lookup table [num_ids, dim] + circular queue [queue_size, dim] (zero-initialised)."""

    def __init__(self, num_ids: int, queue_size: int, dim: int, momentum: float = 0.5, device: str | torch.device = "cpu") -> None:
        if num_ids <= 0 or queue_size < 0 or dim <= 0:
            raise ValueError(f"OIMMemory sizes must be positive, got num_ids={num_ids}, queue_size={queue_size}, dim={dim}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"OIM momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.lut = torch.zeros(num_ids, dim, device=device)
        self.queue = torch.zeros(queue_size, dim, device=device)
        self.queue_head = 0

    @property
    def device(self) -> torch.device:
        return self.lut.device

    @torch.no_grad()
    def update(self, feats: Tensor, ids: Tensor) -> None:
        """Fold the step's features into the memory (after the optimizer step): the same result
        as the loop over RoIs in order (see the module docstring), vectorised."""
        feats = feats.detach().to(self.lut.device, torch.float32)
        ids = ids.to(self.lut.device)
        labelled = torch.nonzero(ids >= 0).squeeze(1)
        blend_rows_sequentially_(self.lut, ids[labelled], feats[labelled],
                                 1.0 - self.momentum, self.momentum)
        queue_size = self.queue.shape[0]
        if queue_size == 0:
            return
        unlabelled = feats[ids == UNLABELED]  # [n_u, D] in RoI order
        count = unlabelled.shape[0]
        if count == 0:
            return
        # with more than queue_size features only the last queue_size survive the loop
        kept = unlabelled[-queue_size:]
        first = self.queue_head + count - kept.shape[0]
        positions = (first + torch.arange(kept.shape[0], device=self.queue.device)) % queue_size
        self.queue.index_copy_(0, positions, kept)
        self.queue_head = (self.queue_head + count) % queue_size

    def loss(self, feats: Tensor, ids: Tensor, scale: float = 30.0) -> dict[str, Tensor]:
        return oim_loss(feats, ids, self.lut, self.queue, scale)

    def state_dict(self) -> dict:
        return {"lut": self.lut.clone(), "queue": self.queue.clone(), "queue_head": self.queue_head, "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["lut"].shape) != tuple(self.lut.shape) or tuple(state["queue"].shape) != tuple(self.queue.shape):
            raise ValueError(
                f"OIM memory shapes differ: checkpoint lut {tuple(state['lut'].shape)} queue "
                f"{tuple(state['queue'].shape)}, model lut {tuple(self.lut.shape)} queue {tuple(self.queue.shape)}"
            )
        self.lut.copy_(state["lut"])
        self.queue.copy_(state["queue"])
        self.queue_head = int(state["queue_head"])
        self.momentum = float(state["momentum"])
