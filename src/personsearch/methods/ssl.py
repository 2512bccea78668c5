"""SSL — Self-similarity driven Scale-invariant Learning (docs/methods.md §3, from the arXiv v1
and ICCV texts). On top of the CGPS baseline (SeqNet-style two-stage model, DBSCAN pseudo labels,
cluster contrast + quaduplet): a multi-scale exemplar branch with the scale-invariant loss, two
memory banks (M_I main branch, M_M exemplar branch, Eq. 5) and dynamic multi-label learning
(Eq. 7-12). Inference uses the main branch only.

Switches reproduce the paper's ablation rows (README "SSL ablation"):
  baseline   use_scale_loss=False, use_dml=False, use_cluster=True
  +DML       use_dml=True            (DML on M_I; no exemplar branch, so M_M mirrors M_I)
  +SL        use_scale_loss=True
  full       use_scale_loss=True, use_dml=True (arXiv v1 keeps the cluster term; ICCV drops it)
  scales=[] + original_scale   "original scale only";  one scale;  use_masks off = "w/o
  background filtering";  fixed_threshold=0.7 = fixed instead of dynamic threshold.

Shape glossary
--------------
N   training GT boxes = memory slots;  D  embedding dimension
G   GT boxes of the batch (persons);   K  resized exemplar scales
R   sampled stage-2 RoIs;  P  positive RoIs
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from personsearch.comm import unwrap_model
from personsearch.errors import ConfigError
from personsearch.losses import (cluster_contrast_loss, multilabel_loss, quaduplet_loss,
                                 scale_invariant_loss)
from personsearch.memory import DualMemory
from personsearch.methods.base import Method, StepOutput
from personsearch.methods.common import (ClusterParams, cluster_labeler, extract_across_ranks,
                                         extract_box_features, extract_gt_embeddings,
                                         memory_update_mask, multilabel_precision_recall,
                                         num_slots, refresh_cluster_labels, roi_labels,
                                         slot_images)
from personsearch.methods.context import MethodContext
from personsearch.models.exemplars import exemplar_embeddings
from personsearch.pseudo_labels import (dynamic_threshold, multilabel_targets,
                                        pseudo_label_precision_recall)


class SSLMethod(Method):
    name = "ssl"
    renamed_params = {"margin": "scale_margin"}

    @dataclass(frozen=True)
    class Params(ClusterParams):  # the CGPS baseline parts, then SSL's own
        # exemplar branch
        scales: tuple[tuple[int, int], ...] = ((112, 48), (224, 96), (448, 192))  # (h, w)
        original_scale: bool = True
        use_masks: bool = True
        # losses
        use_scale_loss: bool = True
        use_dml: bool = True
        use_cluster: bool = True  # arXiv v1: DBSCAN + cluster contrast kept; ICCV: False
        use_quaduplet: bool = True
        scale_margin: float = 0.3  # margin of the scale-invariant loss
        gamma: float = 0.05
        t_s: float = 0.6
        alpha: float = 0.1
        beta: float = -0.1
        fixed_threshold: float | None = None
        delta: float = 5.0
        neg_ratio: float = 0.01  # MMCL hard negatives (1.0 = paper text)
        reduction: Literal["mean", "sum"] = "mean"  # "sum" = paper text
        lam: float = 0.8
        # loss weights
        det_box_weight: float = 10.0
        scale_weight: float = 1.0
        dml_weight: float = 1.0
        cluster_weight: float = 1.0

        def __post_init__(self) -> None:
            if self.use_scale_loss and not (self.scales or self.original_scale):
                raise ConfigError("method.params.scales: the scale-invariant loss needs exemplars "
                                  "(a scale, or original_scale: true)")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.labeler = cluster_labeler(p)
        self.loss_weights = {"loss_det_box": p.det_box_weight, "loss_scale": p.scale_weight,
                             "loss_dml_inst": p.dml_weight, "loss_dml_scale": p.dml_weight,
                             "loss_cluster": p.cluster_weight}
        self.memory: DualMemory | None = None
        self.epoch = 0

    # ------------------------------------------------------------------ helpers
    @property
    def uses_exemplars(self) -> bool:
        return self.params.use_scale_loss

    def threshold(self, epoch: int) -> float:
        p = self.params
        if p.fixed_threshold is not None:
            return float(p.fixed_threshold)
        return dynamic_threshold(epoch, p.t_s, p.alpha, p.beta)

    def _exemplars(self, model: nn.Module, images: Tensor, boxes: Sequence[Tensor],
                   masks: Sequence[Tensor | None] | None) -> Tensor:
        """[G, K+1, D]; with no resized scale the original one stands in as the positive."""
        p = self.params
        scales = [tuple(s) for s in p.scales]
        exemplars = exemplar_embeddings(model, images, boxes, scales,
                                        masks if p.use_masks else None,
                                        original_scale=p.original_scale)
        if not scales:  # "original scale only": positive = the original-scale exemplar
            exemplars = torch.cat([exemplars, exemplars[:, :1]], dim=1)
        return exemplars

    # ------------------------------------------------------------------ memory
    def _build_memory(self, model: nn.Module, context: MethodContext) -> None:
        """Both banks, slot images and labels on the model's device."""
        records = context.train_records
        self.memory = DualMemory(num_slots(records), model.embedding_dim, slot_images(records),
                                 lam=self.params.lam, device=context.device)

    def _mean_exemplar(self, model: nn.Module, images: Tensor, image_sizes: list, boxes: Tensor,
                       record: Any, resized: tuple[int, int]) -> Tensor:
        """[n, D] unit mean exemplar embedding of each box of one test-resized image (masked
        with the record's person masks when the run has them)."""
        from personsearch.data.masks import load_person_masks
        from personsearch.data.transforms import resize_mask

        assert self.context is not None
        mask = None
        if self.params.use_masks and self.context.masks_root is not None:
            label_map = load_person_masks(self.context.masks_root, record)
            if label_map is not None:
                mask = resize_mask(label_map, resized)
        exemplars = self._exemplars(model, images, [boxes], [mask])
        return F.normalize(exemplars.mean(dim=1), dim=1)

    def setup(self, model: nn.Module, context: MethodContext) -> None:
        """Both banks from the current model: M_I from the GT-box embeddings, M_M from the mean
        exemplar embeddings (a copy of M_I without the exemplar branch); every process extracts
        its share of the images and the features are gathered."""
        super().setup(model, context)
        self._build_memory(model, context)
        assert self.memory is not None
        sizes, device = context.extraction_sizes, context.device
        inst = extract_across_ranks(
            context.train_records, lambda records: extract_gt_embeddings(
                model, records, sizes, device, progress=context.show_progress), context.dist)
        scale = (extract_across_ranks(
            context.train_records, lambda records: extract_box_features(
                model, records, sizes, device, self._mean_exemplar, context.show_progress,
                "memory init (exemplars)"), context.dist)
            if self.uses_exemplars else inst.clone())
        self.memory.initialize(inst, scale)

    def restore(self, model: nn.Module, context: MethodContext, state: dict) -> None:
        Method.setup(self, model, context)
        self._build_memory(model, context)  # the state overwrites the features
        self.load_state_dict(state)

    # ------------------------------------------------------------------ pseudo labels
    def on_epoch_start(self, model: nn.Module, epoch: int) -> dict[str, float]:
        assert self.memory is not None
        self.epoch = epoch
        stats: dict[str, float] = {"threshold": self.threshold(epoch)}
        if not self.params.use_cluster:
            return stats
        stats.update(refresh_cluster_labels(self.labeler, self.memory, self.memory.combined,
                                            self.dist))
        return stats

    def pseudo_label_diagnostics(self, slot_true_ids: np.ndarray) -> dict[str, float]:
        """Pairwise precision/recall of the dynamic multi-labels (DML) and, when clustering is
        on, of the cluster labels, against the true ids (paper Fig. 4). Diagnostics only."""
        assert self.memory is not None
        out = {f"dml_{k}": v for k, v in multilabel_precision_recall(
            self.memory.combined().cpu(), self.memory.slot_images.cpu(), self.threshold(self.epoch),
            slot_true_ids).items()}
        if self.params.use_cluster:
            out.update({f"cluster_{k}": v for k, v in pseudo_label_precision_recall(
                self.memory.labels.cpu().numpy(), slot_true_ids).items()})
        return out

    # ------------------------------------------------------------------ training
    def training_step(self, model: nn.Module, batch: dict, epoch: int) -> StepOutput:
        assert self.memory is not None, "setup() was not called"
        p = self.params
        out = model(batch["images"], batch["image_sizes"], batch["targets"])
        losses: dict[str, Tensor] = dict(out.losses)
        memory = self.memory
        device = out.gt_embeddings.device

        # CGPS baseline: cluster contrast on positive RoIs, quaduplet on all RoIs
        if p.use_cluster or p.use_quaduplet:
            slots = out.roi_slots
            positive = slots >= 0
            labels = memory.labels.to(slots.device)
            if p.use_cluster:
                losses.update(cluster_contrast_loss(out.roi_embeddings[positive], slots[positive],
                                                    memory.combined().to(device), labels,
                                                    p.temperature, p.top_percent))
            if p.use_quaduplet:
                losses.update(quaduplet_loss(out.roi_embeddings,
                                             roi_labels(slots, labels if p.use_cluster else None),
                                             p.quaduplet_margin, p.bg_weight))

        inst = out.gt_embeddings  # f_i: main branch at the exact GT box  [G, D]
        gt_slots = out.gt_slots
        if self.uses_exemplars:
            boxes = [t["boxes"] for t in batch["targets"]]
            masks = [t.get("masks") for t in batch["targets"]]
            exemplars = self._exemplars(unwrap_model(model), batch["images"], boxes, masks)
            losses.update(scale_invariant_loss(inst, exemplars, out.gt_image, p.scale_margin, p.gamma))
            scale_feats = F.normalize(exemplars.mean(dim=1), dim=1)  # f_i^h
        else:
            scale_feats = inst

        if p.use_dml and gt_slots.numel():
            slot_index = gt_slots.to(memory.device)
            sim = memory.similarities(slot_index)
            targets = multilabel_targets(sim, memory.slot_images, self.threshold(epoch),
                                         own_slots=slot_index).to(device)
            inst_loss = multilabel_loss(memory.bank_main.to(device), inst, targets, p.delta,
                                        p.neg_ratio, p.reduction)["loss_multilabel"]
            scale_loss = multilabel_loss(memory.bank_multiscale.to(device), scale_feats, targets,
                                         p.delta, p.neg_ratio, p.reduction)["loss_multilabel"]
            losses["loss_dml_inst"] = inst_loss
            losses["loss_dml_scale"] = scale_loss
        # GT boxes of a distributed sampler's padding repeats do not update the memory
        update = memory_update_mask(batch, out.gt_image)
        pending = {"slots": gt_slots[update], "inst": inst.detach()[update],
                   "scale": scale_feats.detach()[update]}
        return StepOutput(losses, pending=pending)

    def after_step(self, pending: dict[str, Any]) -> None:
        assert self.memory is not None
        self.memory.update(pending["slots"], pending["inst"], pending["scale"])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        assert self.memory is not None
        return {"memory": self.memory.state_dict(), "labeler": self.labeler.state_dict(),
                "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        assert self.memory is not None
        self.memory.load_state_dict(state["memory"])
        self.labeler.load_state_dict(state["labeler"])
        self.epoch = int(state.get("epoch", 0))
