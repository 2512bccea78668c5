"""Sequential RoI heads with tiny hand-built res5 heads (fast; no backbone needed)."""

import pytest
import torch
from torch import nn

from personsearch.models.embedding import BNNeckBoxRegressor, NormAwareEmbedding
from personsearch.models.roi_heads import FastRCNNPredictor, ResHead, RoIPooler, SequentialRoIHeads
from personsearch.ops.boxes import box_iou

C4, C5 = 8, 16


def _res5():
    return nn.Sequential(nn.Conv2d(C4, C5, 3, stride=2, padding=1), nn.BatchNorm2d(C5), nn.ReLU())


def _heads(pooling="roi_align", bg=0.5, separate=True, score_thresh=0.0, detections_per_image=300):
    box_head = ResHead(_res5())
    return SequentialRoIHeads(
        pooler=RoIPooler(pooling, C4, 14, 2, 1.0 / 16),
        box_head=box_head,
        box_predictor=FastRCNNPredictor(C5),
        reid_head=ResHead(_res5()) if separate else box_head,
        reid_regressor=BNNeckBoxRegressor(C5),
        embedding=NormAwareEmbedding(C4, C5, 32),
        fg_iou_thresh=0.5,
        bg_iou_thresh=bg,
        batch_size_per_image=16,
        positive_fraction=0.5,
        score_thresh=score_thresh,
        nms_thresh=0.4,
        reid_nms_thresh=0.5,
        detections_per_image=detections_per_image,
    )


