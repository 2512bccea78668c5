"""CGPS, the weakly supervised baseline (methods.md §2): one memory slot per training box,
per-epoch self-paced DBSCAN pseudo labels with scene context, the cluster contrastive loss
with hard-negative selection and the detection-context quaduplet loss. Uses no identity.

Shape glossary
--------------
N        training GT boxes = memory slots;  D  embedding dimension
R        sampled stage-2 RoIs of the batch;  P  positive RoIs (assigned to a GT box)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from personsearch.losses import cluster_contrast_loss, quaduplet_loss
from personsearch.memory import InstanceMemory
from personsearch.methods.base import Method, StepOutput
from personsearch.methods.common import (ExtractionSizes, extract_across_ranks, extract_gt_embeddings,
                                         memory_update_mask, num_slots, slot_images)
from personsearch.pseudo_labels import CGPSPseudoLabeler, pseudo_label_precision_recall

BACKGROUND = -2


class CGPSMethod(Method):
    """CGPS. Subclasses (DICL) change which feature is contrasted via :meth:`reid_features`."""

    @dataclass(frozen=True)
    class Params:
        temperature: float = 0.05
        top_percent: float = 0.6
        memory_momentum: float = 0.2  # weight of the OLD slot value
        k1: int = 30
        k2: int = 6
        eps: tuple[float, float, float] = (0.68, 0.70, 0.72)
        min_samples: int = 4
        margin: float = 0.3
        bg_weight: float = 0.25
        det_box_weight: float = 10.0  # 10 on CUHK-SYSU, 1 on PRW (CGPS config)
        cluster_weight: float = 1.0
        quaduplet_weight: float = 1.0
        # several processes: the quaduplet loss mines hardest positives / negatives /
        # background among the RoIs of every process (gathered, detached), not only its own
        cross_rank_mining: bool = False

    def __init__(self, temperature: float = 0.05, top_percent: float = 0.6,
                 memory_momentum: float = 0.2, k1: int = 30, k2: int = 6,
                 eps: tuple[float, float, float] = (0.68, 0.70, 0.72), min_samples: int = 4,
                 margin: float = 0.3, bg_weight: float = 0.25, det_box_weight: float = 10.0,
                 cluster_weight: float = 1.0, quaduplet_weight: float = 1.0,
                 cross_rank_mining: bool = False) -> None:
        self.temperature = temperature
        self.top_percent = top_percent
        self.memory_momentum = memory_momentum
        self.margin = margin
        self.bg_weight = bg_weight
        self.cross_rank_mining = cross_rank_mining
        self.labeler = CGPSPseudoLabeler(k1=k1, k2=k2, eps=tuple(eps), min_samples=min_samples)
        self.loss_weights = {"loss_det_box": det_box_weight, "loss_cluster": cluster_weight,
                             "loss_quaduplet": quaduplet_weight}
        self.extraction_sizes = ExtractionSizes()
        self.progress = True
        self.memory: InstanceMemory | None = None

    # ------------------------------------------------------------------ memory
    def _build_memory(self, model: nn.Module, train_records: Sequence[Any],
                      device: torch.device) -> None:
        """The instance memory on the model's device (banks and labels stay there)."""
        self.memory = InstanceMemory(num_slots(train_records), model.embedding_dim,
                                     slot_images(train_records), device=device)

    def _initial_features(self, model: nn.Module, train_records: Sequence[Any],
                          device: torch.device) -> Tensor:
        """GT-box features from the current (ImageNet / random) model; each process extracts
        its share of the images and the features are gathered (identical on every rank)."""
        return extract_across_ranks(
            train_records,
            lambda records: extract_gt_embeddings(model, records, self.extraction_sizes, device,
                                                  progress=self.progress and self.dist.is_main),
            self.dist)

    def setup(self, model: nn.Module, train_records: Sequence[Any], device: torch.device) -> None:
        self._build_memory(model, train_records, device)
        assert self.memory is not None
        self.memory.initialize(self._initial_features(model, train_records, device))

    def restore(self, model: nn.Module, train_records: Sequence[Any], device: torch.device,
                state: dict) -> None:
        self._build_memory(model, train_records, device)  # the state overwrites the features
        self.load_state_dict(state)

    # ------------------------------------------------------------------ pseudo labels
    def pseudo_labels(self) -> np.ndarray:
        assert self.memory is not None
        return self.memory.labels.cpu().numpy()

    def on_epoch_start(self, model: nn.Module, epoch: int) -> dict[str, float]:
        assert self.memory is not None
        labels = torch.zeros(self.memory.num_slots, dtype=torch.int64)
        stats: dict[str, float] = {}
        if self.dist.is_main:
            # the one host copy of the memory per epoch
            result = self.labeler(self.memory.features.cpu(), self.memory.slot_images.cpu())
            labels = torch.from_numpy(np.asarray(result.labels, dtype=np.int64))
            stats = {f"pseudo/{k}": float(v) for k, v in result.stats.items()}
        self.memory.set_labels(self.dist.broadcast_tensor(labels))
        self.labeler.indep_thres = self.dist.broadcast_object(self.labeler.indep_thres)
        return self.dist.broadcast_object(stats)

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
        out = self.run_model(model, batch, epoch)
        feats, extra_losses = self.reid_features(model, batch, out)
        slots = out.roi_slots
        positive = slots >= 0
        memory_labels = self.memory.labels.to(slots.device)
        roi_labels = torch.where(positive, memory_labels[slots.clamp(min=0)],
                                 torch.full_like(slots, BACKGROUND))
        unit_feats = nn.functional.normalize(feats, dim=1)
        losses = {
            **out.losses,
            **extra_losses,
            **cluster_contrast_loss(unit_feats[positive], slots[positive],
                                    self.memory.features.to(feats.device), memory_labels,
                                    self.temperature, self.top_percent),
            **quaduplet_loss(feats, roi_labels, self.margin, self.bg_weight,
                             *self._other_ranks(feats, roi_labels)),
        }
        # RoIs of a distributed sampler's padding repeats do not update the memory
        update = positive & memory_update_mask(batch, out.roi_image)
        pending = {"slots": slots[update], "feats": unit_feats[update].detach()}
        return StepOutput(losses, pending=pending)

    def _other_ranks(self, feats: Tensor, labels: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(features, labels) of the other processes' RoIs for cross-rank mining, or (None,
        None) when it is off or only one process runs (every rank calls it: a collective)."""
        if not (self.cross_rank_mining and self.dist.enabled):
            return None, None
        return (self.dist.gather_from_other_ranks(feats.detach()),
                self.dist.gather_from_other_ranks(labels))

    def after_step(self, pending: dict[str, Any]) -> None:
        assert self.memory is not None
        self.memory.update(pending["slots"], pending["feats"], momentum=self.memory_momentum)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        assert self.memory is not None
        return {"memory": self.memory.state_dict(), "labeler": self.labeler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        assert self.memory is not None
        self.memory.load_state_dict(state["memory"])
        self.labeler.load_state_dict(state["labeler"])
