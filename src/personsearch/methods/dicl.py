"""DICL — Deep Intra-Image Contrastive Learning (docs/methods.md §4, read from the official code):
the CGPS baseline plus a Siamese crop branch. Every GT person is cropped from the (clean)
input and resized to ``crop_size`` (RoIAlign at stride 1), embedded by the same backbone and
head (shared weights) to g_k; the scene branch sees the image with random occlusion patches
(OIC). Spatial-invariant contrast (SIC): many-to-one loss 1 − f_r·g_k over positive RoIs,
relational symmetric KL (weight 0.1); the memory losses act on u_r = (f_r + g_k)/2.

Inference: scene-only (no extra cost) or the official fusion (each box's scene embedding
averaged with its crop-branch embedding, not re-normalised), selectable.

Shape glossary
--------------
B  images;  G  GT boxes of the batch;  R  sampled RoIs;  P  positive RoIs;  D  embedding dim
crops  [G, 3, h, w] with (h, w) = crop_size
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from personsearch.comm import seeded_generator, unwrap_model
from personsearch.data.occlusion import occlusion_mask_boxes
from personsearch.losses import dicl_relation_kl_loss, dicl_similarity_loss, fuse_features
from personsearch.methods.cgps import CGPSMethod
from personsearch.models.exemplars import crop_and_resize, person_rois


class DICLMethod(CGPSMethod):
    name = "dicl"

    @dataclass(frozen=True)
    class Params(CGPSMethod.Params):
        crop_size: tuple[int, int] = (224, 96)  # (h, w)
        oic: bool = True
        oic_prob: float = 0.5
        oic_patches: int = 2
        oic_grid: tuple[int, int] = (14, 6)
        fix_small_box_quirk: bool = False
        use_sim: bool = True
        use_kl: bool = True
        fuse_memory_features: bool = True  # memory losses on u_r (off = scene features f_r)
        sim_weight: float = 1.0
        kl_weight: float = 0.1
        inference_fusion: bool = True  # personsearch eval --fusion auto (test_feature_extractors)
        seed: int = 0
        # several processes: the relation matrices span every process's RoIs (gathered, detached)
        cross_rank_relation: bool = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.loss_weights.update({"loss_sim": self.params.sim_weight,
                                  "loss_kl": self.params.kl_weight})

    def _generator(self, batch: dict, epoch: int) -> torch.Generator:
        """Masking randomness from (seed, epoch, image indices): reproducible and the same
        after a resume, with no state to checkpoint."""
        indices = torch.as_tensor(batch["image_indices"]).reshape(-1).tolist()  # one host sync
        return seeded_generator(self.params.seed, epoch, *indices)

    def run_model(self, model: nn.Module, batch: dict, epoch: int) -> Any:
        images = batch["images"]
        p = self.params
        if p.oic:
            boxes = [t["boxes"] for t in batch["targets"]]
            images = occlusion_mask_boxes(images, boxes, p.oic_prob, p.oic_patches,
                                          p.oic_grid, self._generator(batch, epoch),
                                          p.fix_small_box_quirk)
        return model(images, batch["image_sizes"], batch["targets"])

    def reid_features(self, model: nn.Module, batch: dict, out: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """u_r = (f_r + g_k(r)) / 2 for positive RoIs (f_r for background) and the SIC losses."""
        p = self.params
        rois = person_rois([t["boxes"] for t in batch["targets"]])
        crops = crop_and_resize(batch["images"], rois.to(batch["images"].device), p.crop_size)
        crop_feats = unwrap_model(model).embed_crops(crops)  # g  [G, D]
        slots = out.roi_slots
        positive = torch.nonzero(slots >= 0).squeeze(1)
        # position of each positive RoI's GT among the batch's GT boxes (slots are unique)
        order = torch.argsort(out.gt_slots)
        gt_position = order[torch.searchsorted(out.gt_slots[order], slots[positive])]
        scene = out.roi_embeddings[positive]
        crop_per_roi = crop_feats[gt_position]
        losses: dict[str, Tensor] = {}
        if p.use_sim:
            losses.update(dicl_similarity_loss(scene, crop_per_roi))
        if p.use_kl:
            extra = (None, None)
            if p.cross_rank_relation and self.dist.enabled:  # a collective: every rank calls it
                extra = (self.dist.gather_from_other_ranks(scene.detach()),
                         self.dist.gather_from_other_ranks(crop_per_roi.detach()))
            losses.update(dicl_relation_kl_loss(scene, crop_per_roi, *extra))
        feats = out.roi_embeddings
        if p.fuse_memory_features:
            feats = feats.clone()
            feats[positive] = fuse_features(scene, crop_per_roi)
        return feats, losses

    @classmethod
    def test_feature_extractors(cls, params: Any, fusion: str = "auto") -> dict[str, Any]:
        """The official fusion when trained with ``inference_fusion`` (``fusion`` "auto") or
        asked for ("on"); the scene features alone otherwise."""
        if fusion == "on" or (fusion == "auto" and params.inference_fusion):
            return fused_extractors(crop_size=params.crop_size)
        return {}


def fused_extractors(crop_size: tuple[int, int] = (224, 96)) -> dict[str, Any]:
    """Test-time feature extractors with the official DICL fusion: every box's scene embedding
    averaged with the crop-branch embedding of the same box (not re-normalised). The official
    code fuses the 300 proposals before NMS; here the final detections are fused (same
    features for the boxes that survive, far cheaper)."""

    def crops_of(images: Tensor, boxes: list[Tensor]) -> Tensor:
        return crop_and_resize(images, person_rois(boxes).to(images.device), crop_size)

    def gallery(model: nn.Module, images: Tensor, image_sizes: list) -> list:
        detections = model.detect(images, image_sizes)
        out = []
        for index, det in enumerate(detections):
            boxes = [torch.zeros(0, 4, device=images.device)] * index + [det.boxes]
            crop_feats = model.embed_crops(crops_of(images[: index + 1], boxes)) if len(det.boxes) \
                else det.embeddings
            out.append((det.boxes, det.scores, fuse_features(det.embeddings, crop_feats.float())))
        return out

    def query(model: nn.Module, images: Tensor, image_sizes: list, boxes: list) -> list:
        scene = model.embed_boxes(images, image_sizes, boxes)
        crop_feats = model.embed_crops(crops_of(images, boxes)).float()
        out, start = [], 0
        for feats in scene:
            out.append(fuse_features(feats, crop_feats[start:start + len(feats)]))
            start += len(feats)
        return out

    return {"gallery_extractor": gallery, "query_extractor": query}
