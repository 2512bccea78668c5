"""Instance memory: one L2-normalised feature per training GT box (CGPS §2.2, SpCL hybrid memory).

Shape glossary
--------------
N  number of memory slots (= training GT boxes, ``data.splits.slot_offsets``)
D  feature dimension (256)
P  number of positive RoIs whose features update the memory in one call

``features``     float32 [N, D]  unit rows
``labels``       int64   [N]     pseudo label of every slot (set each epoch by the pseudo labeler)
``slot_images``  int64   [N]     training-image index of every slot (scene context)

The memory is a plain object, not an ``nn.Module``: it is never part of autograd. The trainer
calls :meth:`InstanceMemory.update` explicitly *after* the optimizer step.

Distributed use (``sync_update`` hook point): :meth:`update` takes the slots/features of the
whole global batch, already gathered across ranks by the trainer (all_gather in rank order).
Every rank must call it with identical ``slots``/``feats`` in identical order so that every
rank's memory stays bit-identical; the memory itself does no communication.
"""

from __future__ import annotations

import numpy as np
import torch

from personsearch.errors import CheckpointError, PersonSearchError
from personsearch.memory.dual_memory import blend_rows_sequentially_

__all__ = ["InstanceMemory"]


def _as_long(values: torch.Tensor | np.ndarray | list[int], name: str) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise PersonSearchError(f"InstanceMemory: {name} must be integer, got {tensor.dtype}")
    return tensor.to(torch.int64).reshape(-1)


class InstanceMemory:
    """Momentum-updated bank of per-slot unit features plus per-slot pseudo labels.

    ``InstanceMemory(num_slots, dim, slot_images)``; labels start as ``arange(num_slots)``
    (every slot its own class) until the pseudo labeler sets them.
    """

    def __init__(
        self,
        num_slots: int,
        dim: int,
        slot_images: torch.Tensor | np.ndarray | list[int],
        device: torch.device | str = "cpu",
    ) -> None:
        if num_slots <= 0 or dim <= 0:
            raise PersonSearchError(
                f"InstanceMemory: num_slots and dim must be positive, got {num_slots}, {dim}"
            )
        images = _as_long(slot_images, "slot_images")
        if images.numel() != num_slots:
            raise PersonSearchError(
                f"InstanceMemory: slot_images has {images.numel()} entries for {num_slots} slots"
            )
        self.num_slots = int(num_slots)
        self.dim = int(dim)
        self.features = torch.zeros(num_slots, dim, dtype=torch.float32, device=device)
        self.labels = torch.arange(num_slots, dtype=torch.int64, device=device)
        self.slot_images = images.to(device, copy=True)

    @property
    def device(self) -> torch.device:
        """Where every state tensor lives (the model's device, set at construction)."""
        return self.features.device

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialize(self, features: torch.Tensor | np.ndarray) -> None:
        """Set every slot from ``features [N, D]`` (L2-normalised here)."""
        feats = torch.as_tensor(features, dtype=torch.float32)
        if feats.shape != (self.num_slots, self.dim):
            raise PersonSearchError(
                f"InstanceMemory.initialize: expected features of shape "
                f"({self.num_slots}, {self.dim}), got {tuple(feats.shape)}"
            )
        if not torch.isfinite(feats).all():
            raise PersonSearchError("InstanceMemory.initialize: features contain NaN or inf")
        self.features = torch.nn.functional.normalize(feats.detach().to(self.device), dim=1).contiguous()

    def set_labels(self, labels: torch.Tensor | np.ndarray) -> None:
        """Replace the pseudo-label vector (``labels [N]`` int64)."""
        new_labels = _as_long(labels, "labels")
        if new_labels.numel() != self.num_slots:
            raise PersonSearchError(
                f"InstanceMemory.set_labels: got {new_labels.numel()} labels for "
                f"{self.num_slots} slots"
            )
        self.labels = new_labels.to(self.device, copy=True)

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def update(
        self,
        slots: torch.Tensor | np.ndarray | list[int],
        feats: torch.Tensor,
        momentum: float = 0.2,
    ) -> None:
        """M[k] <- momentum * M[k] + (1 - momentum) * f, then M[k] <- M[k] / ||M[k]||.

        Applied once per row of ``feats [P, D]`` in the given order, exactly as the sequential
        loop would (a slot listed several times is updated several times, in order). The loop
        runs over "rounds": round r applies the r-th occurrence of every slot at once, so the
        number of rounds is the largest repeat count of a single slot, not P.

        Called after the optimizer step; ``feats`` is detached. With several ranks, pass the
        gathered slots/feats of all ranks, identical on every rank (see module docstring).
        """
        slot_index = _as_long(slots, "slots").to(self.device)
        values = torch.as_tensor(feats).detach().to(device=self.device, dtype=torch.float32)
        if values.dim() != 2 or values.shape[1] != self.dim or values.shape[0] != slot_index.numel():
            raise PersonSearchError(
                f"InstanceMemory.update: feats must be [{slot_index.numel()}, {self.dim}], "
                f"got {tuple(values.shape)}"
            )
        if slot_index.numel() == 0:
            return
        try:
            blend_rows_sequentially_(self.features, slot_index, values, 1.0 - momentum, momentum)
        except PersonSearchError as error:
            raise PersonSearchError(f"InstanceMemory.update: {error}") from None

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "features": self.features.clone(),
            "labels": self.labels.clone(),
            "slot_images": self.slot_images.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = {"features", "labels", "slot_images"} - set(state)
        if missing:
            raise CheckpointError(f"InstanceMemory state is missing {sorted(missing)}")
        features = torch.as_tensor(state["features"], dtype=torch.float32)
        labels = torch.as_tensor(state["labels"], dtype=torch.int64)
        images = torch.as_tensor(state["slot_images"], dtype=torch.int64)
        if features.shape != (self.num_slots, self.dim) or labels.shape != (self.num_slots,) \
                or images.shape != (self.num_slots,):
            raise CheckpointError(
                f"InstanceMemory state has features {tuple(features.shape)}, labels "
                f"{tuple(labels.shape)}, slot_images {tuple(images.shape)}; this memory has "
                f"{self.num_slots} slots of dim {self.dim}"
            )
        self.features = features.to(self.device, copy=True)
        self.labels = labels.to(self.device, copy=True)
        self.slot_images = images.to(self.device, copy=True)
