"""SeqNet with OIM: the fully supervised reference (docs/methods.md), the upper bound of every
comparison table. The only method that reads training identities: it declares
``supervised = True``, so the train CLI puts them in its context
(``MethodContext.slot_true_ids``; weakly supervised methods never get them).

Shape glossary
--------------
N        training GT boxes (slots);  K  training identities (from the data)
R        sampled stage-2 RoIs of the batch;  D  embedding dimension
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from personsearch.errors import ConfigError
from personsearch.labels import BACKGROUND, UNLABELED
from personsearch.losses.oim import OIMMemory
from personsearch.methods.base import Method, StepOutput
from personsearch.methods.common import memory_update_mask, num_slots
from personsearch.methods.context import MethodContext


def identity_indices(slot_true_ids: np.ndarray) -> tuple[torch.Tensor, int]:
    """True ids per slot (-1 unlabeled) -> ([N] contiguous identity index 0..K-1 or
    UNLABELED, K)."""
    true = np.asarray(slot_true_ids, dtype=np.int64)
    labelled = true >= 0
    unique, index = np.unique(true[labelled], return_inverse=True)
    slot_ids = np.full(true.shape, UNLABELED, dtype=np.int64)
    slot_ids[labelled] = index
    return torch.from_numpy(slot_ids), int(unique.size)


class SeqNetMethod(Method):
    """OIM re-id loss on the stage-2 embeddings of positive RoIs, plus the detection losses."""

    name = "seqnet"
    supervised = True

    @dataclass(frozen=True)
    class Params:
        queue_size: int = 5000  # SeqNet: 5,000 CUHK-SYSU / 500 PRW
        momentum: float = 0.5
        scale: float = 30.0
        det_box_weight: float = 10.0  # stage-1 box regression (SeqNet)
        oim_weight: float = 1.0  # SeqNet: 1; lower only to study how OIM competes with detection

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.loss_weights = {"loss_det_box": self.params.det_box_weight,
                             "loss_oim": self.params.oim_weight}
        self.slot_ids: torch.Tensor | None = None  # [N] identity index 0..K-1 or -1
        self.num_ids = 0
        self.memory: OIMMemory | None = None

    def setup(self, model: nn.Module, context: MethodContext) -> None:
        super().setup(model, context)
        if context.slot_true_ids is None:
            raise ConfigError("method seqnet is supervised: the training identities were not given "
                              "(MethodContext.slot_true_ids, from load_train_identities)")
        slot_ids, self.num_ids = identity_indices(context.slot_true_ids)
        if slot_ids.numel() != num_slots(context.train_records):
            raise ConfigError(f"method seqnet: {slot_ids.numel()} identities for "
                              f"{num_slots(context.train_records)} training boxes")
        if self.num_ids == 0:
            raise ConfigError("method seqnet: the training split has no labelled person")
        # every state tensor on the model's device: no per-step host<->device copies
        self.memory = OIMMemory(self.num_ids, self.params.queue_size, model.embedding_dim,
                                self.params.momentum, device=context.device)
        self.slot_ids = slot_ids.to(context.device)

    def _roi_ids(self, roi_slots: torch.Tensor) -> torch.Tensor:
        """[R] identity of each RoI's GT (BACKGROUND for background RoIs); no host sync."""
        assert self.slot_ids is not None
        slot_ids = self.slot_ids.to(roi_slots.device)
        return torch.where(roi_slots >= 0, slot_ids[roi_slots.clamp(min=0)],
                           torch.full_like(roi_slots, BACKGROUND))

    def training_step(self, model: nn.Module, batch: dict, epoch: int) -> StepOutput:
        assert self.memory is not None, "setup() was not called"
        out = model(batch["images"], batch["image_sizes"], batch["targets"])
        ids = self._roi_ids(out.roi_slots)
        persons = ids != BACKGROUND
        feats = out.roi_embeddings[persons]
        losses = {**out.losses, **self.memory.loss(feats, ids[persons], self.params.scale)}
        # RoIs of a distributed sampler's padding repeats do not update the memory
        update = persons & memory_update_mask(batch, out.roi_image)
        return StepOutput(losses, pending={"feats": out.roi_embeddings[update].detach(),
                                           "ids": ids[update]})

    def after_step(self, pending: dict[str, Any]) -> None:
        assert self.memory is not None
        self.memory.update(pending["feats"], pending["ids"])

    def state_dict(self) -> dict:
        assert self.memory is not None
        return {"oim": self.memory.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        assert self.memory is not None
        self.memory.load_state_dict(state["oim"])
