"""Region proposal network on the C4 map (SeqNet §1.3, torchvision-style).

Shape glossary
--------------
B            images in the batch
C            feature channels (C4 of the backbone)
H, W         feature-map size (stride 16)
A            anchors per location (15)
N            anchors per image = H * W * A (location-major, see anchors.py)
objectness   [B, A, H, W] head logits  -> flattened [B, N]
deltas       [B, 4A, H, W] head deltas -> flattened [B, N, 4] (box-coder weights 1, 1, 1, 1)
proposals    list of B tensors [P_i, 4] x1y1x2y2 in input pixels, P_i <= post-NMS top-n,
             sorted by descending objectness
targets      list of B dicts with "boxes" [G_i, 4] (G_i may be 0)

Proposal selection per image: pre-NMS top-n by objectness, decode, clip to the image size,
drop boxes smaller than `min_size` (train / test values: torchvision 1e-3; mmdetection's CGPS
and DICL configs 8 / 16 pixels of the resized image), NMS at `nms_thresh`, keep the post-NMS top-n; the train
and test values of the two top-n differ (dicts keyed "training" / "testing"). Proposals are
detached: no gradient flows from the RoI heads into the RPN's box deltas.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

from personsearch.losses.detection import DEFAULT_BOX_LOSS, check_box_loss, rpn_loss
from personsearch.models.anchors import AnchorGenerator
from personsearch.models.sampling import BalancedSampler, Matcher, labels_from_matches
from personsearch.ops.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes
from personsearch.ops.nms import nms

RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


class RPNHead(nn.Module):
    """3x3 conv (C -> C) + ReLU, then 1x1 objectness (A) and 1x1 box deltas (4A)."""

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, kernel_size=1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0.0)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        hidden = torch.relu(self.conv(features))
        return self.cls_logits(hidden), self.bbox_pred(hidden)


def flatten_head_outputs(objectness: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """[B, A, H, W], [B, 4A, H, W] -> [B, N], [B, N, 4] in anchor order (location-major).
    Cast to float32 so that decoding stays exact under bf16 autocast."""
    batch, num_anchors, height, width = objectness.shape
    objectness = objectness.permute(0, 2, 3, 1).reshape(batch, -1)
    deltas = deltas.reshape(batch, num_anchors, 4, height, width).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
    return objectness.float(), deltas.float()


class RegionProposalNetwork(nn.Module):
    def __init__(
        self,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: dict[str, int],
        post_nms_top_n: dict[str, int],
        nms_thresh: float,
        min_size: float | dict[str, float] = 1e-3,
        box_loss: str = DEFAULT_BOX_LOSS,
    ) -> None:
        super().__init__()
        for name, top_n in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
            if set(top_n) != {"training", "testing"}:
                raise ValueError(f"{name} needs the keys 'training' and 'testing', got {sorted(top_n)}")
        self.head = head
        self.anchor_generator = anchor_generator
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = dict(pre_nms_top_n)
        self.post_nms_top_n = dict(post_nms_top_n)
        self.nms_thresh = float(nms_thresh)
        if not isinstance(min_size, dict):
            min_size = {"training": min_size, "testing": min_size}
        if set(min_size) != {"training", "testing"}:
            raise ValueError(f"min_size needs the keys 'training' and 'testing', got {sorted(min_size)}")
        self.min_size = {mode: float(size) for mode, size in min_size.items()}
        self.box_loss = check_box_loss(box_loss)

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def select_proposals(self, anchors: Tensor, objectness: Tensor, deltas: Tensor, image_size: tuple[int, int]) -> Tensor:
        """One image: anchors [N, 4], objectness [N], deltas [N, 4] -> proposals [P, 4]."""
        objectness = objectness.detach()
        top_n = min(self.pre_nms_top_n[self._mode()], objectness.numel())
        top_idx = objectness.topk(top_n).indices
        boxes = decode_boxes(deltas.detach()[top_idx], anchors[top_idx], RPN_BOX_WEIGHTS)
        boxes = clip_boxes(boxes, image_size)
        scores = objectness[top_idx]
        keep = remove_small_boxes(boxes, self.min_size[self._mode()])
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(boxes, scores, self.nms_thresh)[: self.post_nms_top_n[self._mode()]]
        return boxes[keep]

    def assign_targets(self, anchors: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One image -> (sampled anchor indices [S], labels [S], regression targets [S, 4])."""
        matches = self.matcher(box_iou(gt_boxes, anchors))
        labels = labels_from_matches(matches)
        pos_mask, neg_mask = self.sampler(labels)
        sampled = torch.nonzero(pos_mask | neg_mask).flatten()
        sampled_labels = labels[sampled]
        targets = torch.zeros(sampled.numel(), 4, dtype=torch.float32, device=anchors.device)
        positive = sampled_labels > 0
        if bool(positive.any()):
            pos_idx = sampled[positive]
            targets[positive] = encode_boxes(gt_boxes[matches[pos_idx]].float(), anchors[pos_idx], RPN_BOX_WEIGHTS)
        return sampled, sampled_labels, targets

    def forward(
        self, features: Tensor, image_sizes: list[tuple[int, int]], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        objectness_map, deltas_map = self.head(features)
        objectness, deltas = flatten_head_outputs(objectness_map, deltas_map)
        anchors = self.anchor_generator(features)
        proposals = [
            self.select_proposals(anchors, objectness[i], deltas[i], tuple(image_sizes[i])) for i in range(len(image_sizes))
        ]
        if not self.training:
            return proposals, {}
        if targets is None:
            raise ValueError("the RPN needs targets in training mode")
        sampled_objectness, sampled_deltas, sampled_labels, sampled_targets = [], [], [], []
        for i, target in enumerate(targets):
            sampled, labels, regression_targets = self.assign_targets(anchors, target["boxes"].to(anchors))
            sampled_objectness.append(objectness[i, sampled])
            sampled_deltas.append(deltas[i, sampled])
            sampled_labels.append(labels)
            sampled_targets.append(regression_targets)
        losses = rpn_loss(
            torch.cat(sampled_objectness), torch.cat(sampled_deltas), torch.cat(sampled_labels), torch.cat(sampled_targets),
            box_loss=self.box_loss,
        )
        return proposals, losses
