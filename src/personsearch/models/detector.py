"""The one-step person search model (SeqNet-style): backbone C4 -> RPN -> two sequential RoI
heads, and `build_model(**kwargs)` which wires it from the model kwargs of
docs/architecture.md ("Model contract").

Shape glossary
--------------
B            images in the batch; images [B, 3, H, W] normalised, padded to a multiple of 32
image_sizes  list of B (h, w): unpadded sizes in input pixels
targets      list of B dicts: "boxes" float [G_i, 4] x1y1x2y2 input pixels, "slots" int64 [G_i]
             global training-slot index of each box (G_i may be 0)
features     [B, C4, H/16, W/16] backbone map
R            sampled stage-2 RoIs of the batch;  G = sum G_i
D            embedding dimension (embedding_dim, 256)
crops        [P, 3, h, w] person crops (normalised like the images)

TrainOutput (training forward): losses (unweighted: loss_rpn_objectness, loss_rpn_box,
loss_det_cls, loss_det_box, loss_reid_box, loss_person), roi_embeddings [R, D] unit norm,
roi_slots [R] (slot of the assigned GT, -1 background), roi_image [R], gt_embeddings [G, D]
unit norm (pooled at the exact GT box), gt_slots [G], gt_image [G] (target order), features.

Inference: detect -> list of B Detections (boxes [M, 4], scores [M] first-stage score,
embeddings [M, D] unit norm, not score weighted); embed_boxes -> list of B [n_i, D];
embed_crops -> [P, D]. detect and embed_boxes run in eval mode without gradients (the
previous train/eval mode is restored afterwards); embed_crops uses the current mode and keeps
gradients (training branches use it). bf16 autocast and channels_last are the caller's
choice (torch.autocast("cpu", dtype=torch.bfloat16), model.to(memory_format=...)): boxes,
scores and embeddings always come back float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from personsearch.models.anchors import AnchorGenerator
from personsearch.losses.detection import BOX_LOSSES
from personsearch.models.backbones import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, build_backbone
from personsearch.models.cgps_head import CGPSEmbedding, CGPSRoIHeads
from personsearch.models.embedding import BNNeckBoxRegressor, NormAwareEmbedding
from personsearch.models.roi_heads import (
    Detections,
    FastRCNNPredictor,
    ResHead,
    RoIPooler,
    SequentialRoIHeads,
)
from personsearch.models.rpn import RegionProposalNetwork, RPNHead

__all__ = ["Detections", "PersonSearchModel", "ROI_HEAD_KINDS", "TrainOutput", "build_model"]

ROI_HEAD_KINDS = ("seqnet", "cgps")


@dataclass
class TrainOutput:
    losses: dict[str, Tensor]
    roi_embeddings: Tensor
    roi_slots: Tensor
    roi_image: Tensor
    gt_embeddings: Tensor
    gt_slots: Tensor
    gt_image: Tensor
    features: Tensor


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


@contextmanager
def _keep_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers in training mode still normalise with batch statistics but leave their
    running statistics unchanged (momentum 0). Crops — background-filtered, resized persons —
    have other statistics than scenes; letting them into the running averages corrupts the
    scene statistics the main branch uses at test time (seen as a detector collapse)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        for norm, momentum in zip(norms, saved):
            norm.momentum = momentum


def _check_batch(images: Tensor, image_sizes: list[tuple[int, int]]) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    if len(image_sizes) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(image_sizes)} image sizes")
    for h, w in image_sizes:
        if h > images.shape[2] or w > images.shape[3] or h <= 0 or w <= 0:
            raise ValueError(f"image size {(h, w)} does not fit the padded batch {tuple(images.shape[2:])}")


class PersonSearchModel(nn.Module):
    """Wires a backbone body (C4 map, `.out_channels`), an RPN and RoI heads (SeqNet's two
    sequential heads or CGPS's single head; both offer forward / detect / embed_boxes /
    reid_features / pooler / embedding.dim)."""

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: SequentialRoIHeads | CGPSRoIHeads) -> None:
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    @property
    def embedding_dim(self) -> int:
        return self.roi_heads.embedding.dim

    def forward(self, images: Tensor, image_sizes: list[tuple[int, int]], targets: list[dict[str, Tensor]]) -> TrainOutput:
        if not self.training:
            raise RuntimeError("PersonSearchModel.forward is the training step; use detect() / embed_boxes() in eval mode")
        _check_batch(images, image_sizes)
        if len(targets) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(targets)} targets")
        for i, target in enumerate(targets):
            if target["boxes"].shape[0] != target["slots"].shape[0]:
                raise ValueError(f"target {i}: {target['boxes'].shape[0]} boxes but {target['slots'].shape[0]} slots")
        features = self.backbone(images)
        proposals, rpn_losses = self.rpn(features, image_sizes, targets)
        heads = self.roi_heads(features, proposals, image_sizes, targets)
        return TrainOutput(
            losses={**rpn_losses, **heads.losses},
            roi_embeddings=heads.roi_embeddings,
            roi_slots=heads.roi_slots,
            roi_image=heads.roi_image,
            gt_embeddings=heads.gt_embeddings,
            gt_slots=heads.gt_slots,
            gt_image=heads.gt_image,
            features=features,
        )

    def detect(self, images: Tensor, image_sizes: list[tuple[int, int]]) -> list[Detections]:
        _check_batch(images, image_sizes)
        with _eval_mode(self):
            features = self.backbone(images)
            proposals, _ = self.rpn(features, image_sizes)
            return self.roi_heads.detect(features, proposals, image_sizes)

    def embed_boxes(self, images: Tensor, image_sizes: list[tuple[int, int]], boxes_list: list[Tensor]) -> list[Tensor]:
        _check_batch(images, image_sizes)
        if len(boxes_list) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(boxes_list)} box lists")
        with _eval_mode(self):
            features = self.backbone(images)
            return [e.float() for e in self.roi_heads.embed_boxes(features, [b.to(features.device) for b in boxes_list])]

    def embed_crops(self, crops: Tensor, crop_sizes: list[tuple[int, int]] | None = None) -> Tensor:
        """[P, D]: each crop pooled as one RoI covering the whole crop — or, for a padded batch
        of crops of different sizes, its top-left ``crop_sizes[p] = (h, w)`` region. Never
        updates BatchNorm running statistics (see ``_keep_batchnorm_statistics``)."""
        if crops.dim() != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must be [P, 3, h, w], got {tuple(crops.shape)}")
        if crops.shape[0] == 0 and not self.training:
            return torch.zeros(0, self.embedding_dim, device=crops.device)
        # in training an empty batch still runs every layer: each process of a distributed
        # run must make the same SyncBatchNorm calls, persons or not
        if crop_sizes is not None and len(crop_sizes) != crops.shape[0]:
            raise ValueError(f"{crops.shape[0]} crops but {len(crop_sizes)} crop sizes")
        height, width = crops.shape[2:]
        sizes = crop_sizes if crop_sizes is not None else [(height, width)] * crops.shape[0]
        boxes = [crops.new_tensor([[0.0, 0.0, float(w), float(h)]], dtype=torch.float32)
                 for h, w in sizes]
        with _keep_batchnorm_statistics(self):
            features = self.backbone(crops)
            roi_maps = self.roi_heads.pooler(features, boxes)
            embeddings, _, _ = self.roi_heads.reid_features(roi_maps)
        return embeddings.float()


def build_model(
    *,
    backbone: str = "resnet50",
    backbone_weights: str | None = None,
    frozen_stem: bool = True,
    frozen_bn: bool = False,
    separate_box_head: bool = True,
    roi_pooling: str = "roi_align",
    roi_output_size: int = 14,
    roi_sampling_ratio: int = 2,
    embedding_dim: int = 256,
    anchor_sizes: tuple = (32, 64, 128, 256, 512),
    anchor_ratios: tuple = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 12000,
    rpn_pre_nms_top_n_test: int = 6000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 300,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    roi_fg_iou_thresh: float = 0.5,
    roi_bg_iou_thresh: float = 0.5,
    roi_batch_size_per_image: int = 128,
    roi_positive_fraction: float = 0.5,
    box_score_thresh: float = 0.5,
    box_nms_thresh: float = 0.4,
    reid_nms_thresh: float = 0.5,
    detections_per_image: int = 300,
    roi_head: str = "seqnet",
    roi_aligned: bool = False,
    rpn_min_size_train: float = 1e-3,
    rpn_min_size_test: float = 1e-3,
    rpn_box_loss: str = "smooth_l1_beta_1_9",
    roi_box_loss: str = "smooth_l1_beta_1_9",
    resnet_style: str = "pytorch",
    pixel_mean: tuple = IMAGENET_PIXEL_MEAN,
    pixel_std: tuple = IMAGENET_PIXEL_STD,
    channel_order: str = "rgb",
    anchor_rounding: bool = True,
) -> PersonSearchModel:
    """The person search model from the model kwargs (docs/architecture.md).

    ``roi_head``: "seqnet" (two sequential heads, SeqNet) or "cgps" (CGPS's single head; uses
    box_score_thresh / box_nms_thresh / detections_per_image, ignores separate_box_head and
    reid_nms_thresh). ``roi_aligned``: RoIAlign with the half-pixel offset (mmcv, CGPS/DICL).
    ``rpn_min_size_*``: smallest proposal side kept. ``*_box_loss``: one of
    losses.detection.BOX_LOSSES (the reference each preset follows). ``resnet_style``: "pytorch"
    (stride on the 3x3 conv) or "caffe" (on the first 1x1, mmdetection's caffe-style ResNet of
    CGPS). ``pixel_mean`` / ``pixel_std`` / ``channel_order``: the input the backbone's weights
    expect (0..255 pixels; caffe: BGR, 103.53/116.28/123.675, std 1); the defaults are the
    ImageNet RGB normalisation of every data pipeline (models.backbones.PixelRenormalization).
    ``anchor_rounding``: cell anchors rounded to integers (torchvision, SeqNet) or exact
    (mmdetection 2.x, CGPS)."""
    if roi_head not in ROI_HEAD_KINDS:
        raise ValueError(f"roi_head must be one of {ROI_HEAD_KINDS}, got {roi_head!r}")
    for name, value in (("rpn_box_loss", rpn_box_loss), ("roi_box_loss", roi_box_loss)):
        if value not in BOX_LOSSES:
            raise ValueError(f"{name} must be one of {BOX_LOSSES}, got {value!r}")
    parts = build_backbone(backbone, weights=backbone_weights, frozen_stem=frozen_stem, frozen_bn=frozen_bn,
                           style=resnet_style, pixel_mean=tuple(pixel_mean), pixel_std=tuple(pixel_std),
                           channel_order=channel_order)
    res4_channels = parts.body.out_channels
    res5_channels = parts.head_out_channels
    stride = parts.body.stride

    anchor_generator = AnchorGenerator(anchor_sizes, anchor_ratios, stride=stride, round_cells=anchor_rounding)
    rpn = RegionProposalNetwork(
        RPNHead(res4_channels, anchor_generator.num_anchors_per_location),
        anchor_generator,
        fg_iou_thresh=rpn_fg_iou_thresh,
        bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=rpn_positive_fraction,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=rpn_nms_thresh,
        min_size={"training": rpn_min_size_train, "testing": rpn_min_size_test},
        box_loss=rpn_box_loss,
    )
    pooler = RoIPooler(roi_pooling, res4_channels, roi_output_size, roi_sampling_ratio, spatial_scale=1.0 / stride,
                       aligned=roi_aligned)
    # what both RoI heads take: sampling, inference filtering, box loss
    head_settings = dict(
        pooler=pooler,
        box_predictor=FastRCNNPredictor(res5_channels),
        fg_iou_thresh=roi_fg_iou_thresh,
        bg_iou_thresh=roi_bg_iou_thresh,
        batch_size_per_image=roi_batch_size_per_image,
        positive_fraction=roi_positive_fraction,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_image=detections_per_image,
        box_loss=roi_box_loss,
    )
    if roi_head == "cgps":
        cgps_heads = CGPSRoIHeads(
            head=ResHead(parts.make_head()),
            embedding=CGPSEmbedding(res4_channels, res5_channels, embedding_dim),
            **head_settings,
        )
        return PersonSearchModel(parts.body, rpn, cgps_heads)
    box_head = ResHead(parts.make_head())
    reid_head = ResHead(parts.make_head()) if separate_box_head else box_head
    roi_heads = SequentialRoIHeads(
        box_head=box_head,
        reid_head=reid_head,
        reid_regressor=BNNeckBoxRegressor(res5_channels),
        embedding=NormAwareEmbedding(res4_channels, res5_channels, embedding_dim),
        reid_nms_thresh=reid_nms_thresh,
        **head_settings,
    )
    return PersonSearchModel(parts.body, rpn, roi_heads)
