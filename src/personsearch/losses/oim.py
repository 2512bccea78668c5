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
gradient). ``OIMMemory.update(feats, ids)`` is called explicitly after the optimizer step:
lut[id] <- normalise(m * lut[id] + (1 - m) * feat) in RoI order, and every unlabelled
feature is written into the queue at the head, which then advances circularly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

UNLABELED = -1
BACKGROUND = -2


def oim_logits(feats: Tensor, lut: Tensor, queue: Tensor, scale: float = 30.0) -> Tensor:
    """[R, L + Q] scaled cosine logits against the lookup table then the queue."""
    bank = torch.cat([lut, queue], dim=0).detach().to(feats.dtype)
    return scale * feats @ bank.t()


def oim_loss(feats: Tensor, ids: Tensor, lut: Tensor, queue: Tensor, scale: float = 30.0) -> dict[str, Tensor]:
    """{loss_oim}: cross-entropy of labelled RoIs over [lut; queue]; unlabelled and background
    RoIs are ignored (zero loss, still on the graph, when no RoI is labelled)."""
    if feats.shape[0] != ids.shape[0]:
        raise ValueError(f"oim_loss: {feats.shape[0]} features but {ids.shape[0]} ids")
    if feats.shape[1] != lut.shape[1] or feats.shape[1] != queue.shape[1]:
        raise ValueError(f"oim_loss: feature dim {feats.shape[1]} differs from the memory's {lut.shape[1]}")
    if ids.numel() and int(ids.max()) >= lut.shape[0]:
        raise ValueError(f"oim_loss: id {int(ids.max())} out of range for {lut.shape[0]} identities")
    labelled = ids >= 0
    if not bool(labelled.any()):
        return {"loss_oim": feats.float().sum() * 0.0}
    logits = oim_logits(feats[labelled].float(), lut.float(), queue.float(), scale)
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

    @torch.no_grad()
    def update(self, feats: Tensor, ids: Tensor) -> None:
        """Fold the step's features into the memory (after the optimizer step)."""
        feats = feats.detach().to(self.lut.device, torch.float32)
        ids = ids.to(self.lut.device)
        for feat, identity in zip(feats, ids.tolist()):
            if identity >= 0:
                row = self.momentum * self.lut[identity] + (1.0 - self.momentum) * feat
                self.lut[identity] = row / row.norm().clamp(min=1e-12)
            elif identity == UNLABELED and self.queue.shape[0] > 0:
                self.queue[self.queue_head] = feat
                self.queue_head = (self.queue_head + 1) % self.queue.shape[0]

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