def _proposals(num, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = 8 + torch.rand(num, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    return torch.cat([xy, xy + wh], dim=1)


SIZES = [(128, 96), (128, 96)]
TARGETS = [
    {"boxes": torch.tensor([[4.0, 8.0, 40.0, 100.0], [50.0, 20.0, 90.0, 120.0]]), "slots": torch.tensor([11, 4])},
    {"boxes": torch.zeros(0, 4), "slots": torch.zeros(0, dtype=torch.int64)},  # no persons
]


def test_sample_assigns_gt_index_and_respects_thresholds():
    torch.manual_seed(0)
    heads = _heads(bg=0.1)
    gt = TARGETS[0]["boxes"]
    sampled = heads.sample([_proposals(60, 128, 96, 1)], [gt])
    boxes, labels, matched = sampled.boxes[0], sampled.labels[0], sampled.matched[0]
    iou = box_iou(boxes, gt)
    assert labels.shape[0] <= 16 and int((labels == 1).sum()) <= 8
    positive = labels == 1
    assert positive.any()
    assert torch.all(iou[positive, matched[positive]] >= 0.5)
    assert torch.equal(matched[positive], iou[positive].argmax(dim=1))
    assert torch.all(matched[~positive] == -1)
    assert torch.all(iou[~positive].max(dim=1).values < 0.1)  # CGPS: background really empty


def test_training_forward_losses_shapes_and_slots():
    torch.manual_seed(0)
    heads = _heads().train()
    features = torch.randn(2, C4, 8, 6, requires_grad=True)
    proposals = [_proposals(40, 128, 96, 2), _proposals(40, 128, 96, 3)]
    out = heads(features, proposals, SIZES, TARGETS)
    assert set(out.losses) == {"loss_det_cls", "loss_det_box", "loss_reid_box", "loss_person"}
    assert all(torch.isfinite(v) for v in out.losses.values())
    num_rois = out.roi_embeddings.shape[0]
    assert out.roi_slots.shape == (num_rois,) and out.roi_image.shape == (num_rois,)
    assert out.roi_embeddings.shape[1] == 32
    assert torch.allclose(out.roi_embeddings.norm(dim=1), torch.ones(num_rois), atol=1e-5)
    # positives carry the slot of the GT they overlap most; the image without persons has none
    positive = out.roi_slots >= 0
    assert positive.any() and torch.all(out.roi_image[positive] == 0)
    gt_of_slot = {11: 0, 4: 1}
    iou = box_iou(out.roi_boxes[positive], TARGETS[0]["boxes"])
    expected = torch.tensor([gt_of_slot[int(s)] for s in out.roi_slots[positive]])
    assert torch.equal(iou.argmax(dim=1), expected) and torch.all(iou.max(dim=1).values >= 0.5)
    assert set(out.roi_slots[positive].tolist()) == {11, 4}
    assert torch.all(out.roi_slots[out.roi_image == 1] == -1) and (out.roi_image == 1).any()
    assert out.gt_embeddings.shape == (2, 32) and out.gt_slots.tolist() == [11, 4] and out.gt_image.tolist() == [0, 0]
    sum(out.losses.values()).backward()
    assert torch.isfinite(features.grad).all()


def test_batch_without_any_person_trains():
    torch.manual_seed(0)
    heads = _heads().train()
    features = torch.randn(1, C4, 8, 6, requires_grad=True)
    out = heads(features, [_proposals(30, 128, 96, 4)], SIZES[:1], TARGETS[1:])
    assert out.losses["loss_det_box"].item() == 0.0 and out.losses["loss_reid_box"].item() == 0.0
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert torch.all(out.roi_slots == -1) and out.gt_embeddings.shape == (0, 32)
    sum(out.losses.values()).backward()


def test_shared_res5_when_not_separate():
    heads = _heads(separate=False)
    assert heads.box_head is heads.reid_head


def test_detect_limits_and_unit_embeddings():
    torch.manual_seed(0)
    heads = _heads(detections_per_image=5).eval()
    features = torch.randn(2, C4, 8, 6)
    dets = heads.detect(features, [_proposals(40, 128, 96, 5), _proposals(40, 128, 96, 6)], SIZES)
    assert len(dets) == 2
    for det in dets:
        assert 0 < det.boxes.shape[0] <= 5
        assert det.scores.shape == (det.boxes.shape[0],) and det.embeddings.shape == (det.boxes.shape[0], 32)
        assert torch.allclose(det.embeddings.norm(dim=1), torch.ones(det.boxes.shape[0]), atol=1e-5)
        assert torch.all(det.scores > 0.0)


def test_detect_with_high_threshold_returns_empty():
    heads = _heads(score_thresh=0.999).eval()
    dets = heads.detect(torch.randn(1, C4, 8, 6), [_proposals(10, 128, 96, 7)], SIZES[:1])
    assert dets[0].boxes.shape == (0, 4) and dets[0].embeddings.shape == (0, 32)


def test_deform_roi_pool_variant_runs():
    torch.manual_seed(0)
    heads = _heads(pooling="deform_roi_pool").train()
    features = torch.randn(1, C4, 8, 6, requires_grad=True)
    out = heads(features, [_proposals(10, 128, 96, 8)], SIZES[:1], TARGETS[:1])
    assert all(torch.isfinite(v) for v in out.losses.values())
    sum(out.losses.values()).backward()
    assert heads.pooler.deform is not None


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="roi_pooling"):
        RoIPooler("roi_pool", C4, 14, 2, 1 / 16)


@pytest.mark.parametrize("empty_proposals", [
    torch.zeros(0, 4),  # no proposals at all: stage 1 gets no rows for this image
    torch.tensor([[10.0, 10.0, 10.0, 60.0], [30.0, 5.0, 30.0, 40.0]]),  # zero-width: nothing survives stage 1
])
def test_detect_batch_mixing_an_image_without_detections_and_one_with(empty_proposals):
    """Issue 13: `index build --batch-size 4` crashed in the person-box step when one image of
    the batch had no boxes left and another had some. Each image gives what it gives alone."""
    torch.manual_seed(0)
    heads = _heads(detections_per_image=5).eval()
    features = torch.randn(2, C4, 8, 6)
    busy = _proposals(40, 128, 96, 5)
    dets = heads.detect(features, [empty_proposals, busy], SIZES)
    assert dets[0].boxes.shape == (0, 4) and dets[0].scores.shape == (0,) and dets[0].embeddings.shape == (0, 32)
    alone = heads.detect(features[1:], [busy], SIZES[1:])[0]
    assert dets[1].boxes.shape[0] > 0
    torch.testing.assert_close(dets[1].boxes, alone.boxes)
    torch.testing.assert_close(dets[1].embeddings, alone.embeddings)
