"""CGPS's own RoI head (official code, mmdetection R50-C4 ``CGPSHead``; docs/methods.md §2.1): ONE
RoI stage, the alternative to SeqNet's two sequential heads (``roi_heads.SequentialRoIHeads``).

Shape glossary
--------------
B           images in the batch
C4, C5      channels of the backbone map and of the res5 head output (1024 / 2048 for ResNet-50)
h, w        RoI output size (14 x 14; res5 halves it to 7 x 7)
K           RoIs pooled in one call;  R sampled RoIs of the batch;  G = sum G_i GT boxes
roi maps    [K, C4, h, w] RoIAlign of the C4 map (CGPS: adaptive sampling, aligned=True)
feat_res4   [K, C4] global max pool of the roi map;  feat_res5 [K, C5] max pool after res5
logits      [K, 2] softmax classes (0 background, 1 person); deltas [K, 8] class-specific,
            box-coder weights 10, 10, 5, 5 (= mmdetection's target stds 0.1, 0.1, 0.2, 0.2)
D           embedding dimension (256): L2-normalise(concat(Linear(C5 -> D/2)(feat_res5),
            Linear(C4 -> D/2)(feat_res4))) — no BatchNorm

Training: RoIs sampled among proposals + GT (IoU >= fg_iou_thresh person, < bg_iou_thresh
background, between ignored; CGPS 0.5 / 0.1), classified (softmax CE = loss_det_cls) and
regressed (``box_loss``, CGPS: L1, = loss_det_box) from feat_res5; their embeddings come from
the same pooled features. The GT boxes go through the head in the same pass (gt_embeddings).
There is no second stage, no re-id regressor and no person logit.

Inference: score = softmax person probability of each proposal, box = its person deltas
decoded and clipped, embedding = the proposal's own embedding (before regression, as CGPS);
score > score_thresh, NMS at nms_thresh, <= detections_per_image (CGPS: 0.05, 0.4, 100).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from personsearch.losses.detection import DEFAULT_BOX_LOSS, check_box_loss, fast_rcnn_loss
from personsearch.models.roi_heads import (
    Detections,
    FastRCNNPredictor,
    ResHead,
    RoIHeadsTrainOutput,
    RoIPooler,
    _person_boxes,
    batch_index,
    boxes_to_rois,
    embed_given_boxes,
    rois_slots,
    sample_rois,
    select_detections,
)
from personsearch.models.sampling import BalancedSampler, Matcher


class CGPSEmbedding(nn.Module):
    """feat_res4 [K, C4], feat_res5 [K, C5] -> (embeddings [K, D] unit norm). Weights N(0, 0.001),
    biases 0 (CGPS init)."""

    def __init__(self, res4_channels: int, res5_channels: int, dim: int = 256) -> None:
        super().__init__()
        if dim <= 0 or dim % 2:
            raise ValueError(f"embedding dimension must be a positive even number, got {dim}")
        self.dim = dim
        self.project_res5 = nn.Linear(res5_channels, dim // 2)
        self.project_res4 = nn.Linear(res4_channels, dim // 2)
        for layer in (self.project_res5, self.project_res4):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.constant_(layer.bias, 0.0)

    def forward(self, feat_res4: Tensor, feat_res5: Tensor) -> Tensor:
        v = torch.cat([self.project_res5(feat_res5), self.project_res4(feat_res4)], dim=1).float()
        return v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)


class CGPSRoIHeads(nn.Module):
    """One RoI stage: pooler -> res5 -> (classifier + regressor, embedding)."""

    def __init__(
        self,
        pooler: RoIPooler,
        head: ResHead,
        box_predictor: FastRCNNPredictor,
        embedding: CGPSEmbedding,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_image: int,
        min_box_size: float = 1e-2,
        box_loss: str = DEFAULT_BOX_LOSS,
    ) -> None:
        super().__init__()
        self.pooler = pooler
        self.head = head
        self.box_predictor = box_predictor
        self.embedding = embedding
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality=False)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_image = int(detections_per_image)
        self.min_box_size = float(min_box_size)
        self.box_loss = check_box_loss(box_loss)

    def head_outputs(self, roi_maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """roi maps -> (class logits [K, 2], deltas [K, 8], embeddings [K, D])."""
        feat_res4, feat_res5 = self.head(roi_maps)
        class_logits, box_regression = self.box_predictor(feat_res5)
        return class_logits, box_regression, self.embedding(feat_res4, feat_res5)

    def reid_features(self, roi_maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """roi maps -> (embeddings [K, D], person logits [K] = logit difference, feat_res5)
        (the interface SequentialRoIHeads offers to crop branches)."""
        feat_res4, feat_res5 = self.head(roi_maps)
        class_logits, _ = self.box_predictor(feat_res5)
        person_logits = (class_logits[:, 1] - class_logits[:, 0]).float()
        return self.embedding(feat_res4, feat_res5), person_logits, feat_res5

    def embed_boxes(self, features: Tensor, boxes_list: list[Tensor]) -> list[Tensor]:
        """Embeddings [n_i, D] of the given boxes (no sampling, no regression)."""
        return embed_given_boxes(self, features, boxes_list)

    def forward(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> RoIHeadsTrainOutput:
        device = features.device
        gt_boxes = [t["boxes"].to(device=device, dtype=torch.float32) for t in targets]
        gt_slots_list = [t["slots"].to(device=device, dtype=torch.int64) for t in targets]
        sampled = sample_rois(self.matcher, self.sampler, proposals, gt_boxes)
        num_rois = sum(b.shape[0] for b in sampled.boxes)
        roi_maps = self.pooler.pool_rois(features, torch.cat([boxes_to_rois(sampled.boxes), boxes_to_rois(gt_boxes)]))
        class_logits, box_regression, embeddings = self.head_outputs(roi_maps)
        losses = fast_rcnn_loss(class_logits[:num_rois], box_regression[:num_rois], torch.cat(sampled.labels),
                                torch.cat(sampled.regression_targets), box_loss=self.box_loss)
        return RoIHeadsTrainOutput(
            losses=losses,
            roi_embeddings=embeddings[:num_rois],
            roi_boxes=torch.cat(sampled.boxes),
            roi_slots=rois_slots(sampled.matched, gt_slots_list),
            roi_image=batch_index(sampled.boxes, device),
            gt_embeddings=embeddings[num_rois:],
            gt_slots=torch.cat(gt_slots_list),
            gt_image=batch_index(gt_boxes, device),
        )

    @torch.no_grad()
    def detect(self, features: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[Detections]:
        counts = [p.shape[0] for p in proposals]
        device = features.device
        if sum(counts) == 0:
            return [Detections(torch.zeros(0, 4, device=device), torch.zeros(0, device=device),
                               torch.zeros(0, self.embedding.dim, device=device)) for _ in counts]
        class_logits, box_regression, embeddings = self.head_outputs(self.pooler(features, proposals))
        person_scores = F.softmax(class_logits.float(), dim=1)[:, 1]
        detections = []
        for props, reg, scores, emb, size in zip(proposals, box_regression.split(counts), person_scores.split(counts),
                                                 embeddings.split(counts), image_sizes):
            boxes = _person_boxes(reg, props, tuple(size))
            keep = select_detections(boxes, scores, self.score_thresh, self.min_box_size,
                                     self.nms_thresh, self.detections_per_image)
            detections.append(Detections(boxes[keep], scores[keep], emb[keep].float()))
        return detections
