"""CGPS, the weakly supervised baseline (docs/methods.md §2): one memory slot per training box,
per-epoch self-paced DBSCAN pseudo labels with scene context, the cluster contrastive loss
with hard-negative selection and the detection-context quaduplet loss. Uses no identity.

Shape glossary
--------------
N        training GT boxes = memory slots;  D  embedding dimension
R        sampled stage-2 RoIs of the batch;  P  positive RoIs (assigned to a GT box)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from personsearch.losses import cluster_contrast_loss, quaduplet_loss
from personsearch.memory import InstanceMemory
from personsearch.methods.base import Method, StepOutput
from personsearch.methods.common import (ClusterParams, cluster_labeler, extract_across_ranks,
                                         extract_gt_embeddings, memory_update_mask, num_slots,
                                         refresh_cluster_labels, roi_labels, slot_images)
from personsearch.methods.context import MethodContext
from personsearch.pseudo_labels import pseudo_label_precision_recall


class CGPSMethod(Method):
    """CGPS. Subclasses (DICL) change which feature is contrasted via :meth:`reid_features`."""

    name = "cgps"
    renamed_params = {"margin": "quaduplet_margin"}

    @dataclass(frozen=True)
    class Params(ClusterParams):
        memory_momentum: float = 0.2  # weight of the OLD slot value
        det_box_weight: float = 10.0  # 10 on CUHK-SYSU, 1 on PRW (CGPS config)
        cluster_weight: float = 1.0
        quaduplet_weight: float = 1.0
        # several processes: the quaduplet loss mines hardest positives / negatives /
        # background among the RoIs of every process (gathered, detached), not only its own
        cross_rank_mining: bool = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.labeler = cluster_labeler(p)
        self.loss_weights = {"loss_det_box": p.det_box_weight, "loss_cluster": p.cluster_weight,
                             "loss_quaduplet": p.quaduplet_weight}
        self.memory: InstanceMemory | None = None

    # ------------------------------------------------------------------ memory
    def _build_memory(self, model: nn.Module, context: MethodContext) -> None:
        """The instance memory on the model's device (banks and labels stay there)."""
        records = context.train_records
        self.memory = InstanceMemory(num_slots(records), model.embedding_dim,
                                     slot_images(records), device=context.device)

    def setup(self, model: nn.Module, context: MethodContext) -> None:
        """The memory, filled with the GT-box features of the current (ImageNet / random)
        model; each process extracts its share of the images and the features are gathered
        (identical on every rank)."""
        super().setup(model, context)
        self._build_memory(model, context)
        assert self.memory is not None
        self.memory.initialize(extract_across_ranks(
            context.train_records,
            lambda records: extract_gt_embeddings(model, records, context.extraction_sizes,
                                                  context.device, progress=context.show_progress),
            context.dist))

    def restore(self, model: nn.Module, context: MethodContext, state: dict) -> None:
        Method.setup(self, model, context)
        self._build_memory(model, context)  # the state overwrites the features
        self.load_state_dict(state)

    # ------------------------------------------------------------------ pseudo labels
    def pseudo_labels(self) -> np.ndarray:
        assert self.memory is not None
        return self.memory.labels.cpu().numpy()

    def on_epoch_start(self, model: nn.Module, epoch: int) -> dict[str, float]:
        memory = self.memory
        assert memory is not None
        return refresh_cluster_labels(self.labeler, memory, lambda: memory.features, self.dist)

    def pseudo_label_diagnostics(self, slot_true_ids: np.ndarray) -> dict[str, float]:
        """Pairwise precision/recall of the current labels against the true ids (diagnostics
        only; the ids never reach training)."""
        return pseudo_label_precision_recall(self.pseudo_labels(), slot_true_ids)

    # ------------------------------------------------------------------ training
    def reid_features(self, model: nn.Module, batch: dict, out: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Features [R, D] of the sampled RoIs that the memory losses contrast, plus extra
        losses. CGPS: the stage-2 embeddings themselves."""
        return out.roi_embeddings, {}

    def run_model(self, model: nn.Module, batch: dict, epoch: int) -> Any:
        return model(batch["images"], batch["image_sizes"], batch["targets"])

    def training_step(self, model: nn.Module, batch: dict, epoch: int) -> StepOutput:
        assert self.memory is not None, "setup() was not called"
        p = self.params
        out = self.run_model(model, batch, epoch)
        feats, extra_losses = self.reid_features(model, batch, out)
        slots = out.roi_slots
        positive = slots >= 0
        memory_labels = self.memory.labels.to(slots.device)
        labels = roi_labels(slots, memory_labels)
        unit_feats = nn.functional.normalize(feats, dim=1)
        losses = {
            **out.losses,
            **extra_losses,
            **cluster_contrast_loss(unit_feats[positive], slots[positive],
                                    self.memory.features.to(feats.device), memory_labels,
                                    p.temperature, p.top_percent),
            **quaduplet_loss(feats, labels, p.quaduplet_margin, p.bg_weight,
                             *self._other_ranks(feats, labels)),
        }
        # RoIs of a distributed sampler's padding repeats do not update the memory
        update = positive & memory_update_mask(batch, out.roi_image)
        pending = {"slots": slots[update], "feats": unit_feats[update].detach()}
        return StepOutput(losses, pending=pending)

    def _other_ranks(self, feats: Tensor, labels: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(features, labels) of the other processes' RoIs for cross-rank mining, or (None,
        None) when it is off or only one process runs (every rank calls it: a collective)."""
        if not (self.params.cross_rank_mining and self.dist.enabled):
            return None, None
        return (self.dist.gather_from_other_ranks(feats.detach()),
                self.dist.gather_from_other_ranks(labels))

    def after_step(self, pending: dict[str, Any]) -> None:
        assert self.memory is not None
        self.memory.update(pending["slots"], pending["feats"], momentum=self.params.memory_momentum)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        assert self.memory is not None
        return {"memory": self.memory.state_dict(), "labeler": self.labeler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        assert self.memory is not None
        self.memory.load_state_dict(state["memory"])
        self.labeler.load_state_dict(state["labeler"])
