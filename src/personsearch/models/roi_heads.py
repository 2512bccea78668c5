"""Two sequential RoI heads on res5 (SeqNet §1.4 / §1.5): a Faster R-CNN stage and a re-id
stage with a BN-neck box regressor and the Norm-Aware Embedding.

Shape glossary
--------------
B           images in the batch
C4, C5      channels of the backbone map and of the res5 head output (from the parts)
h, w        RoI output size (roi_output_size x roi_output_size, 14 x 14)
G_i         GT boxes of image i (0 for an image without persons); G = sum G_i
P_i         proposals of image i (RPN output)
S_i         RoIs sampled from image i (<= roi_batch_size_per_image); R = sum S_i
rois        [K, 5] (batch index, x1, y1, x2, y2) in input pixels, K boxes of the whole batch
roi maps    [K, C4, h, w] pooled features
feat_res4   [K, C4] global max pool of the roi map; feat_res5 [K, C5] max pool after res5
labels      [S_i] 1 person / 0 background; matched [S_i] GT index of image i (-1 background)
D           embedding dimension

Training: stage 1 samples RoIs among proposals + GT (fg IoU >= fg_iou_thresh, bg IoU <
bg_iou_thresh, between ignored), classifies (softmax CE) and regresses them (box-coder
weights 10, 10, 5, 5). Its person-class regressed boxes, detached and clipped, plus the GT are
sampled again for stage 2: res5 re-id head -> BN-neck regressor (loss_reid_box) and NAE
(person logit BCE = loss_person, unit embeddings). Every positive RoI carries the slot of its
GT box (targets["slots"]), background RoIs carry -1. The GT boxes themselves go through the
re-id head in the same pass (gt_embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from personsearch.losses.detection import DEFAULT_BOX_LOSS, check_box_loss, fast_rcnn_loss, reid_head_loss
from personsearch.models.embedding import BNNeckBoxRegressor, NormAwareEmbedding
from personsearch.models.sampling import BalancedSampler, Matcher, labels_from_matches
from personsearch.ops.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes
from personsearch.ops.deform_roi_pool import DeformRoIPool
from personsearch.ops.nms import nms
from personsearch.ops.roi_align import roi_align

ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
ROI_POOLING_KINDS = ("roi_align", "deform_roi_pool")


@dataclass
class Detections:
    """One image: boxes [M, 4] input pixels, scores [M] first-stage score, embeddings [M, D]
    unit norm (not score weighted)."""

    boxes: Tensor
    scores: Tensor
    embeddings: Tensor


@dataclass
class RoIHeadsTrainOutput:
    losses: dict[str, Tensor]
    roi_embeddings: Tensor  # [R, D]
    roi_boxes: Tensor  # [R, 4] the sampled stage-2 boxes
    roi_slots: Tensor  # [R]
    roi_image: Tensor  # [R]
    gt_embeddings: Tensor  # [G, D]
    gt_slots: Tensor  # [G]
    gt_image: Tensor  # [G]


def boxes_to_rois(boxes_list: list[Tensor]) -> Tensor:
    """list of B tensors [n_i, 4] -> [sum n_i, 5] with the batch index in column 0."""
    rois = [
        torch.cat([torch.full((boxes.shape[0], 1), float(i), dtype=torch.float32, device=boxes.device), boxes.float()], dim=1)
        for i, boxes in enumerate(boxes_list)
    ]
    return torch.cat(rois, dim=0) if rois else torch.zeros(0, 5)


class RoIPooler(nn.Module):
    """Pools boxes of every image from the backbone map: "roi_align" (torchvision
    MultiScaleRoIAlign semantics on one level, aligned=False; mmcv's RoIAlign, which CGPS uses,
    has aligned=True: the half-pixel offset) or "deform_roi_pool"
    (learned offsets, mmcv DeformRoIPoolPack semantics)."""

    def __init__(self, kind: str, in_channels: int, output_size: int, sampling_ratio: int, spatial_scale: float,
                 aligned: bool = False) -> None:
        super().__init__()
        self.aligned = bool(aligned)
        if kind not in ROI_POOLING_KINDS:
            raise ValueError(f"roi_pooling must be one of {ROI_POOLING_KINDS}, got {kind!r}")
        self.kind = kind
        self.output_size = (int(output_size), int(output_size))
        self.sampling_ratio = int(sampling_ratio)
        self.spatial_scale = float(spatial_scale)
        self.deform = (
            DeformRoIPool(in_channels, self.output_size, self.spatial_scale, self.sampling_ratio)
            if kind == "deform_roi_pool"
            else None
        )

    def forward(self, features: Tensor, boxes_list: list[Tensor]) -> Tensor:
        """Boxes of image i [n_i, 4] -> roi maps [sum n_i, C, h, w] in image then box order."""
        return self.pool_rois(features, boxes_to_rois(boxes_list))

    def pool_rois(self, features: Tensor, rois: Tensor) -> Tensor:
        rois = rois.to(features.device)
        if self.deform is not None:
            return self.deform(features, rois)  # float32 boxes even under bf16 autocast
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, aligned=self.aligned)


class ResHead(nn.Module):
    """RoI maps [K, C4, h, w] -> (feat_res4 [K, C4] max pool, feat_res5 [K, C5] max pool of res5)."""

    def __init__(self, res5: nn.Module) -> None:
        super().__init__()
        self.res5 = res5

    def forward(self, roi_maps: Tensor) -> tuple[Tensor, Tensor]:
        feat_res4 = torch.amax(roi_maps, dim=(2, 3))
        feat_res5 = torch.amax(self.res5(roi_maps), dim=(2, 3))
        return feat_res4, feat_res5


class FastRCNNPredictor(nn.Module):
    """feat_res5 [K, C5] -> class logits [K, 2], class-specific deltas [K, 8]."""

    def __init__(self, in_channels: int, num_classes: int = 2) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.constant_(self.cls_score.bias, 0.0)
        nn.init.constant_(self.bbox_pred.bias, 0.0)

    def forward(self, feat_res5: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(feat_res5), self.bbox_pred(feat_res5)


def _person_boxes(box_regression: Tensor, reference: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Decode the person-class deltas [K, 8] (float32) w.r.t. reference [K, 4], clip. The class
    count comes from the column count, so K = 0 (an image without boxes in a batch) works."""
    num_rows, num_columns = box_regression.shape
    deltas = box_regression.float().reshape(num_rows, num_columns // 4, 4)[:, 1]
    return clip_boxes(decode_boxes(deltas, reference.float(), ROI_BOX_WEIGHTS), image_size)


@dataclass
class _Sampled:
    boxes: list[Tensor]  # per image [S_i, 4]
    labels: list[Tensor]  # per image [S_i]
    matched: list[Tensor]  # per image [S_i], GT index or -1
    regression_targets: list[Tensor]  # per image [S_i, 4]


def sample_rois(matcher: Matcher, sampler: BalancedSampler, proposals: list[Tensor], gt_boxes: list[Tensor]) -> _Sampled:
    """Add the GT boxes to the proposals, match, sample (per image): boxes, labels (1 person /
    0 background), matched GT index (-1 background) and box-coder regression targets."""
    out = _Sampled([], [], [], [])
    for props, gt in zip(proposals, gt_boxes):
        candidates = torch.cat([props.detach().float(), gt.float()], dim=0)
        matches = matcher(box_iou(gt.float(), candidates))
        labels = labels_from_matches(matches)
        pos_mask, neg_mask = sampler(labels)
        keep = torch.nonzero(pos_mask | neg_mask).flatten()
        boxes, labels, matches = candidates[keep], labels[keep], matches[keep]
        matched = torch.where(labels > 0, matches, torch.full_like(matches, -1))
        targets = torch.zeros(keep.numel(), 4, dtype=torch.float32, device=candidates.device)
        positive = labels > 0
        if bool(positive.any()):
            targets[positive] = encode_boxes(gt.float()[matched[positive]], boxes[positive], ROI_BOX_WEIGHTS)
        out.boxes.append(boxes)
        out.labels.append(labels)
        out.matched.append(matched)
        out.regression_targets.append(targets)
    return out


def rois_slots(matched_list: list[Tensor], gt_slots_list: list[Tensor]) -> Tensor:
    """[R]: the slot of each sampled RoI's GT box (-1 for background), image after image."""
    return torch.cat(
        [
            matched.clone() if slots.numel() == 0 else torch.where(matched >= 0, slots[matched.clamp(min=0)], matched)
            for matched, slots in zip(matched_list, gt_slots_list)
        ]
    )


def select_detections(boxes: Tensor, scores: Tensor, score_thresh: float, min_box_size: float,
                      nms_thresh: float, max_detections: int) -> Tensor:
    """Indices kept: score > score_thresh, not tiny, NMS at nms_thresh, at most max_detections
    (shared by the SeqNet and CGPS heads)."""
    keep = torch.nonzero(scores > score_thresh).flatten()
    keep = keep[remove_small_boxes(boxes[keep], min_box_size)]
    keep = keep[nms(boxes[keep], scores[keep], nms_thresh)]
    return keep[:max_detections]


def embed_given_boxes(heads: nn.Module, features: Tensor, boxes_list: list[Tensor]) -> list[Tensor]:
    """Embeddings [n_i, D] of the given boxes (no sampling, no regression) through ``heads``'
    pooler and ``reid_features`` (shared by the SeqNet and CGPS heads)."""
    counts = [int(b.shape[0]) for b in boxes_list]
    if sum(counts) == 0:
        return [torch.zeros(0, heads.embedding.dim, device=features.device) for _ in counts]
    embeddings, _, _ = heads.reid_features(heads.pooler(features, boxes_list))
    return list(embeddings.split(counts))


def batch_index(boxes_list: list[Tensor], device: torch.device) -> Tensor:
    """[sum n_i]: the image index of every box."""
    return torch.cat([torch.full((b.shape[0],), i, dtype=torch.int64, device=device) for i, b in enumerate(boxes_list)])


class SequentialRoIHeads(nn.Module):
    def __init__(
        self,
        pooler: RoIPooler,
        box_head: ResHead,
        box_predictor: FastRCNNPredictor,
        reid_head: ResHead,
        reid_regressor: BNNeckBoxRegressor,
        embedding: NormAwareEmbedding,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        score_thresh: float,
        nms_thresh: float,
        reid_nms_thresh: float,
        detections_per_image: int,
        min_box_size: float = 1e-2,
        box_loss: str = DEFAULT_BOX_LOSS,
    ) -> None:
        super().__init__()
        self.box_loss = check_box_loss(box_loss)
        self.pooler = pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.reid_head = reid_head  # may be the same module as box_head (shared res5)
        self.reid_regressor = reid_regressor
        self.embedding = embedding
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality=False)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.reid_nms_thresh = float(reid_nms_thresh)
        self.detections_per_image = int(detections_per_image)
        self.min_box_size = float(min_box_size)

    # ------------------------------------------------------------------ sampling
    def sample(self, proposals: list[Tensor], gt_boxes: list[Tensor]) -> _Sampled:
        """Add the GT boxes to the proposals, match, sample; per image."""
        return sample_rois(self.matcher, self.sampler, proposals, gt_boxes)

    # ------------------------------------------------------------------ shared pieces
    def reid_features(self, roi_maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """roi maps -> (embeddings [K, D], person logits [K], feat_res5 [K, C5])."""
        feat_res4, feat_res5 = self.reid_head(roi_maps)
        embeddings, logits = self.embedding(feat_res4, feat_res5)
        return embeddings, logits, feat_res5

    def embed_boxes(self, features: Tensor, boxes_list: list[Tensor]) -> list[Tensor]:
        """Embeddings [n_i, D] of the given boxes (no sampling, no regression)."""
        return embed_given_boxes(self, features, boxes_list)

    # ------------------------------------------------------------------ training
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

        # stage 1: Faster R-CNN head
        stage1 = self.sample(proposals, gt_boxes)
        _, feat_res5 = self.box_head(self.pooler(features, stage1.boxes))
        class_logits, box_regression = self.box_predictor(feat_res5)
        labels1 = torch.cat(stage1.labels)
        losses = fast_rcnn_loss(class_logits, box_regression, labels1, torch.cat(stage1.regression_targets),
                                box_loss=self.box_loss)

        # stage 2: re-id head on the detached, clipped stage-1 boxes (+ GT), re-sampled
        counts1 = [b.shape[0] for b in stage1.boxes]
        regressed = [
            _person_boxes(reg, boxes, tuple(size))
            for reg, boxes, size in zip(box_regression.detach().split(counts1), stage1.boxes, image_sizes)
        ]
        stage2 = self.sample(regressed, gt_boxes)
        num_rois = sum(b.shape[0] for b in stage2.boxes)
        # sampled RoIs, then every GT box, through the re-id head in one pass
        roi_maps = self.pooler.pool_rois(features, torch.cat([boxes_to_rois(stage2.boxes), boxes_to_rois(gt_boxes)]))
        embeddings, person_logits, feat_res5 = self.reid_features(roi_maps)
        labels2 = torch.cat(stage2.labels)
        reid_regression = self.reid_regressor(feat_res5[:num_rois])
        losses.update(
            reid_head_loss(person_logits[:num_rois], reid_regression, labels2, torch.cat(stage2.regression_targets),
                           box_loss=self.box_loss)
        )

        roi_slots = rois_slots(stage2.matched, gt_slots_list)
        roi_image = batch_index(stage2.boxes, device)
        gt_image = batch_index(gt_boxes, device)
        return RoIHeadsTrainOutput(
            losses=losses,
            roi_embeddings=embeddings[:num_rois],
            roi_boxes=torch.cat(stage2.boxes),
            roi_slots=roi_slots,
            roi_image=roi_image,
            gt_embeddings=embeddings[num_rois:],
            gt_slots=torch.cat(gt_slots_list),
            gt_image=gt_image,
        )

    # ------------------------------------------------------------------ inference
    def _postprocess(self, boxes: Tensor, scores: Tensor, nms_thresh: float) -> Tensor:
        """Indices kept: score > thresh, not tiny, NMS, at most detections_per_image."""
        return select_detections(boxes, scores, self.score_thresh, self.min_box_size, nms_thresh,
                                 self.detections_per_image)

    @torch.no_grad()
    def detect(self, features: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]) -> list[Detections]:
        """SeqNet inference: stage-1 score / NMS, stage-2 re-regression keeping the first
        classification score, NMS at reid_nms_thresh, <= detections_per_image."""
        counts = [p.shape[0] for p in proposals]
        stage1_boxes, stage1_scores = [], []
        if sum(counts):
            _, feat_res5 = self.box_head(self.pooler(features, proposals))
            class_logits, box_regression = self.box_predictor(feat_res5)
            person_scores = F.softmax(class_logits.float(), dim=1)[:, 1]
            for props, reg, scores, size in zip(proposals, box_regression.split(counts), person_scores.split(counts), image_sizes):
                boxes = _person_boxes(reg, props, tuple(size))
                keep = self._postprocess(boxes, scores, self.nms_thresh)
                stage1_boxes.append(boxes[keep])
                stage1_scores.append(scores[keep])
        else:
            stage1_boxes = [p.float() for p in proposals]
            stage1_scores = [torch.zeros(0, device=features.device) for _ in proposals]

        counts = [b.shape[0] for b in stage1_boxes]
        dim = self.embedding.dim
        if sum(counts) == 0:
            return [
                Detections(torch.zeros(0, 4, device=features.device), torch.zeros(0, device=features.device), torch.zeros(0, dim, device=features.device))
                for _ in counts
            ]
        embeddings, _, feat_res5 = self.reid_features(self.pooler(features, stage1_boxes))
        reid_regression = self.reid_regressor(feat_res5)
        detections = []
        for boxes, scores, emb, reg, size in zip(
            stage1_boxes, stage1_scores, embeddings.split(counts), reid_regression.split(counts), image_sizes
        ):
            boxes = _person_boxes(reg, boxes, tuple(size))
            keep = self._postprocess(boxes, scores, self.reid_nms_thresh)
            detections.append(Detections(boxes[keep], scores[keep], emb[keep].float()))
        return detections
